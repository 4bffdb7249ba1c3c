// `#[pg_test]` units for durable memory, run state and the cache, read and written as the
// ordinary role `agent_tester` (a superuser would bypass the policies).
//
// Included into a `#[pg_schema] mod tests` by the parent module: the attribute cannot
// be put on a module that lives in its own file, and pgrx runs these in schema "tests".

use crate::test_support::*;
use pgrx::prelude::*;
use serde_json::json;

fn fixture_with_bob() {
    fixture();
    Spi::run(
        "SELECT boundary.register_principal('northstar-dental', 'support', 'bob', 'member', 'pro', 'us',
                                             '{}', '{tickets}')",
    )
    .unwrap();
}

fn text(sql: &str) -> String {
    one::<String>(sql).unwrap_or_else(|| "<null>".into())
}

/// Memory `name` of `owner` (`user:<id>`, `ns:<namespace>` or `workspace`) at `tenant`'s support workspace, written
/// by the superuser as that principal's own request would have left it: one transaction serves
/// one principal, so a test cannot enter the other one.
fn seed_memory(tenant: &str, owner: &str, name: &str, value: &str) {
    let (scope, owner_parts) = match owner.split_once(':') {
        Some(("user", user)) => ("user", format!("'user', '{user}'")),
        Some(("ns", namespace)) => ("user", format!("'ns', '{namespace}'")),
        _ => ("workspace", "'workspace'".to_string()),
    };
    Spi::run(&format!(
        "WITH ns AS (SELECT boundary.compose_key(VARIADIC ARRAY['agent-memory', '{tenant}', 'support', {owner_parts}]) AS n)
         INSERT INTO boundary.memories (tenant_id, workspace_id, scope, namespace, name, key, value, created_by, updated_by)
         SELECT '{tenant}', 'support', '{scope}', n, '{name}', n || ':' || boundary.key_part('{name}'), '{value}', 'seed', 'seed'
           FROM ns"
    ))
    .unwrap();
}

#[pg_test]
fn lookalike_tenants_keep_their_own_memory_under_the_same_name() {
    fixture();
    seed_memory("northstar-design", "user:alice", "renewal", "{\"date\": \"2027-06-30\"}");
    as_agent("northstar-dental", "alice", "member", json!({}));
    assert_eq!(
        text("SELECT boundary.memory_set('renewal', '{\"date\": \"2027-01-31\"}')"),
        "agent-memory:northstar-dental:support:user:alice:renewal"
    );
    assert_eq!(text("SELECT boundary.memory_get('renewal')::text"), "{\"date\": \"2027-01-31\"}");
    assert_eq!(
        one::<i64>("SELECT count(*) FROM boundary.memories"),
        Some(1),
        "direct reads see one tenant too"
    );
    Spi::run("RESET ROLE; SELECT boundary.exit()").unwrap();
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(try_sql("SELECT boundary.memory_get('renewal')"), "42501: no agent boundary is set");
}

#[pg_test]
fn another_user_of_the_workspace_sees_its_memory_not_alices() {
    fixture_with_bob();
    seed_memory("northstar-dental", "user:alice", "renewal", "{\"date\": \"2027-01-31\"}");
    seed_memory("northstar-dental", "workspace", "tone", "\"brief\"");
    as_agent("northstar-dental", "bob", "member", json!({}));
    assert_eq!(text("SELECT boundary.memory_get('renewal')::text"), "<null>");
    assert_eq!(text("SELECT boundary.memory_get('tone', 'workspace')::text"), "\"brief\"");
    assert_eq!(
        text("SELECT string_agg(name || '/' || scope, ',') FROM boundary.memory_list()"),
        "tone/workspace"
    );
    assert_eq!(one::<bool>("SELECT boundary.memory_delete('tone', 'workspace')"), Some(true));
    assert_eq!(one::<bool>("SELECT boundary.memory_delete('tone', 'workspace')"), Some(false));
}

#[pg_test]
fn a_token_memory_namespace_stays_inside_its_tenant() {
    fixture();
    as_agent("northstar-dental", "alice", "member", json!({"memory_namespace": "support-bot"}));
    assert_eq!(
        text("SELECT boundary.memory_key('handoff')"),
        "agent-memory:northstar-dental:support:ns:support-bot:handoff"
    );
    Spi::run("SELECT boundary.memory_set('handoff', '1')").unwrap();
    as_agent("northstar-dental", "alice", "member", json!({}));
    assert_eq!(text("SELECT boundary.memory_get('handoff')::text"), "<null>", "a different namespace");
}

#[pg_test]
fn the_same_namespace_in_the_lookalike_tenant_is_another_namespace() {
    fixture();
    seed_memory("northstar-dental", "ns:support-bot", "handoff", "1");
    as_agent("northstar-design", "alice", "member", json!({"memory_namespace": "support-bot"}));
    assert_eq!(text("SELECT boundary.memory_get('handoff')::text"), "<null>");
}

#[pg_test]
fn bad_input_is_refused_and_nothing_is_written() {
    fixture();
    as_agent("northstar-dental", "alice", "member", json!({"run_id": "run-1"}));
    let cases = [
        ("SELECT boundary.memory_set('', '1')", "22023: name must not be empty"),
        (
            "SELECT boundary.memory_set('a:b', '1')",
            "22023: name \"a:b\" contains ':', the key separator; use another character",
        ),
        (
            "SELECT boundary.memory_set(repeat('n', 201), '1')",
            "22023: name is 201 bytes long; the limit is 200",
        ),
        ("SELECT boundary.memory_set(E'line\\nbreak', '1')", "22023: name contains a control character"),
        (
            "SELECT boundary.memory_set('n', '1', 'tenant')",
            "22023: scope must be one of user, workspace, not \"tenant\"",
        ),
        ("SELECT boundary.memory_set('n', 'not json')", "22P02: invalid input syntax for type json"),
        ("SELECT boundary.memory_set('n', '\"\\u0000\"')", "22P05: unsupported Unicode escape sequence"),
        (
            "SELECT boundary.memory_set('n', to_jsonb(repeat('x', 1048577)))",
            "54000: value is 1048579 bytes of JSON; the limit is 1048576",
        ),
        ("SELECT boundary.run_state_set('n', '1', '0 seconds')", "22023: ttl must be positive"),
        (
            "SELECT boundary.run_state_set('n', '1', '8 days')",
            "22023: ttl is 691200s; the limit is 604800s",
        ),
        (
            "SELECT boundary.promote('missing')",
            "42704: run run-1 has no live run-state entry \"missing\" to promote",
        ),
        ("SELECT boundary.cache_key('', 'q', 'v1')", "22023: namespace must not be empty"),
    ];
    for (sql, expected) in cases {
        assert_eq!(try_sql(sql), expected, "{sql}");
    }
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(
        one::<i64>(
            "SELECT (SELECT count(*) FROM boundary.memories) + (SELECT count(*) FROM boundary.run_state)"
        ),
        Some(0)
    );
}

#[pg_test]
fn direct_writes_cannot_claim_another_users_keys() {
    fixture_with_bob();
    as_agent("northstar-dental", "alice", "member", json!({}));
    let bobs = "agent-memory:northstar-dental:support:user:bob";
    assert_eq!(
        try_sql(&format!(
            "INSERT INTO boundary.memories (scope, namespace, name, key, value, created_by, updated_by)
             VALUES ('user', '{bobs}', 'plan', '{bobs}:plan', '1', 'alice', 'alice')"
        )),
        "42501: INSERT on boundary.memories is refused: the agent_boundary functions are the only way to change it"
    );
    let mine = "agent-memory:northstar-dental:support:user:alice";
    assert_eq!(
        try_sql(&format!(
            "INSERT INTO boundary.memories (scope, namespace, name, key, value, created_by, updated_by)
             VALUES ('user', '{mine}', 'plan', '{bobs}:plan', '1', 'alice', 'alice')"
        )),
        "42501: INSERT on boundary.memories is refused: the agent_boundary functions are the only way to change it"
    );
}

#[pg_test]
fn run_state_belongs_to_its_run_expires_and_becomes_memory_only_when_promoted() {
    fixture();
    as_agent("northstar-dental", "alice", "member", json!({}));
    assert_eq!(
        try_sql("SELECT boundary.run_state_set('plan', '1')"),
        "42501: run state needs a run: the agent boundary has no run_id"
    );
    as_agent("northstar-dental", "alice", "member", json!({"run_id": "run-1"}));
    Spi::run("SELECT boundary.run_state_set('scratchpad', '{\"draft\": \"maybe refund\"}')").unwrap();
    Spi::run("SELECT boundary.run_state_set('short', '1', '1 second')").unwrap();
    assert_eq!(
        text("SELECT boundary.run_state_get('scratchpad')::text"),
        "{\"draft\": \"maybe refund\"}"
    );
    assert_eq!(text("SELECT boundary.memory_get('scratchpad')::text"), "<null>", "not durable memory");
    as_agent("northstar-dental", "alice", "member", json!({"run_id": "run-2"}));
    assert_eq!(text("SELECT boundary.run_state_get('scratchpad')::text"), "<null>", "another run");
    as_agent("northstar-dental", "alice", "member", json!({"run_id": "run-1"}));
    assert_eq!(
        text("SELECT boundary.promote('scratchpad')"),
        "agent-memory:northstar-dental:support:user:alice:scratchpad"
    );
    assert_eq!(
        text("SELECT value::text || ' from ' || promoted_from_run || ' by ' || created_by FROM boundary.memories"),
        "{\"draft\": \"maybe refund\"} from run-1 by alice"
    );
    // A test is one statement, so expiry is simulated here; tests/agent_memory.rs waits for it.
    Spi::run("RESET ROLE; UPDATE boundary.run_state SET expires_at = now() - interval '1 second' WHERE name = 'short'").unwrap();
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(
        text("SELECT boundary.run_state_get('short')::text"),
        "<null>",
        "expired rows are invisible"
    );
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(one::<i64>("SELECT boundary.purge_expired()"), Some(1));
    assert_eq!(one::<i64>("SELECT count(*) FROM boundary.run_state"), Some(1));
}

#[pg_test]
fn cache_entries_follow_tenant_role_datasources_and_prompt_version() {
    fixture();
    as_agent("northstar-dental", "alice", "member", json!({}));
    let key = text("SELECT boundary.cache_key('answers', 'When is the renewal?', 'v1')");
    assert!(key.starts_with("agent-cache:northstar-dental:support:member:"), "{key}");
    Spi::run(&format!("SELECT boundary.cache_put('{key}', '{{\"answer\": \"Jan 31\"}}')")).unwrap();
    assert_eq!(text(&format!("SELECT boundary.cache_get('{key}')::text")), "{\"answer\": \"Jan 31\"}");
    let v2 = text("SELECT boundary.cache_key('answers', 'When is the renewal?', 'v2')");
    assert_eq!(
        text(&format!("SELECT boundary.cache_get('{v2}')::text")),
        "<null>",
        "prompt version change misses"
    );
    // The same question with another datasource set (the same principal, entered again) is refused.
    Spi::run("RESET ROLE").unwrap();
    Spi::run(
        "SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'member', 'pro', 'us', '{}', '{tickets}')",
    )
    .unwrap();
    as_agent("northstar-dental", "alice", "member", json!({}));
    assert_eq!(
        try_sql(&format!("SELECT boundary.cache_get('{key}')")),
        "42501: cache key was not built for the current agent boundary"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM boundary.cache"), Some(0), "direct reads see nothing");
    Spi::run("RESET ROLE").unwrap();
    Spi::run("UPDATE boundary.cache SET expires_at = now() - interval '1 second'").unwrap();
    Spi::run("SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us', '{search,crm}', '{tickets,kb}')").unwrap();
    assert_eq!(one::<i64>("SELECT boundary.purge_expired()"), Some(1));
}

#[pg_test]
fn the_lookalike_tenant_cannot_use_or_see_another_tenants_cache() {
    fixture();
    let dental_key = "boundary.compose_key(VARIADIC ARRAY['agent-cache', 'northstar-dental', 'support', 'member', 'ds', 'v1', 'answers', 'q'])";
    Spi::run(&format!(
        "INSERT INTO boundary.cache (tenant_id, workspace_id, key, value, expires_at)
         VALUES ('northstar-dental', 'support', {dental_key}, '{{\"answer\": \"Jan 31\"}}', now() + interval '1 hour')"
    ))
    .unwrap();
    as_agent("northstar-design", "alice", "member", json!({}));
    assert_eq!(
        try_sql(&format!("SELECT boundary.cache_get({dental_key})")),
        "42501: cache key was not built for the current agent boundary"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM boundary.cache"), Some(0), "direct reads see nothing");
}

#[pg_test]
fn keys_are_composed_in_one_place() {
    assert_eq!(text("SELECT boundary.compose_key('a:b', 'c')"), "a%3Ab:c");
    assert_eq!(text("SELECT boundary.compose_key('a', 'b:c')"), "a:b%3Ac");
    assert_eq!(text("SELECT boundary.key_part('50%:')"), "50%25%3A");
    assert_eq!(
        text("SELECT provolatile::text FROM pg_proc WHERE oid = 'boundary.compose_key(text[])'::regprocedure"),
        "i"
    );
}

/// Reads return the stored jsonb datum itself: a value large enough to be compressed and moved
/// out of line (TOAST) comes back whole and equal, from each store.
#[pg_test]
fn large_toasted_values_come_back_whole_from_every_store() {
    fixture();
    as_agent("northstar-dental", "alice", "member", json!({"run_id": "run-1"}));
    // 128 kB of hex digits: too large to stay in the row, too random to compress much.
    Spi::run(
        "CREATE TEMP TABLE big AS
           SELECT jsonb_build_object('notes', string_agg(md5(g::text), ''), 'n', 7) AS v
             FROM generate_series(1, 4000) g",
    )
    .unwrap();
    Spi::run("SELECT boundary.memory_set('big', (SELECT v FROM big))").unwrap();
    Spi::run("SELECT boundary.run_state_set('big', (SELECT v FROM big), '1 hour')").unwrap();
    Spi::run("SELECT boundary.cache_put(boundary.cache_key('answers', 'big', 'v1'), (SELECT v FROM big))").unwrap();
    assert!(
        one::<i32>("SELECT pg_column_size(value) FROM boundary.memories WHERE name = 'big'")
            .is_some_and(|stored| stored > 2032),
        "over TOAST_TUPLE_THRESHOLD: stored compressed or out of line"
    );
    for read in [
        "boundary.memory_get('big')",
        "boundary.run_state_get('big')",
        "boundary.cache_get(boundary.cache_key('answers', 'big', 'v1'))",
    ] {
        assert_eq!(
            one::<bool>(&format!("SELECT {read} = (SELECT v FROM big) AND length({read}->>'notes') = 128000")),
            Some(true),
            "{read}"
        );
    }
    assert_eq!(text("SELECT boundary.memory_get('absent')::text"), "<null>");
}
