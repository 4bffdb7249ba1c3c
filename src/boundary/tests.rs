// `#[pg_test]` units for the boundary: run inside a real PostgreSQL, each in a transaction
// that is rolled back. They run as a superuser, which bypasses RLS and every permission check,
// so anything about privileges is tested after `SET ROLE` to an ordinary role.
//
// Included into a `#[pg_schema] mod tests` by the parent module: the attribute cannot
// be put on a module that lives in its own file, and pgrx runs these in schema "tests".

use crate::test_support::*;
use pgrx::prelude::*;
use serde_json::json;

#[pg_test]
fn accessors_fail_closed_without_a_boundary() {
    for accessor in [
        "tenant_id",
        "workspace_id",
        "user_id",
        "role",
        "plan",
        "region",
        "tool_ids",
        "datasource_ids",
        "memory_namespace",
        "trace_id",
        "run_id",
        "prompt_version",
        "current",
    ] {
        assert_eq!(
            try_sql(&format!("SELECT boundary.{accessor}()")),
            "42501: no agent boundary is set",
            "boundary.{accessor}()"
        );
    }
    assert_eq!(one::<bool>("SELECT boundary.is_active()"), Some(false));
}

/// `enter` builds its jsonb from one object value with the keys it sorted itself: a key out of
/// jsonb's order would make lookups (a binary search) miss it and equality with the same text
/// parsed by PostgreSQL fail.
#[pg_test]
fn the_jsonb_enter_returns_is_what_postgresql_makes_of_its_text() {
    fixture();
    for extra in [
        json!({}),
        json!({"tool_ids": [], "datasource_ids": []}),
        json!({"tool_ids": ["crm"], "datasource_ids": ["tickets", "kb"], "trace_id": "tr-1", "run_id": "r",
               "prompt_version": "v1", "memory_namespace": "ns"}),
    ] {
        let token = token_for("northstar-dental", extra.clone());
        let checked = one::<String>(&format!(
            "WITH e AS (SELECT boundary.enter('{token}') AS j)
             SELECT pg_catalog.concat_ws(',', j OPERATOR(pg_catalog.=) (j::text)::jsonb,
                    (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(j) k),
                    (SELECT pg_catalog.bool_and(j -> k IS NOT NULL) FROM pg_catalog.jsonb_object_keys(j) k),
                    j ->> 'issued_at' ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}Z$')
               FROM e"
        ));
        assert_eq!(checked.as_deref(), Some("t,18,t,t"), "claims {extra}");
    }
}

#[pg_test]
fn enter_sets_every_field_and_exit_clears_it() {
    fixture();
    let token = token_for(
        "northstar-dental",
        json!({"tool_ids": ["crm", "delete_everything"], "trace_id": "tr-9", "run_id": "run-1",
               "prompt_version": "v7", "memory_namespace": "ns-1"}),
    );
    Spi::run(&enter_sql(&token)).unwrap();
    assert_eq!(one::<String>("SELECT boundary.tenant_id()").unwrap(), "northstar-dental");
    assert_eq!(one::<String>("SELECT boundary.workspace_id()").unwrap(), "support");
    assert_eq!(one::<String>("SELECT boundary.user_id()").unwrap(), "alice");
    assert_eq!(one::<String>("SELECT boundary.role()").unwrap(), "admin");
    assert_eq!(one::<String>("SELECT boundary.plan()").unwrap(), "pro");
    assert_eq!(one::<String>("SELECT boundary.region()").unwrap(), "us");
    assert_eq!(
        one::<Vec<String>>("SELECT boundary.tool_ids()").unwrap(),
        vec!["crm".to_string()],
        "delete_everything is not in the registry, so it is narrowed away"
    );
    assert_eq!(
        one::<Vec<String>>("SELECT boundary.datasource_ids()").unwrap(),
        vec!["kb".to_string(), "tickets".to_string()]
    );
    assert_eq!(
        one::<String>("SELECT boundary.memory_namespace()").unwrap(),
        "agent-memory:northstar-dental:support:ns:ns-1",
        "a token's namespace stays inside its tenant and workspace"
    );
    assert_eq!(one::<String>("SELECT boundary.trace_id()").unwrap(), "tr-9");
    assert_eq!(one::<String>("SELECT boundary.run_id()").unwrap(), "run-1");
    assert_eq!(one::<String>("SELECT boundary.prompt_version()").unwrap(), "v7");
    assert_eq!(
        one::<String>(
            "SELECT boundary.current() ->> 'key_id' || '/' || (boundary.current() ->> 'scope')"
        )
        .unwrap(),
        "test-k1/transaction"
    );
    assert_eq!(
        one::<bool>("SELECT NOT (boundary.current()::text LIKE '%eyJ%')"),
        Some(true),
        "current() never shows a token"
    );
    Spi::run("SELECT boundary.exit()").unwrap();
    assert_eq!(try_sql("SELECT boundary.tenant_id()"), "42501: no agent boundary is set");
}

#[pg_test]
fn an_ordinary_role_can_enter_but_not_read_keys_or_registry() {
    fixture();
    let token = token_for("northstar-design", json!({}));
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(try_sql(&enter_sql(&token)), "ok");
    assert_eq!(one::<String>("SELECT boundary.tenant_id()").unwrap(), "northstar-design");
    assert_eq!(
        one::<String>("SELECT boundary.role()").unwrap(),
        "member",
        "registry caps admin at member"
    );
    assert_eq!(
        try_sql("SELECT * FROM boundary.signing_keys"),
        "42501: permission denied for table signing_keys"
    );
    assert_eq!(
        try_sql("SELECT * FROM boundary.principals"),
        "42501: permission denied for table principals"
    );
    assert_eq!(try_sql("SELECT boundary.sign('{}')"), "42501: permission denied for function sign");
    assert_eq!(
        try_sql("SELECT boundary.register_principal('t', 'w', 'u', 'owner')"),
        "42501: permission denied for function register_principal"
    );
    assert_eq!(
        try_sql("SELECT boundary.generate_signing_key('mine')"),
        "42501: permission denied for function generate_signing_key"
    );
    assert_eq!(
        try_sql("SELECT boundary.revoke('northstar-dental')"),
        "42501: permission denied for function revoke"
    );
}

#[pg_test]
fn an_ordinary_role_cannot_set_the_guc_by_any_sql_path() {
    fixture();
    Spi::run("SET ROLE agent_tester").unwrap();
    let denied = "42501: permission denied to set parameter \"agent_boundary.boundary\"";
    assert_eq!(try_sql("SET agent_boundary.boundary = 'forged'"), denied);
    assert_eq!(try_sql("SET LOCAL agent_boundary.boundary = 'forged'"), denied);
    assert_eq!(try_sql("SELECT set_config('agent_boundary.boundary', 'forged', true)"), denied);
    assert_eq!(try_sql("SELECT set_config('agent_boundary.boundary', 'forged', false)"), denied);
    assert_eq!(try_sql("RESET agent_boundary.boundary"), denied);
    assert_eq!(try_sql("ALTER ROLE agent_tester SET agent_boundary.boundary = 'forged'"), denied);
    assert_eq!(
        try_sql(
            "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql
             SET agent_boundary.boundary = 'forged' AS 'SELECT boundary.tenant_id()'"
        ),
        denied
    );
    assert_eq!(try_sql("SELECT boundary.tenant_id()"), "42501: no agent boundary is set");
}

#[pg_test]
fn even_a_superuser_cannot_forge_or_replay_the_guc() {
    fixture();
    let refused = "42501: agent_boundary.boundary can only be set by boundary.enter()";
    assert_eq!(try_sql("SET agent_boundary.boundary = 'forged'"), refused);
    assert_eq!(try_sql("SELECT set_config('agent_boundary.boundary', 'a.b.c', true)"), refused);
    // A genuine app token is not a sealed value either: only enter() may turn it into one.
    let token = token_for("northstar-dental", json!({}));
    assert_eq!(try_sql(&format!("SET agent_boundary.boundary = '{token}'")), refused);
    assert_eq!(
        try_sql(&format!("ALTER ROLE agent_tester SET agent_boundary.boundary = '{token}'")),
        refused
    );
    assert_eq!(
        try_sql(&format!(
            "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql
             SET agent_boundary.boundary = '{token}' AS 'SELECT boundary.tenant_id()'"
        )),
        refused
    );
    // A sealed value with one byte of its payload changed does not verify.
    Spi::run(&enter_sql(&token)).unwrap();
    let sealed = one::<String>("SHOW agent_boundary.boundary").unwrap();
    let mut parts: Vec<String> = sealed.split('.').map(str::to_string).collect();
    let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
    parts[1].pop();
    parts[1].push(flipped);
    assert_eq!(try_sql(&format!("SET agent_boundary.boundary = '{}'", parts.join("."))), refused);
    assert_eq!(one::<String>("SELECT boundary.tenant_id()").unwrap(), "northstar-dental");
}

#[pg_test]
fn a_table_owner_without_bypassrls_sees_only_its_boundary() {
    fixture();
    Spi::run(
        "CREATE ROLE tickets_owner NOLOGIN NOBYPASSRLS;
         CREATE TABLE public.owned_tickets (tenant_id text NOT NULL, id int NOT NULL,
                                            PRIMARY KEY (tenant_id, id));
         INSERT INTO public.owned_tickets VALUES
             ('northstar-dental', 1), ('northstar-design', 1), ('northstar-design', 2);
         ALTER TABLE public.owned_tickets OWNER TO tickets_owner;
         ALTER TABLE public.owned_tickets ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.owned_tickets FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_isolation ON public.owned_tickets
             USING (tenant_id = boundary.tenant_id())",
    )
    .unwrap();
    Spi::run(&enter_sql(&token_for("northstar-design", json!({})))).unwrap();
    Spi::run("SET ROLE tickets_owner").unwrap();
    assert_eq!(
        one::<String>(
            "SELECT string_agg(tenant_id || '/' || id, ',' ORDER BY id) FROM public.owned_tickets"
        ),
        Some("northstar-design/1,northstar-design/2".to_string())
    );
    Spi::run("SELECT boundary.exit()").unwrap();
    assert_eq!(try_sql("SELECT count(*) FROM public.owned_tickets"), "42501: no agent boundary is set");
}

#[pg_test]
fn savepoint_rollback_restores_the_outer_boundary() {
    fixture();
    Spi::run(&enter_sql(&token_for("northstar-dental", json!({})))).unwrap();
    let tools = || one::<Vec<String>>("SELECT boundary.tool_ids()").unwrap().join(",");
    // The same principal, narrower: a refreshed token may enter again in this transaction.
    let narrower = token_for("northstar-dental", json!({"tool_ids": ["search"]}));
    // try_sql runs in a subtransaction that is rolled back on error, released on success.
    assert_eq!(try_sql(&format!("{}; SELECT 1/0", enter_sql(&narrower))), "22012: division by zero");
    assert_eq!(tools(), "crm,search", "the rolled-back savepoint took its boundary with it");
    assert_eq!(try_sql(&enter_sql(&narrower)), "ok");
    assert_eq!(tools(), "search");
    // Another principal is refused, even inside a savepoint.
    assert_eq!(
        try_sql(&enter_sql(&token_for("northstar-design", json!({})))),
        "42501: boundary.enter() refused: this transaction already serves another agent principal; \
         one transaction serves one tenant, workspace and user"
    );
    assert_eq!(one::<String>("SELECT boundary.tenant_id()").unwrap(), "northstar-dental");
}

#[pg_test]
fn refused_tokens_carry_sqlstate_28000_and_a_reason() {
    fixture();
    assert_eq!(
        try_sql("SELECT boundary.enter('')"),
        "28000: agent boundary token refused: token is empty"
    );
    assert_eq!(
        try_sql("SELECT boundary.enter('not-a-token')"),
        "28000: agent boundary token refused: token is malformed: a JWT has three dot-separated parts"
    );
    assert_eq!(
        try_sql("SELECT boundary.enter(repeat('a', 20000))"),
        "28000: agent boundary token refused: token is 20000 bytes; the limit is 16384"
    );
    let token = token_for("northstar-dental", json!({}));
    Spi::run("SELECT boundary.retire_signing_key('test-k1')").unwrap();
    assert_eq!(
        try_sql(&enter_sql(&token)),
        "28000: agent boundary token refused: signed with an unknown or retired key id \"test-k1\""
    );
    // NUL cannot even reach enter(): PostgreSQL text refuses it first.
    assert_eq!(
        try_sql("SELECT boundary.enter(E'a\\000b')"),
        "22021: invalid byte sequence for encoding \"UTF8\": 0x00"
    );
    assert_eq!(
        try_sql("SELECT boundary.enter(convert_from('\\x610062'::bytea, 'UTF8'))"),
        "22021: invalid byte sequence for encoding \"UTF8\": 0x00"
    );
    assert_eq!(try_sql("SELECT boundary.tenant_id()"), "42501: no agent boundary is set");
}

#[pg_test]
fn the_registry_decides_who_may_enter() {
    fixture();
    let unknown = one::<String>(
        r#"SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support",
                                  "user_id": "mallory", "role": "owner"}')"#,
    )
    .unwrap();
    assert_eq!(
        try_sql(&enter_sql(&unknown)),
        "42501: agent boundary refused: no registered principal for tenant_id \"northstar-dental\", \
         workspace_id \"support\", user_id \"mallory\""
    );
    let token = token_for("northstar-dental", json!({}));
    assert_eq!(one::<i64>("SELECT boundary.revoke('northstar-dental', 'support', 'alice')"), Some(1));
    assert_eq!(one::<i64>("SELECT boundary.revoke('northstar-dental', 'support', 'alice')"), Some(0));
    assert_eq!(
        try_sql(&enter_sql(&token)),
        "42501: agent boundary refused: the principal has been revoked"
    );
    assert_eq!(
        try_sql("SELECT boundary.revoke('no-such-tenant')"),
        "42704: no registered principal matches; nothing was revoked"
    );
    // Re-registering un-revokes.
    Spi::run("SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'viewer')")
        .unwrap();
    assert_eq!(try_sql(&enter_sql(&token)), "ok");
    assert_eq!(one::<String>("SELECT boundary.role()").unwrap(), "viewer");
    let eu = token_for("northstar-dental", json!({"region": "eu"}));
    assert_eq!(
        try_sql(&enter_sql(&eu)),
        "42501: agent boundary refused: the token claims region eu but the registry says us"
    );
}

#[pg_test]
fn registry_input_is_validated_and_values_are_never_spliced_into_sql() {
    fixture();
    let hostile = "x'); DROP TABLE boundary.principals; --";
    Spi::run_with_args("SELECT boundary.register_principal($1, $1, $1, 'member')", &[hostile.into()])
        .unwrap();
    assert_eq!(
        Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM boundary.principals WHERE tenant_id = $1 AND user_id = $1",
            &[hostile.into()]
        )
        .unwrap(),
        Some(1)
    );
    assert_eq!(
        try_sql("SELECT boundary.register_principal('', 'w', 'u', 'member')"),
        "22023: tenant_id must not be empty"
    );
    assert_eq!(
        try_sql("SELECT boundary.register_principal(repeat('t', 300), 'w', 'u', 'member')"),
        "22023: tenant_id is 300 bytes long; the limit is 256"
    );
    assert_eq!(
        try_sql("SELECT boundary.register_principal(E'a\\nb', 'w', 'u', 'member')"),
        "22023: tenant_id contains a control character"
    );
    assert_eq!(
        try_sql("SELECT boundary.register_principal('t', 'w', 'u', 'superuser')"),
        "22023: role must be one of viewer, member, admin, owner, not \"superuser\""
    );
    assert_eq!(
        try_sql("SELECT boundary.register_principal('t', 'w', 'u', 'member', 'free', 'us', ARRAY[NULL])"),
        "22023: tool_ids must not contain NULL"
    );
    assert_eq!(
        try_sql("SELECT boundary.add_signing_key('k''; DROP TABLE boundary.signing_keys; --', 'HS256', decode(repeat('ab', 32), 'hex'))"),
        "22023: key id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM boundary.signing_keys"), Some(1));
}

#[pg_test]
fn key_management_refuses_weak_duplicate_and_unusable_keys() {
    fixture();
    assert_eq!(
        try_sql("SELECT boundary.add_signing_key('weak', 'HS256', 'short'::bytea)"),
        "22023: an HMAC secret must be at least 32 bytes, got 5"
    );
    assert_eq!(
        try_sql("SELECT boundary.add_signing_key('none', 'none', decode(repeat('ab', 32), 'hex'))"),
        "22023: alg must be one of HS256, HS384, HS512, EdDSA, ES256, RS256, not \"none\""
    );
    assert_eq!(
        try_sql("SELECT boundary.generate_signing_key('test-k1')"),
        "42710: signing key \"test-k1\" already exists; key ids are never reused, add the new key under a new id"
    );
    assert_eq!(
        try_sql("SELECT boundary.retire_signing_key('nope')"),
        "42704: signing key \"nope\" does not exist"
    );
    // Rotation: a new key signs, the retired one stops verifying, both are listed.
    Spi::run("SELECT boundary.generate_signing_key('test-k2', 'HS512')").unwrap();
    let token = token_for("northstar-dental", json!({}));
    assert_eq!(try_sql(&enter_sql(&token)), "ok");
    assert_eq!(one::<String>("SELECT boundary.current() ->> 'key_id'").unwrap(), "test-k2");
    assert_eq!(
        one::<String>("SELECT string_agg(kid || ':' || alg || ':' || can_sign, ',' ORDER BY kid) FROM boundary.list_signing_keys()")
            .unwrap(),
        "test-k1:HS256:true,test-k2:HS512:true"
    );
}

#[pg_test]
fn eddsa_keys_verify_with_the_public_key_only() {
    fixture();
    let public = include_str!("../../tests/fixtures/ed25519-test-public.pem");
    let private = include_str!("../../tests/fixtures/ed25519-test-private.pem");
    Spi::run_with_args(
        "SELECT boundary.add_signing_key('ed-signer', 'EdDSA', convert_to($1, 'UTF8'), convert_to($2, 'UTF8'));
         SELECT boundary.add_signing_key('ed-public', 'EdDSA', convert_to($1, 'UTF8'))",
        &[public.into(), private.into()],
    )
    .unwrap();
    let token = one::<String>(
        r#"SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support",
                                  "user_id": "alice", "role": "member"}', '1 minute', 'ed-signer')"#,
    )
    .unwrap();
    assert_eq!(try_sql(&enter_sql(&token)), "ok");
    assert_eq!(
        try_sql(r#"SELECT boundary.sign('{"tenant_id": "t"}', '1 minute', 'ed-public')"#),
        "22023: claim workspace_id is missing"
    );
    assert_eq!(
        try_sql(
            r#"SELECT boundary.sign('{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer"}',
                                    '1 minute', 'ed-public')"#
        ),
        "22023: signing key \"ed-public\" holds only a public key; the database cannot sign with it"
    );
}

#[pg_test]
fn sign_checks_its_arguments() {
    fixture();
    let claims = r#"'{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer"}'"#;
    assert_eq!(
        try_sql(&format!("SELECT boundary.sign({claims}, '2 hours')")),
        "22023: ttl is 7200s; agent_boundary.max_token_lifetime allows 3600s"
    );
    assert_eq!(
        try_sql(&format!("SELECT boundary.sign({claims}, '-1 minute')")),
        "22023: ttl must be positive"
    );
    assert_eq!(
        try_sql(&format!("SELECT boundary.sign({claims}, '1 month')")),
        "22023: ttl must be given in days, hours, minutes or seconds, not months or years"
    );
    assert_eq!(
        try_sql(
            r#"SELECT boundary.sign('{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}')"#
        ),
        "22023: sign() sets iat, exp and aud itself (from ttl); remove the exp claim"
    );
    assert_eq!(try_sql("SELECT boundary.sign('[1, 2]')"), "22023: claims must be a JSON object");
}

#[pg_test]
fn session_scope_is_off_unless_configured() {
    fixture();
    let token = token_for("northstar-dental", json!({}));
    assert_eq!(
        try_sql(&format!("SELECT boundary.enter('{token}', 'session')")),
        "42501: session-scoped agent boundaries are disabled"
    );
    assert_eq!(
        try_sql(&format!("SELECT boundary.enter('{token}', 'forever')")),
        "22023: scope must be one of transaction, session, not \"forever\""
    );
    Spi::run("SET LOCAL agent_boundary.allow_session_scope = on").unwrap();
    assert_eq!(try_sql(&format!("SELECT boundary.enter('{token}', 'session')")), "ok");
    assert_eq!(one::<String>("SELECT boundary.current() ->> 'scope'").unwrap(), "session");
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(
        try_sql("SET agent_boundary.allow_session_scope = on"),
        "42501: permission denied to set parameter \"agent_boundary.allow_session_scope\""
    );
}

#[pg_test]
fn the_prefix_is_reserved() {
    assert_eq!(
        try_sql("SET agent_boundary.tenant_id = 'northstar-dental'"),
        "42602: invalid configuration parameter name \"agent_boundary.tenant_id\""
    );
}

#[pg_test]
fn catalog_keeps_the_security_rules() {
    // Accessors: STABLE and PARALLEL SAFE, never IMMUTABLE.
    assert_eq!(
        one::<String>(
            "SELECT string_agg(proname || ':' || provolatile::text || proparallel::text, ',' ORDER BY proname)
               FROM pg_proc WHERE pronamespace = 'boundary'::regnamespace
                AND proname IN ('tenant_id', 'workspace_id', 'user_id', 'role', 'plan', 'region',
                                'tool_ids', 'datasource_ids', 'memory_namespace', 'trace_id',
                                'run_id', 'prompt_version', 'current', 'is_active')"
        )
        .unwrap(),
        "current:ss,datasource_ids:ss,is_active:ss,memory_namespace:ss,plan:ss,prompt_version:ss,\
         region:ss,role:ss,run_id:ss,tenant_id:ss,tool_ids:ss,trace_id:ss,user_id:ss,workspace_id:ss"
    );
    // Every SECURITY DEFINER function pins search_path.
    assert_eq!(
        one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'boundary'::regnamespace AND prosecdef
               AND NOT coalesce(proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)"
        ),
        Some(0)
    );
    assert!(
        one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'boundary'::regnamespace AND prosecdef"
        )
        .unwrap()
            >= 7
    );
    // Admin functions are not executable by PUBLIC; enter/exit/accessors are.
    assert_eq!(
        one::<String>(
            "SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc
              WHERE pronamespace = 'boundary'::regnamespace
                AND NOT has_function_privilege('public', oid, 'EXECUTE')"
        )
        .unwrap(),
        "add_signing_key,blocked_events_total,distribute_own_tables,flush_audit_log,forget_verified,generate_signing_key,list_signing_keys,purge_audit_log,purge_expired,register_principal,retire_signing_key,revoke,set_auto_protection,sign"
    );
    // Keys and registry are readable by no ordinary role; the agent tables are, but every
    // one of them is protected (forced row level security, boundary policies).
    assert_eq!(
        one::<String>(
            "SELECT string_agg(relname || ':' || relforcerowsecurity, ',' ORDER BY relname) FROM pg_class
              WHERE relnamespace = 'boundary'::regnamespace
                AND relkind IN ('r', 'v', 'm', 'p') AND has_any_column_privilege('public', oid, 'SELECT')"
        )
        .unwrap(),
        "audit_log:true,cache:true,memories:true,run_state:true"
    );
    // The audit log is read-only for everyone but the extension itself.
    assert_eq!(
        one::<String>(
            "SELECT string_agg(p, ',') FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
              WHERE has_table_privilege('public', 'boundary.audit_log', p)"
        ),
        None
    );
}
