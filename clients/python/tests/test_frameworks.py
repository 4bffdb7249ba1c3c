"""Agent frameworks driven through their own public APIs by two lookalike tenants, with one
line of start-up glue (the adapter) and no DDL of ours: the server scopes and protects the tables
they create (agent_boundary.auto_protect_add_columns, see scripts/python_clients.sh).

Each test: the frameworks create their tables as the app role, both tenants write the same keys
/ thread ids / document ids, each reads back only its own, rows land with the right tenant, and
a call without a request fails closed."""

import asyncio
import os
import uuid
from typing import List, TypedDict

import psycopg
import psycopg_pool
import pytest
import sqlalchemy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.postgres import PostgresStore
from psycopg.rows import dict_row

import agent_boundary
import agent_boundary.psycopg
import agent_boundary.sqlalchemy
from conftest import APP_DSN

NO_BOUNDARY = "no agent boundary is set"
os.environ.setdefault("MEM0_TELEMETRY", "False")  # mem0 reads it at import; no network in tests


def langgraph_connection():
    # The one line: LangGraph's own connection settings, with the adapter's connection class.
    return agent_boundary.psycopg.connect(APP_DSN, autocommit=True, prepare_threshold=0, row_factory=dict_row)


def embed(texts: List[str]) -> List[List[float]]:
    """Deterministic 3-d embeddings: no model download."""
    out = []
    for t in texts:
        out.append([1.0, 0.0, 0.0] if "crown" in t else [0.0, 1.0, 0.0] if "brand" in t else [0.0, 0.0, 1.0])
    return out


class FixedEmbeddings(Embeddings):
    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return embed(texts)

    def embed_query(self, text: str) -> List[float]:
        return embed([text])[0]


def tenant_of(admin, table: str, where: str, params) -> list:
    return [r[0] for r in admin.execute(f"SELECT tenant_id FROM agents.{table} WHERE {where} ORDER BY 1", params)]


def test_langgraph_store_same_namespace_and_key_in_both_tenants(dental, design, admin):
    with langgraph_connection() as conn:
        store = PostgresStore(conn, index={"dims": 3, "embed": embed, "fields": ["text"]})
        store.setup()  # migrations, outside any request: the tables are born scoped
        store.setup()  # every start-up runs it again
        for tok, text in [(dental, "dental crown plan"), (design, "design brand plan")]:
            with agent_boundary.request(tok):
                store.put(("users", "alice"), "profile", {"text": text})
                store.put(("users", "alice"), "profile", {"text": text + " v2"})
        with agent_boundary.request(dental):
            assert store.get(("users", "alice"), "profile").value == {"text": "dental crown plan v2"}
            hits = store.search(("users",), query="crown", limit=5)
            assert [h.value["text"] for h in hits] == ["dental crown plan v2"]
        with agent_boundary.request(design):
            assert store.get(("users", "alice"), "profile").value == {"text": "design brand plan v2"}
            # The other tenant's item is nearer to this query; it is never returned.
            assert [h.value["text"] for h in store.search(("users",), query="crown", limit=5)] == [
                "design brand plan v2"
            ]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
            store.get(("users", "alice"), "profile")
    assert tenant_of(admin, "store", "key = %s", ["profile"]) == ["northstar-dental", "northstar-design"]


class Chat(TypedDict):
    messages: list


def test_langgraph_checkpointer_same_thread_id_in_both_tenants(dental, design, admin):
    def reply(state: Chat) -> Chat:
        return {"messages": state["messages"] + ["seen " + state["messages"][0]]}

    graph = StateGraph(Chat)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    graph.add_edge("reply", END)
    with langgraph_connection() as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        app = graph.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "thread-1"}}
        with agent_boundary.request(dental):
            app.invoke({"messages": ["dental"]}, config)
        with agent_boundary.request(design):
            app.invoke({"messages": ["design"]}, config)
        with agent_boundary.request(dental):
            assert app.get_state(config).values["messages"] == ["dental", "seen dental"]
        with agent_boundary.request(design):
            assert app.get_state(config).values["messages"] == ["design", "seen design"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
            app.get_state(config)
    assert set(tenant_of(admin, "checkpoints", "thread_id = %s", ["thread-1"])) == {
        "northstar-dental",
        "northstar-design",
    }


def test_langchain_pgvector_same_collection_and_document_ids(dental, design, admin):
    engine = agent_boundary.sqlalchemy.install(  # the one line
        sqlalchemy.create_engine(APP_DSN.replace("postgresql://", "postgresql+psycopg://", 1), hide_parameters=True)
    )
    try:
        for tok, text in [(dental, "dental crown notes"), (design, "design brand notes")]:
            with agent_boundary.request(tok):
                store = PGVector(FixedEmbeddings(), collection_name="docs", connection=engine, use_jsonb=True)
                store.add_documents([Document(page_content=text)], ids=["doc-1"])
                store.add_documents([Document(page_content=text + " v2")], ids=["doc-1"])
        for tok, expected in [(dental, "dental crown notes v2"), (design, "design brand notes v2")]:
            with agent_boundary.request(tok):
                store = PGVector(FixedEmbeddings(), collection_name="docs", connection=engine, use_jsonb=True)
                # "crown" is nearer to dental's document; design still gets only its own.
                assert [d.page_content for d in store.similarity_search("crown", k=4)] == [expected]
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match=NO_BOUNDARY):
            PGVector(FixedEmbeddings(), collection_name="docs", connection=engine, use_jsonb=True)
    finally:
        engine.dispose()
    assert tenant_of(admin, "langchain_pg_embedding", "id = %s", ["doc-1"]) == [
        "northstar-dental",
        "northstar-design",
    ]


def test_llamaindex_pgvectorstore_created_lazily_and_deleted_per_tenant(dental, design, admin):
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.postgres import PGVectorStore
    from sqlalchemy.ext.asyncio import create_async_engine

    url = APP_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    # The one line: LlamaIndex takes both engines; each is the adapter's.
    engine, async_engine = (agent_boundary.sqlalchemy.install(e) for e in (
        sqlalchemy.create_engine(url, hide_parameters=True), create_async_engine(url, hide_parameters=True)))

    def store():
        return PGVectorStore(engine=engine, async_engine=async_engine, table_name="llama_docs",
                             schema_name="agents", embed_dim=3, initialization_fail_on_error=True)

    def node(text):
        return TextNode(id_="node-1", text=text, embedding=embed([text])[0],
                        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-1")})

    try:
        for tok, text in [(dental, "dental crown notes"), (design, "design brand notes")]:
            with agent_boundary.request(tok):
                # The first call sets up: the table is created inside this request, born scoped.
                assert store().add([node(text)]) == ["node-1"]
        for tok, expected in [(dental, "dental crown notes"), (design, "design brand notes")]:
            with agent_boundary.request(tok):
                hits = store().query(VectorStoreQuery(query_embedding=embed(["crown"])[0], similarity_top_k=4))
                # "crown" is nearer to dental's node; design still gets only its own.
                assert [n.get_content() for n in hits.nodes] == [expected]
        with agent_boundary.request(dental):
            store().delete("doc-1")  # the same ref_doc_id in both tenants: only dental's goes
        with agent_boundary.request(design):
            hits = store().query(VectorStoreQuery(query_embedding=embed(["brand"])[0], similarity_top_k=4))
            assert [n.get_content() for n in hits.nodes] == ["design brand notes"]
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match=NO_BOUNDARY):
            store().query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=4))
    finally:
        engine.dispose()
    assert tenant_of(admin, "data_llama_docs", "node_id = %s", ["node-1"]) == ["northstar-design"]


class NearEmbedder:
    """mem0's embedder interface, deterministic: crown and brand texts are near each other, so
    only the boundary keeps the other tenant's nearer memory out (mem0 drops scores under 0.1)."""

    def embed(self, text, memory_action=None):
        return [1.0, 0.3, 0.0] if "crown" in text else [0.3, 1.0, 0.0] if "brand" in text else [0.3, 0.3, 1.0]


def test_mem0_memories_of_the_same_user_in_both_tenants(dental, design, admin, tmp_path):
    from mem0 import Memory

    # The one line: mem0 takes a psycopg pool; this one's connections are the adapter's.
    pool = psycopg_pool.ConnectionPool(APP_DSN, min_size=1, max_size=2, connection_class=agent_boundary.psycopg.Connection)
    with pool:
        memory = Memory.from_config({
            "vector_store": {"provider": "pgvector", "config": {
                "connection_pool": pool, "collection_name": "mem0_memories", "embedding_model_dims": 3}},
            # infer=False below: no LLM is called; the clients are built, never used.
            "llm": {"provider": "openai", "config": {"api_key": "unused"}},
            "embedder": {"provider": "openai", "config": {"api_key": "unused", "embedding_dims": 3}},
            "history_db_path": str(tmp_path / "mem0-history.db"),
        })
        memory.embedding_model = NearEmbedder()
        ids = {}
        for name, tok, text in [("dental", dental, "alice wants the crown fitted on monday"),
                                ("design", design, "alice wants the brand colours reviewed")]:
            with agent_boundary.request(tok):
                added = memory.add([{"role": "user", "content": text}], user_id="alice", infer=False)
                assert [m["memory"] for m in added["results"]] == [text]
                ids[name] = added["results"][0]["id"]
        for tok, own in [(dental, "alice wants the crown fitted on monday"),
                         (design, "alice wants the brand colours reviewed")]:
            with agent_boundary.request(tok):
                # "crown" is nearer to dental's memory; design still gets only its own.
                hits = memory.search("crown", filters={"user_id": "alice"}, top_k=5)
                assert [h["memory"] for h in hits["results"]] == [own]
                assert [m["memory"] for m in memory.get_all(filters={"user_id": "alice"})["results"]] == [own]
        with agent_boundary.request(design):
            assert memory.get(ids["dental"]) is None
            assert memory.get(ids["design"])["memory"] == "alice wants the brand colours reviewed"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
            memory.search("crown", filters={"user_id": "alice"})
    assert tenant_of(admin, "mem0_memories", "payload->>'user_id' = %s", ["alice"]) == [
        "northstar-dental",
        "northstar-design",
    ]


def test_langchain_pgvectorstore_same_ids_through_the_async_engine(dental, design, admin):
    from langchain_postgres import PGEngine, PGVectorStore
    from sqlalchemy.ext.asyncio import create_async_engine

    doc_id = "00000000-0000-0000-0000-0000000000d1"

    async def run():
        url = APP_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
        # The one line. from_engine, not from_connection_string: PGEngine then runs in the
        # caller's event loop, where the request's token is (its own loop thread never sees it).
        engine = PGEngine.from_engine(agent_boundary.sqlalchemy.install(create_async_engine(url, hide_parameters=True)))
        try:
            await engine.ainit_vectorstore_table("lc_docs", 3, schema_name="agents")
            for tok, text in [(dental, "dental crown notes"), (design, "design brand notes")]:
                with agent_boundary.request(tok):
                    store = await PGVectorStore.create(engine, FixedEmbeddings(), "lc_docs", schema_name="agents")
                    await store.aadd_documents([Document(page_content=text)], ids=[doc_id])
                    await store.aadd_documents([Document(page_content=text + " v2")], ids=[doc_id])
            for tok, expected in [(dental, "dental crown notes v2"), (design, "design brand notes v2")]:
                with agent_boundary.request(tok):
                    store = await PGVectorStore.create(engine, FixedEmbeddings(), "lc_docs", schema_name="agents")
                    # "crown" is nearer to dental's document; design still gets only its own.
                    assert [d.page_content for d in await store.asimilarity_search("crown", k=4)] == [expected]
            with pytest.raises(sqlalchemy.exc.ProgrammingError, match=NO_BOUNDARY):
                await store.asimilarity_search("crown", k=4)
        finally:
            await engine.close()

    asyncio.run(run())
    assert tenant_of(admin, "lc_docs", "langchain_id::text = %s", [doc_id]) == [
        "northstar-dental",
        "northstar-design",
    ]
