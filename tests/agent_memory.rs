//! Agent memory, run state and the cache, from a real client against a real server, with the
//! lookalike tenants. Expiry is real time here (each statement has its own clock).

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use support::*;
use tokio_postgres::types::Type;

const FIXTURE: &str = "CREATE ROLE agent LOGIN NOBYPASSRLS;";

fn with_run(tenant: &str, role: &str, run: &str) -> String {
    app_token(tenant, "support", "alice", role, json!({"run_id": run}))
}

async fn value(client: &Client, sql: &str, arg: &str) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client.query_typed_one(sql, &[(&arg, Type::TEXT)]).await?;
    Ok(row.get::<_, Option<String>>(0))
}

async fn lookalike_tenants_write_the_same_name_and_read_their_own() {
    let dental = cluster().connect("agent").await;
    let design = cluster().connect("agent").await;
    for (client, token, note) in
        [(&dental, dental_alice(), "Dental renews Jan 31"), (&design, design_alice(), "Design renews Jun 30")]
    {
        client.batch_execute("BEGIN").await.unwrap();
        enter(client, &token).await.unwrap();
        value(client, "SELECT boundary.memory_set('renewal', to_jsonb($1::text))", note).await.unwrap();
        client.batch_execute("COMMIT").await.unwrap();
    }
    for (client, token, note) in
        [(&dental, dental_alice(), "Dental renews Jan 31"), (&design, design_alice(), "Design renews Jun 30")]
    {
        client.batch_execute("BEGIN").await.unwrap();
        enter(client, &token).await.unwrap();
        assert_eq!(
            column(client, "SELECT boundary.memory_get('renewal') #>> '{}'").await.unwrap(),
            [note.to_string()]
        );
        assert_eq!(column(client, "SELECT count(*) FROM boundary.memories").await.unwrap(), ["1"]);
        client.batch_execute("COMMIT").await.unwrap();
    }
}

async fn run_state_expires_in_real_time_and_is_purged() {
    let agent = cluster().connect("agent").await;
    let token = with_run("northstar-dental", "admin", "run-expiry");
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    agent.batch_execute("SELECT boundary.run_state_set('step', '{\"n\": 1}', '1 second')").await.unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    assert_eq!(column(&agent, "SELECT boundary.run_state_get('step')::text").await.unwrap(), ["{\"n\": 1}"]);
    agent.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    assert_eq!(
        column(&agent, "SELECT coalesce(boundary.run_state_get('step')::text, 'gone')").await.unwrap(),
        ["gone"]
    );
    agent.batch_execute("COMMIT").await.unwrap();
    let admin = cluster().connect("postgres").await;
    assert_eq!(
        column(&admin, "SELECT count(*) FROM boundary.run_state WHERE run_id = 'run-expiry'").await.unwrap(),
        ["1"]
    );
    let purged: i64 = column(&admin, "SELECT boundary.purge_expired()").await.unwrap()[0].parse().unwrap();
    assert!(purged >= 1);
    assert_eq!(
        column(&admin, "SELECT count(*) FROM boundary.run_state WHERE run_id = 'run-expiry'").await.unwrap(),
        ["0"]
    );
    assert_refused(
        agent.batch_execute("SELECT boundary.purge_expired()").await,
        "42501",
        "permission denied for function purge_expired",
    );
}

async fn a_scratchpad_is_not_memory_until_promoted() {
    let agent = cluster().connect("agent").await;
    let token = with_run("northstar-design", "member", "run-promote");
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    agent
        .batch_execute("SELECT boundary.run_state_set('observation', '\"client prefers email\"')")
        .await
        .unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    // A later run of the same user sees neither the scratchpad nor a memory.
    let later = with_run("northstar-design", "member", "run-later");
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &later).await.unwrap();
    assert_eq!(
        column(&agent, "SELECT coalesce(boundary.run_state_get('observation')::text, '-') || '|' || coalesce(boundary.memory_get('observation')::text, '-')")
            .await
            .unwrap(),
        ["-|-"]
    );
    agent.batch_execute("COMMIT").await.unwrap();
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    agent.batch_execute("SELECT boundary.promote('observation')").await.unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &later).await.unwrap();
    assert_eq!(
        column(&agent, "SELECT boundary.memory_get('observation') #>> '{}' || ' (from ' || promoted_from_run || ')' FROM boundary.memories WHERE name = 'observation'")
            .await
            .unwrap(),
        ["client prefers email (from run-promote)"]
    );
    agent.batch_execute("COMMIT").await.unwrap();
}

async fn cache_key(client: &Client, question: &str, version: &str) -> String {
    client
        .query_typed_one(
            "SELECT boundary.cache_key('answers', $1, $2)",
            &[(&question, Type::TEXT), (&version, Type::TEXT)],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
}

async fn cache_misses_when_datasources_or_prompt_version_change() {
    let agent = cluster().connect("agent").await;
    let admin = cluster().connect("postgres").await;
    let question = "What did the billing dispute say?";
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    let key = cache_key(&agent, question, "v1").await;
    value(&agent, "SELECT boundary.cache_put($1, '\"from tickets\"')::text", &key).await.unwrap();
    assert_eq!(
        value(&agent, "SELECT boundary.cache_get($1) #>> '{}'", &key).await.unwrap(),
        Some("from tickets".into())
    );
    let v2 = cache_key(&agent, question, "v2").await;
    assert_eq!(
        value(&agent, "SELECT boundary.cache_get($1)::text", &v2).await.unwrap(),
        None,
        "new prompt version"
    );
    agent.batch_execute("COMMIT").await.unwrap();
    // The registry grants a new datasource: same question, different key; the old key is refused.
    admin
        .batch_execute("SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us', '{search,crm}', '{tickets,contracts}')")
        .await
        .unwrap();
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    let widened = cache_key(&agent, question, "v1").await;
    assert_ne!(widened, key);
    assert_eq!(value(&agent, "SELECT boundary.cache_get($1)::text", &widened).await.unwrap(), None);
    assert_refused(
        value(&agent, "SELECT boundary.cache_get($1)::text", &key).await,
        "42501",
        "cache key was not built for the current agent boundary",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    admin
        .batch_execute("SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us', '{search,crm}', '{tickets}')")
        .await
        .unwrap();
    // The lookalike tenant asking the same question never gets Dental's answer.
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &design_alice()).await.unwrap();
    let design_key = cache_key(&agent, question, "v1").await;
    assert_eq!(value(&agent, "SELECT boundary.cache_get($1)::text", &design_key).await.unwrap(), None);
    assert_refused(
        value(&agent, "SELECT boundary.cache_get($1)::text", &key).await,
        "42501",
        "cache key was not built for the current agent boundary",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
}

/// The stores' functions are the only way in: plain SQL from the agent role cannot forge who
/// wrote a memory or which run it came from, stretch a TTL to infinity, store a value the
/// functions refuse, or delete another run's state; a superuser's maintenance still can.
async fn the_store_functions_are_the_only_way_in() {
    let agent = cluster().connect("agent").await;
    let token = with_run("northstar-dental", "member", "run-direct");
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    agent
        .batch_execute(
            "SELECT boundary.memory_set('plan', '{\"step\": 1}');
             SELECT boundary.run_state_set('draft', '1');
             SELECT boundary.cache_put(boundary.cache_key('direct-writes', 'q', 'v1'), '1')",
        )
        .await
        .unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    let refused = |command: &str, table: &str| {
        format!(
            "{command} on boundary.{table} is refused: the agent_boundary functions are the only way to change it"
        )
    };
    for (sql, command, table) in [
        (
            "UPDATE boundary.memories SET created_by = 'bob', promoted_from_run = 'run-approved'",
            "UPDATE",
            "memories",
        ),
        (
            "UPDATE boundary.memories SET value = (SELECT jsonb_agg(g) FROM generate_series(1, 300000) g)",
            "UPDATE",
            "memories",
        ),
        ("DELETE FROM boundary.memories", "DELETE", "memories"),
        ("UPDATE boundary.run_state SET expires_at = 'infinity'", "UPDATE", "run_state"),
        (
            "INSERT INTO boundary.run_state (name, value, expires_at) VALUES ('forever', '1', 'infinity')",
            "INSERT",
            "run_state",
        ),
        ("UPDATE boundary.cache SET expires_at = 'infinity'", "UPDATE", "cache"),
        ("DELETE FROM boundary.cache", "DELETE", "cache"),
    ] {
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        assert_refused(agent.batch_execute(sql).await, "42501", &refused(command, table));
        agent.batch_execute("ROLLBACK").await.unwrap();
    }
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &token).await.unwrap();
    assert_eq!(
        column(&agent, "SELECT created_by || ' ' || coalesce(promoted_from_run, '-') FROM boundary.memories WHERE name = 'plan'")
            .await
            .unwrap(),
        ["alice -"]
    );
    assert_eq!(column(&agent, "SELECT boundary.memory_delete('plan')::text").await.unwrap(), ["true"]);
    agent.batch_execute("COMMIT").await.unwrap();
    let admin = cluster().connect("postgres").await;
    // A superuser's maintenance is not a tenant's request.
    admin
        .batch_execute(
            "DELETE FROM boundary.run_state WHERE run_id = 'run-direct';
             DELETE FROM boundary.cache WHERE key LIKE '%:direct-writes:%'",
        )
        .await
        .unwrap();
    assert_eq!(
        column(&admin, "SELECT count(*) FROM boundary.cache WHERE key LIKE '%:direct-writes:%'")
            .await
            .unwrap(),
        ["0"]
    );
}

fn main() {
    let args = Arguments::from_args();
    start_shared_cluster("agent_memory", FIXTURE);
    let trials = trials![
        lookalike_tenants_write_the_same_name_and_read_their_own,
        run_state_expires_in_real_time_and_is_purged,
        a_scratchpad_is_not_memory_until_promoted,
        cache_misses_when_datasources_or_prompt_version_change,
        the_store_functions_are_the_only_way_in,
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
