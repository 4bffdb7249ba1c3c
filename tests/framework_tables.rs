//! Tables born without a tenant column: with `agent_boundary.auto_protect_add_columns`, the
//! tables agent frameworks create for themselves (here with the DDL and upserts LangGraph's
//! store and checkpointer and langchain-postgres' PGVector run, created by the app role) get the
//! scope columns and protection, their keys become per tenant, and two lookalike tenants writing
//! the same keys each succeed and read back their own value.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use support::*;

const SETTINGS: &[&str] = &[
    "shared_preload_libraries = 'agent_boundary'",
    "agent_boundary.auto_protect_schemas = 'agents'",
    "agent_boundary.auto_protect_add_columns = 'tenant'",
    "agent_boundary.auto_protect_shared_tables = 'store_migrations, checkpoint_migrations'",
];

const FIXTURE: &str = "
CREATE ROLE agent LOGIN NOBYPASSRLS;
CREATE SCHEMA agents AUTHORIZATION agent;
";

/// LangGraph's PostgresStore migrations, as it runs them at start-up (search_path = agents).
const STORE_DDL: &str = "
CREATE TABLE IF NOT EXISTS store_migrations (v INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS store (
    prefix text NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key)
);
CREATE INDEX CONCURRENTLY IF NOT EXISTS store_prefix_idx ON store USING btree (prefix text_pattern_ops);
ALTER TABLE store ADD COLUMN IF NOT EXISTS expires_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE store ADD COLUMN IF NOT EXISTS ttl_minutes INT;
CREATE TABLE IF NOT EXISTS store_vectors (
    prefix text NOT NULL,
    key text NOT NULL,
    field_name text NOT NULL,
    embedding vector(3),
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key, field_name),
    FOREIGN KEY (prefix, key) REFERENCES store (prefix, key) ON DELETE CASCADE
);
INSERT INTO store_migrations (v) VALUES (0), (1), (2), (3) ON CONFLICT DO NOTHING;
";

/// LangGraph's PostgresSaver tables (abridged to the keys it upserts on).
const CHECKPOINT_DDL: &str = "
CREATE TABLE IF NOT EXISTS checkpoint_migrations (v INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS checkpoint_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    blob BYTEA NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
ALTER TABLE checkpoint_writes ADD COLUMN IF NOT EXISTS task_path TEXT NOT NULL DEFAULT '';
";

/// langchain-postgres' PGVector tables: a column-level REFERENCES to a uuid primary key.
const PGVECTOR_DDL: &str = "
CREATE TABLE IF NOT EXISTS langchain_pg_collection (
    uuid UUID PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    cmetadata JSON
);
CREATE TABLE IF NOT EXISTS langchain_pg_embedding (
    id VARCHAR PRIMARY KEY,
    collection_id UUID REFERENCES langchain_pg_collection (uuid) ON DELETE CASCADE,
    embedding vector(3),
    document VARCHAR,
    cmetadata JSONB
);
";

/// Runs each statement of `ddl` on its own, as the frameworks do (CREATE INDEX CONCURRENTLY
/// cannot share a transaction).
async fn migrate(client: &Client, ddl: &str) {
    for statement in ddl.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        client.batch_execute(statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

async fn agent() -> Client {
    let client = cluster().connect("agent").await;
    client.batch_execute("SET search_path = agents, public").await.unwrap();
    client
}

/// `sql` (one statement, `$1`...) in one request of `token`'s boundary; the first column of
/// each row as text.
async fn in_boundary(
    client: &Client,
    token: &str,
    sql: &str,
    params: &[&str],
) -> Result<Vec<String>, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    enter(client, token).await?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let typed = format!("SELECT x::text FROM ({sql}) AS r(x)");
    let result = if sql.trim_start().to_uppercase().starts_with("SELECT") {
        client.query(&typed, &params).await.map(|rows| rows.iter().map(|r| r.get(0)).collect())
    } else {
        client.execute(sql, &params).await.map(|n| vec![n.to_string()])
    };
    match result {
        Ok(rows) => {
            client.batch_execute("COMMIT").await?;
            Ok(rows)
        }
        Err(error) => {
            client.batch_execute("ROLLBACK").await.unwrap();
            Err(error)
        }
    }
}

/// The key columns of each unique index of `table`, in index order.
async fn unique_keys(admin: &Client, table: &str) -> Vec<String> {
    column(
        admin,
        &format!(
            "SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = 'agents.{table}'::regclass AND i.indisunique
              GROUP BY i.indexrelid ORDER BY 1"
        ),
    )
    .await
    .unwrap()
}

async fn langgraph_store_tables_are_born_scoped_and_both_tenants_write_the_same_keys() {
    let admin = cluster().connect("postgres").await;
    let agent = agent().await;
    migrate(&agent, STORE_DDL).await;
    // Start-up again, as every LangGraph process does: nothing changes, nothing fails.
    migrate(&agent, STORE_DDL).await;
    assert_eq!(unique_keys(&admin, "store").await, ["tenant_id,prefix,key"]);
    assert_eq!(unique_keys(&admin, "store_vectors").await, ["tenant_id,prefix,key,field_name"]);
    let fk = column(
        &admin,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'agents.store_vectors'::regclass AND contype = 'f'",
    )
    .await
    .unwrap();
    assert_eq!(fk, ["FOREIGN KEY (tenant_id, prefix, key) REFERENCES agents.store(tenant_id, prefix, key) ON DELETE CASCADE"]);
    // The migration log stays shared: readable at start-up, before any request.
    assert_eq!(column(&agent, "SELECT count(*) FROM store_migrations").await.unwrap(), ["4"]);
    let protected =
        column(&admin, "SELECT relname FROM pg_class WHERE relnamespace = 'agents'::regnamespace AND relrowsecurity ORDER BY 1")
            .await
            .unwrap();
    assert!(
        protected.contains(&"store".to_string()) && protected.contains(&"store_vectors".to_string()),
        "{protected:?}"
    );
    assert!(!protected.contains(&"store_migrations".to_string()));

    let upsert = "INSERT INTO store (prefix, key, value) VALUES ($1, $2, $3::text::jsonb)
                  ON CONFLICT (prefix, key) DO UPDATE SET value = EXCLUDED.value, updated_at = CURRENT_TIMESTAMP";
    let vector = "INSERT INTO store_vectors (prefix, key, field_name, embedding) VALUES ($1, $2, 'text', $3::text::vector)
                  ON CONFLICT (prefix, key, field_name) DO UPDATE SET embedding = EXCLUDED.embedding";
    for (token, value) in [
        (dental_alice(), "dental-1"),
        (design_alice(), "design-1"),
        (dental_alice(), "dental-2"),
        (design_alice(), "design-2"),
    ] {
        let json = format!("{{\"v\": \"{value}\"}}");
        assert_eq!(
            in_boundary(&agent, &token, upsert, &["users.alice", "profile", &json]).await.unwrap(),
            ["1"]
        );
        assert_eq!(
            in_boundary(&agent, &token, vector, &["users.alice", "profile", "[1,2,3]"]).await.unwrap(),
            ["1"]
        );
    }
    let read = "SELECT value->>'v' FROM store WHERE prefix = $1 AND key = $2";
    assert_eq!(
        in_boundary(&agent, &dental_alice(), read, &["users.alice", "profile"]).await.unwrap(),
        ["dental-2"]
    );
    assert_eq!(
        in_boundary(&agent, &design_alice(), read, &["users.alice", "profile"]).await.unwrap(),
        ["design-2"]
    );
    let owners = column(&admin, "SELECT tenant_id || ':' || (value->>'v') FROM agents.store ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(owners, ["northstar-dental:dental-2", "northstar-design:design-2"]);
    // ON CONFLICT ON CONSTRAINT and DO NOTHING without a target are per tenant as well.
    let by_name = "INSERT INTO store (prefix, key, value) VALUES ($1, $2, '{\"v\": \"x\"}')
                   ON CONFLICT ON CONSTRAINT store_pkey DO NOTHING";
    assert_eq!(
        in_boundary(&agent, &design_alice(), by_name, &["users.alice", "profile"]).await.unwrap(),
        ["0"]
    );
    assert_eq!(
        in_boundary(&agent, &design_alice(), by_name, &["users.bob", "profile"]).await.unwrap(),
        ["1"]
    );
    // Without a boundary the store fails closed.
    assert_refused(column(&agent, "SELECT count(*) FROM store").await, "42501", "no agent boundary is set");
}

async fn langgraph_checkpoints_keep_one_thread_id_per_tenant() {
    let admin = cluster().connect("postgres").await;
    let agent = agent().await;
    migrate(&agent, CHECKPOINT_DDL).await;
    assert_eq!(unique_keys(&admin, "checkpoints").await, ["tenant_id,thread_id,checkpoint_ns,checkpoint_id"]);
    assert_eq!(unique_keys(&admin, "checkpoint_migrations").await, ["v"]);
    let put = "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata)
               VALUES ($1, '', $2, $3::text::jsonb, '{}')
               ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET checkpoint = EXCLUDED.checkpoint";
    let write =
        "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, blob)
                 VALUES ($1, '', $2, 'task', 0, 'messages', '\\x00')
                 ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING";
    for (token, state) in
        [(dental_alice(), "{\"step\": \"dental\"}"), (design_alice(), "{\"step\": \"design\"}")]
    {
        assert_eq!(in_boundary(&agent, &token, put, &["thread-1", "cp-1", state]).await.unwrap(), ["1"]);
        assert_eq!(in_boundary(&agent, &token, write, &["thread-1", "cp-1"]).await.unwrap(), ["1"]);
        assert_eq!(in_boundary(&agent, &token, write, &["thread-1", "cp-1"]).await.unwrap(), ["0"]);
    }
    let latest = "SELECT checkpoint->>'step' FROM checkpoints WHERE thread_id = $1";
    assert_eq!(in_boundary(&agent, &dental_alice(), latest, &["thread-1"]).await.unwrap(), ["dental"]);
    assert_eq!(in_boundary(&agent, &design_alice(), latest, &["thread-1"]).await.unwrap(), ["design"]);
}

async fn pgvector_collections_and_document_ids_repeat_across_tenants() {
    let admin = cluster().connect("postgres").await;
    let agent = agent().await;
    migrate(&agent, PGVECTOR_DDL).await;
    assert_eq!(unique_keys(&admin, "langchain_pg_collection").await, ["tenant_id,name", "tenant_id,uuid"]);
    assert_eq!(unique_keys(&admin, "langchain_pg_embedding").await, ["tenant_id,id"]);
    let collection = "INSERT INTO langchain_pg_collection (uuid, name) VALUES ($1::text::uuid, 'docs')";
    let upsert = "INSERT INTO langchain_pg_embedding (id, collection_id, embedding, document)
                  VALUES ($1, $2::text::uuid, '[1,0,0]', $3)
                  ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document";
    let uuid = "00000000-0000-0000-0000-00000000c011";
    for (token, document) in [(dental_alice(), "dental crown notes"), (design_alice(), "design brand notes")]
    {
        assert_eq!(in_boundary(&agent, &token, collection, &[uuid]).await.unwrap(), ["1"]);
        assert_eq!(in_boundary(&agent, &token, upsert, &["doc-1", uuid, document]).await.unwrap(), ["1"]);
        assert_eq!(in_boundary(&agent, &token, upsert, &["doc-1", uuid, document]).await.unwrap(), ["1"]);
    }
    let search = "SELECT document FROM langchain_pg_embedding WHERE id = $1";
    assert_eq!(
        in_boundary(&agent, &dental_alice(), search, &["doc-1"]).await.unwrap(),
        ["dental crown notes"]
    );
    assert_eq!(
        in_boundary(&agent, &design_alice(), search, &["doc-1"]).await.unwrap(),
        ["design brand notes"]
    );
    // A reset drops and recreates the tables: born scoped again.
    agent.batch_execute("DROP TABLE langchain_pg_embedding, langchain_pg_collection").await.unwrap();
    migrate(&agent, PGVECTOR_DDL).await;
    assert_eq!(unique_keys(&admin, "langchain_pg_embedding").await, ["tenant_id,id"]);
    assert_eq!(in_boundary(&agent, &design_alice(), search, &["doc-1"]).await.unwrap(), Vec::<String>::new());
}

async fn unique_keys_added_later_are_per_tenant_too() {
    let admin = cluster().connect("postgres").await;
    let agent = agent().await;
    agent
        .batch_execute(
            "CREATE TABLE memories (id bigserial, external_id text NOT NULL, body text);
             CREATE UNIQUE INDEX memories_external ON memories (external_id);
             ALTER TABLE memories ADD CONSTRAINT memories_id UNIQUE (id);",
        )
        .await
        .unwrap();
    assert_eq!(unique_keys(&admin, "memories").await, ["tenant_id,external_id", "tenant_id,id"]);
    // Created inside a request, as a framework does lazily on first use.
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    agent.batch_execute("CREATE TABLE lazily (doc_id text PRIMARY KEY, body text)").await.unwrap();
    agent.batch_execute("INSERT INTO lazily VALUES ('d1', 'dental')").await.unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    assert_eq!(unique_keys(&admin, "lazily").await, ["tenant_id,doc_id"]);
    let rows = column(&admin, "SELECT tenant_id FROM agents.lazily").await.unwrap();
    assert_eq!(rows, ["northstar-dental"]);
}

async fn a_table_the_hook_cannot_scope_is_refused_not_left_open() {
    let agent = agent().await;
    assert_refused(
        agent.batch_execute("CREATE TABLE copied (LIKE agents.store_migrations)").await,
        "55000",
        "table agents.copied was created without the scope columns agent_boundary.auto_protect_add_columns adds",
    );
    assert_eq!(
        column(&agent, "SELECT count(*) FROM pg_class WHERE relname = 'copied'").await.unwrap(),
        ["0"],
        "the CREATE rolled back"
    );
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(
            "SET search_path = agents; SET agent_boundary.auto_protect_add_columns = 'tenant, org'",
        )
        .await
        .unwrap();
    assert_refused(
        admin.batch_execute("CREATE TABLE odd (id int PRIMARY KEY)").await,
        "22023",
        "agent_boundary.auto_protect_add_columns: \"org\" is not a scope field (tenant, workspace, user)",
    );
}

/// Frameworks' tables made before (or outside) the scoped schemas: the lint names them and the
/// framework; the scoped ones in `agents` have no finding.
async fn unscoped_framework_tables_elsewhere_are_reported_by_the_lint() {
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(
            "CREATE SCHEMA legacy;
             CREATE TABLE legacy.checkpoints (thread_id text, checkpoint_ns text, checkpoint_id text, checkpoint jsonb);
             CREATE TABLE legacy.store (prefix text, key text, value jsonb, PRIMARY KEY (prefix, key));
             CREATE TABLE legacy.langchain_pg_embedding (id varchar PRIMARY KEY, embedding vector(3), document varchar);
             CREATE TABLE legacy.data_docs (id bigserial PRIMARY KEY, text varchar, metadata_ json, node_id varchar, embedding vector(3));
             CREATE TABLE legacy.mem0 (id uuid PRIMARY KEY, vector vector(3), payload jsonb);
             CREATE TABLE legacy.countries (id int PRIMARY KEY, name text);",
        )
        .await
        .unwrap();
    let findings = column(
        &admin,
        "SELECT object || ': ' || split_part(problem, ' and has no', 1) FROM boundary.unprotected_tables()
          WHERE object LIKE 'legacy.%'
             OR (object LIKE 'agents.%' AND problem NOT LIKE 'no role but its owner%') ORDER BY 1",
    )
    .await
    .unwrap();
    // The app role created (so owns) the scoped tables; the lint says what that allows, as the
    // deployment rule in docs/drivers.md does (migrations as an owner role, requests as another).
    let owned = column(
        &admin,
        "SELECT object FROM boundary.unprotected_tables()
          WHERE object = 'agents.store' AND problem LIKE 'no role but its owner agent %'",
    )
    .await
    .unwrap();
    admin.batch_execute("DROP SCHEMA legacy CASCADE").await.unwrap();
    assert_eq!(owned, ["agents.store"]);
    assert_eq!(
        findings,
        [
            "legacy.checkpoints: looks like LangGraph (PostgresSaver)'s table",
            "legacy.data_docs: looks like LlamaIndex (PGVectorStore)'s table",
            "legacy.langchain_pg_embedding: looks like langchain-postgres (PGVector)'s table",
            "legacy.mem0: looks like mem0 (pgvector)'s table",
            "legacy.store: looks like LangGraph (PostgresStore)'s table",
        ]
    );
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    start_shared_cluster_with("framework-tables", SETTINGS, FIXTURE);
    let trials = trials![
        langgraph_store_tables_are_born_scoped_and_both_tenants_write_the_same_keys,
        langgraph_checkpoints_keep_one_thread_id_per_tenant,
        pgvector_collections_and_document_ids_repeat_across_tenants,
        unique_keys_added_later_are_per_tenant_too,
        a_table_the_hook_cannot_scope_is_refused_not_left_open,
        unscoped_framework_tables_elsewhere_are_reported_by_the_lint,
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
