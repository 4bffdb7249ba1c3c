"""The adapters against a real server: two lookalike tenants, the same queries, each sees and
writes only its own rows; no request, no rows; a pooled connection carries nothing over."""

import asyncio
import concurrent.futures
import uuid

import asyncpg
import psycopg
import psycopg_pool
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine

import agent_boundary
import agent_boundary.asyncpg
import agent_boundary.psycopg
import agent_boundary.sqlalchemy
from conftest import ADMIN_DSN, APP_DSN, KID, SECRET, token

NOTES = "SELECT body FROM notes ORDER BY body"
DENTAL_NOTES = ["dental: crown follow-up"]
DESIGN_NOTES = ["design: brand refresh"]
NO_BOUNDARY = "no agent boundary is set"


def sqlalchemy_url(driver: str) -> str:
    return APP_DSN.replace("postgresql://", f"postgresql+{driver}://", 1)


# psycopg 3 ------------------------------------------------------------------------------------


def test_psycopg_connection_enters_each_transaction(dental, design):
    with agent_boundary.psycopg.connect(APP_DSN) as conn:
        with agent_boundary.request(dental):
            assert [r[0] for r in conn.execute(NOTES)] == DENTAL_NOTES
            conn.commit()
        with agent_boundary.request(design):
            assert [r[0] for r in conn.execute(NOTES)] == DESIGN_NOTES
            with conn.transaction():
                assert [r[0] for r in conn.execute(NOTES)] == DESIGN_NOTES
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
            conn.execute(NOTES)
        conn.rollback()
        assert conn.execute("SHOW agent_boundary.enter_requires_transaction_block").fetchone()[0] == "on"


def test_psycopg_autocommit_connection_gets_a_block_per_statement(dental, design, admin):
    # LangGraph's checkpointers require autocommit connections.
    with agent_boundary.psycopg.connect(APP_DSN, autocommit=True) as conn:
        marker = f"autocommit-{uuid.uuid4()}"
        with agent_boundary.request(dental):
            assert [r[0] for r in conn.execute(NOTES)] == DENTAL_NOTES
            conn.execute("INSERT INTO notes (body) VALUES (%s)", [marker])
        with agent_boundary.request(design):
            assert [r[0] for r in conn.execute(NOTES)] == DESIGN_NOTES
            with conn.transaction():
                conn.execute("INSERT INTO notes (body) VALUES (%s)", [marker])
                assert marker in [r[0] for r in conn.execute(NOTES)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
            conn.execute(NOTES)
    tenants = admin.execute("SELECT tenant_id FROM notes WHERE body = %s ORDER BY 1", [marker]).fetchall()
    assert tenants == [("northstar-dental",), ("northstar-design",)]
    admin.execute("DELETE FROM notes WHERE body = %s", [marker])


def test_psycopg_pool_never_carries_a_boundary_to_the_next_request(dental, design):
    with psycopg_pool.ConnectionPool(
        APP_DSN, min_size=1, max_size=1, connection_class=agent_boundary.psycopg.Connection, open=True
    ) as pool:
        for tok, expected in [(dental, DENTAL_NOTES), (design, DESIGN_NOTES), (dental, DENTAL_NOTES)]:
            with agent_boundary.request(tok), pool.connection() as conn:
                assert [r[0] for r in conn.execute(NOTES)] == expected
        with pool.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
                conn.execute(NOTES)


def test_a_refused_token_is_the_servers_error_not_a_pool_timeout():
    forged = agent_boundary.mint_token(
        b"a-secret-the-database-never-saw-0123", KID,
        tenant_id="northstar-dental", workspace_id="support", user_id="alice", role="admin",
    )
    with psycopg_pool.ConnectionPool(
        APP_DSN, min_size=1, max_size=1, timeout=5, connection_class=agent_boundary.psycopg.Connection
    ) as pool:
        with agent_boundary.request(forged), pool.connection() as conn:
            with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification) as refused:
                conn.execute(NOTES)
    assert "agent boundary token refused: signature does not verify" in str(refused.value)


def test_signing_with_the_base64_text_is_refused_with_a_hint():
    with_text = agent_boundary.mint_token(
        SECRET.encode(), KID,
        tenant_id="northstar-dental", workspace_id="support", user_id="alice", role="admin",
    )
    with agent_boundary.psycopg.connect(APP_DSN) as conn, agent_boundary.request(with_text):
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification) as refused:
            conn.execute(NOTES)
    assert "base64-decode what generate_signing_key returned" in refused.value.diag.message_hint
    with pytest.raises(agent_boundary.BoundaryUsageError, match="not base64"):
        agent_boundary.mint_token("not base64!", KID, tenant_id="t", workspace_id="w", user_id="u", role="r")


def test_psycopg_async_pool(dental, design):
    async def main():
        async with psycopg_pool.AsyncConnectionPool(
            APP_DSN, min_size=1, max_size=2, connection_class=agent_boundary.psycopg.AsyncConnection, open=False
        ) as pool:

            async def read(tok):
                with agent_boundary.request(tok):
                    async with pool.connection() as conn:
                        cur = await conn.execute(NOTES)
                        return [r[0] for r in await cur.fetchall()]

            # Concurrent tasks each keep their own token.
            return await asyncio.gather(*[read(t) for t in [dental, design] * 4])

    assert asyncio.run(main()) == [DENTAL_NOTES, DESIGN_NOTES] * 4


def test_thread_pools_carry_the_token_only_when_bound(dental):
    def read():
        with agent_boundary.psycopg.connect(APP_DSN) as conn:
            return [r[0] for r in conn.execute(NOTES)]

    with concurrent.futures.ThreadPoolExecutor(1) as pool, agent_boundary.request(dental):
        assert pool.submit(agent_boundary.bind(read)).result() == DENTAL_NOTES
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=NO_BOUNDARY):
            pool.submit(read).result()


# SQLAlchemy -----------------------------------------------------------------------------------


def test_sqlalchemy_engine(dental, design):
    engine = agent_boundary.sqlalchemy.install(
        sqlalchemy.create_engine(sqlalchemy_url("psycopg"), hide_parameters=True, pool_size=1, max_overflow=0)
    )
    for tok, expected in [(dental, DENTAL_NOTES), (design, DESIGN_NOTES)]:
        with agent_boundary.request(tok), engine.connect() as conn:
            assert conn.execute(sqlalchemy.text(NOTES)).scalars().all() == expected
    with engine.connect() as conn:
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match=NO_BOUNDARY):
            conn.execute(sqlalchemy.text(NOTES))
    with agent_boundary.request(dental), engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        with pytest.raises(agent_boundary.BoundaryUsageError, match="AUTOCOMMIT"):
            conn.execute(sqlalchemy.text(NOTES))
    engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_sqlalchemy_async_engine(driver, dental, design):
    async def main():
        engine = agent_boundary.sqlalchemy.install(create_async_engine(sqlalchemy_url(driver), hide_parameters=True))

        async def read(tok):
            with agent_boundary.request(tok):
                async with engine.connect() as conn:
                    return (await conn.execute(sqlalchemy.text(NOTES))).scalars().all()

        try:
            return await asyncio.gather(*[read(t) for t in [dental, design] * 3])
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == [DENTAL_NOTES, DESIGN_NOTES] * 3


# asyncpg ---------------------------------------------------------------------------------------


def test_asyncpg_transaction(dental, design):
    async def main():
        pool = await asyncpg.create_pool(
            APP_DSN, min_size=1, max_size=1, server_settings=agent_boundary.asyncpg.SERVER_SETTINGS
        )
        try:
            seen = []
            for tok in [dental, design]:
                with agent_boundary.request(tok):
                    async with pool.acquire() as conn, agent_boundary.asyncpg.transaction(conn):
                        seen.append([r["body"] for r in await conn.fetch(NOTES)])
            async with pool.acquire() as conn:
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match=NO_BOUNDARY):
                    await conn.fetch(NOTES)
                # A stray enter outside a transaction block is an error on these connections.
                with pytest.raises(asyncpg.exceptions.NoActiveSQLTransactionError):
                    await conn.fetchval("SELECT boundary.enter($1)", dental)
            return seen
        finally:
            await pool.close()

    assert asyncio.run(main()) == [DENTAL_NOTES, DESIGN_NOTES]
