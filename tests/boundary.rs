//! The boundary foundation, driven from a real client (tokio-postgres) against a real server
//! started here, with two lookalike tenants: "Northstar Dental" and "Northstar Design" share a
//! workspace name ("support") and a user name ("alice").
//!
//! Run through `scripts/test.sh`, which installs the extension into the embedded PostgreSQL
//! first. Every trial checks exact rows or an exact SQLSTATE + message.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use support::*;
use tokio_postgres::types::Type;

const DENIED_SET: &str = "permission denied to set parameter \"agent_boundary.boundary\"";
const NOT_BY_ENTER: &str = "agent_boundary.boundary can only be set by boundary.enter()";
const NO_BOUNDARY: &str = "no agent boundary is set";

const DENTAL_ROWS: [&str; 2] = ["1 Crown fitting follow-up", "2 Renewal risk: billing dispute"];
const DESIGN_ROWS: [&str; 2] = ["1 Logo refresh for spring", "2 Renewal risk: slow feedback"];

/// Roles and a table with a hand-written tenant policy, on top of `BASE_FIXTURE` (the
/// generated policies of `boundary.protect` are tested in tests/attacks.rs).
const FIXTURE: &str = r#"
CREATE ROLE app LOGIN NOBYPASSRLS;
CREATE ROLE app_granted LOGIN NOBYPASSRLS;
GRANT SET ON PARAMETER agent_boundary.boundary TO app_granted;
CREATE ROLE app_session LOGIN NOBYPASSRLS;
CREATE ROLE app_victim LOGIN NOBYPASSRLS;
ALTER ROLE app_session SET agent_boundary.allow_session_scope = on;
ALTER ROLE app_session SET agent_boundary.clock_skew = 0;
CREATE TABLE public.tickets (
    tenant_id text NOT NULL, id bigint NOT NULL, subject text NOT NULL,
    PRIMARY KEY (tenant_id, id));
ALTER TABLE public.tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.tickets
    USING (tenant_id = boundary.tenant_id()) WITH CHECK (tenant_id = boundary.tenant_id());
GRANT SELECT, INSERT ON public.tickets TO app, app_granted, app_session, app_victim;
INSERT INTO public.tickets VALUES
    ('northstar-dental', 1, 'Crown fitting follow-up'),
    ('northstar-dental', 2, 'Renewal risk: billing dispute'),
    ('northstar-design', 1, 'Logo refresh for spring'),
    ('northstar-design', 2, 'Renewal risk: slow feedback');
"#;

async fn tickets(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    column(client, "SELECT id || ' ' || subject FROM public.tickets ORDER BY id").await
}

async fn tenant(client: &Client) -> Result<String, tokio_postgres::Error> {
    Ok(column(client, "SELECT boundary.tenant_id()").await?.remove(0))
}

// ---------------------------------------------------------------------------------------------

async fn lookalike_tenants_each_see_only_their_rows() {
    let app = cluster().connect("app").await;
    for (token, rows, who) in
        [(dental_alice(), DENTAL_ROWS, "northstar-dental"), (design_alice(), DESIGN_ROWS, "northstar-design")]
    {
        app.batch_execute("BEGIN").await.unwrap();
        let shown = enter(&app, &token).await.unwrap();
        assert_eq!(shown["tenant_id"], who);
        assert_eq!(tickets(&app).await.unwrap(), rows);
        // Writing into the other tenant is refused by the policy's WITH CHECK.
        let other = if who == "northstar-dental" { "northstar-design" } else { "northstar-dental" };
        assert_refused(
            app.query_typed("INSERT INTO public.tickets VALUES ($1, 99, 'planted')", &[(&other, Type::TEXT)])
                .await,
            "42501",
            "new row violates row-level security policy for table \"tickets\"",
        );
        app.batch_execute("ROLLBACK").await.unwrap();
    }
    // The registry shaped each boundary: same user name, different role/plan/region per tenant.
    app.batch_execute("BEGIN").await.unwrap();
    enter(&app, &design_alice()).await.unwrap();
    assert_eq!(
        column(&app, "SELECT concat_ws(' ', boundary.role(), boundary.plan(), boundary.region())")
            .await
            .unwrap(),
        ["member free eu"]
    );
    app.batch_execute("COMMIT").await.unwrap();
}

async fn no_boundary_fails_closed_and_commit_clears_it() {
    let (app, notices) = connect_with_notices(cluster().config("app")).await.unwrap();
    assert_refused(tickets(&app).await, "42501", NO_BOUNDARY);
    for end in ["COMMIT", "ROLLBACK"] {
        app.batch_execute("BEGIN").await.unwrap();
        enter(&app, &dental_alice()).await.unwrap();
        assert_eq!(tickets(&app).await.unwrap(), DENTAL_ROWS);
        app.batch_execute(end).await.unwrap();
        assert_refused(tickets(&app).await, "42501", NO_BOUNDARY);
        assert_eq!(column(&app, "SELECT boundary.is_active()").await.unwrap(), ["f"]);
    }
    // Outside a transaction block the boundary lasts one statement, and enter() says so.
    assert!(notices.lock().unwrap().is_empty());
    enter(&app, &dental_alice()).await.unwrap();
    assert_refused(tenant(&app).await, "42501", NO_BOUNDARY);
    assert_eq!(
        *notices.lock().unwrap(),
        ["WARNING: boundary.enter() ran outside a transaction block, so the boundary ends with this \
          statement; wrap it and the queries it guards in BEGIN ... COMMIT"]
    );
}

async fn pooled_connection_reuse_never_carries_a_boundary() {
    let bouncer = Pgbouncer::start(cluster(), "transaction", 1, &["app"]);
    let first = bouncer.connect("app").await;
    let second = bouncer.connect("app").await;
    for round in 0..10 {
        let (token, rows) =
            if round % 2 == 0 { (dental_alice(), DENTAL_ROWS) } else { (design_alice(), DESIGN_ROWS) };
        first.batch_execute("BEGIN").await.unwrap();
        enter(&first, &token).await.unwrap();
        let first_pid = column(&first, "SELECT pg_backend_pid()").await.unwrap();
        assert_eq!(tickets(&first).await.unwrap(), rows);
        first.batch_execute("COMMIT").await.unwrap();

        let second_pid = column(&second, "SELECT pg_backend_pid()").await.unwrap();
        assert_eq!(first_pid, second_pid, "pool size 1: both clients share one server backend");
        assert_eq!(column(&second, "SELECT boundary.is_active()").await.unwrap(), ["f"]);
        assert_refused(tickets(&second).await, "42501", NO_BOUNDARY);
    }
    // The escape hatch that would survive COMMIT on a pooled backend is off by default.
    first.batch_execute("BEGIN").await.unwrap();
    assert_refused(
        first
            .query_typed("SELECT boundary.enter($1, 'session')", &[(&dental_alice().as_str(), Type::TEXT)])
            .await,
        "42501",
        "session-scoped agent boundaries are disabled",
    );
    first.batch_execute("ROLLBACK").await.unwrap();
}

async fn parallel_workers_see_the_same_boundary() {
    let app = cluster().connect("app").await;
    app.batch_execute(
        "SET debug_parallel_query = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;",
    )
    .await
    .unwrap();
    app.batch_execute("BEGIN").await.unwrap();
    enter(&app, &design_alice()).await.unwrap();
    let plan =
        column(&app, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM public.tickets")
            .await
            .unwrap()
            .join("\n");
    assert!(plan.contains("Workers Launched: 1"), "the scan ran in a parallel worker:\n{plan}");
    assert!(plan.contains("boundary.tenant_id()"), "the policy ran in the worker:\n{plan}");
    assert_eq!(tickets(&app).await.unwrap(), DESIGN_ROWS);
    assert_eq!(
        column(&app, "SELECT count(*) FROM public.tickets WHERE subject LIKE 'Renewal risk%'").await.unwrap(),
        ["1"]
    );
    app.batch_execute("COMMIT").await.unwrap();
    // Still fails closed when the worker has no boundary to restore.
    assert_refused(tickets(&app).await, "42501", NO_BOUNDARY);
}

async fn role(client: &Client) -> String {
    column(client, "SELECT boundary.role()").await.unwrap().remove(0)
}

async fn savepoint_rollback_restores_the_outer_boundary() {
    // A transaction serves one principal (tests/attacks.rs row 29), so the inner boundaries here
    // are the same principal's with less: a viewer token.
    let viewer = app_token("northstar-dental", "support", "alice", "viewer", json!({}));
    let app = cluster().connect("app").await;
    app.batch_execute("BEGIN").await.unwrap();
    enter(&app, &dental_alice()).await.unwrap();
    app.batch_execute("SAVEPOINT inner_work").await.unwrap();
    enter(&app, &viewer).await.unwrap();
    assert_eq!(role(&app).await, "viewer");
    app.batch_execute("ROLLBACK TO SAVEPOINT inner_work").await.unwrap();
    assert_eq!(role(&app).await, "admin");
    assert_eq!(tickets(&app).await.unwrap(), DENTAL_ROWS);
    // exit() inside a savepoint is undone by rolling it back too.
    app.batch_execute("SAVEPOINT leave; SELECT boundary.exit()").await.unwrap();
    assert_refused(tickets(&app).await, "42501", NO_BOUNDARY);
    app.batch_execute("ROLLBACK TO SAVEPOINT leave").await.unwrap();
    assert_eq!(tickets(&app).await.unwrap(), DENTAL_ROWS);
    // RELEASE keeps the inner boundary.
    app.batch_execute("SAVEPOINT keep").await.unwrap();
    enter(&app, &viewer).await.unwrap();
    app.batch_execute("RELEASE SAVEPOINT keep").await.unwrap();
    assert_eq!(role(&app).await, "viewer");
    app.batch_execute("COMMIT").await.unwrap();
    assert_refused(tenant(&app).await, "42501", NO_BOUNDARY);
}

/// Loads the library in this session, the way any call to a boundary function does.
async fn load_library(client: &Client) {
    assert_eq!(column(client, "SELECT boundary.is_active()").await.unwrap(), ["f"]);
}

async fn forgery_through_set_and_set_config_is_refused() {
    // Before this session has loaded the library, a SET only creates an inert placeholder: it
    // is discarded (with a WARNING) the moment the library loads, before any accessor runs.
    let (app, notices) = connect_with_notices(cluster().config("app")).await.unwrap();
    app.batch_execute("SET agent_boundary.boundary = 'forged'").await.unwrap();
    load_library(&app).await;
    assert_eq!(*notices.lock().unwrap(), [format!("WARNING: {DENIED_SET}")]);
    assert_refused(tickets(&app).await, "42501", NO_BOUNDARY);
    assert_refused(
        column(&app, "SELECT current_setting('agent_boundary.boundary')").await,
        "42501",
        "permission denied to examine \"agent_boundary.boundary\"",
    );
    // Once loaded, every path is refused outright.
    for attempt in [
        "SET agent_boundary.boundary = 'forged'",
        "SET SESSION agent_boundary.boundary = 'forged'",
        "RESET agent_boundary.boundary",
        "SELECT set_config('agent_boundary.boundary', 'forged', false)",
    ] {
        assert_refused(app.batch_execute(attempt).await, "42501", DENIED_SET);
    }
    app.batch_execute("BEGIN").await.unwrap();
    assert_refused(
        app.batch_execute("SET LOCAL agent_boundary.boundary = 'forged'").await,
        "42501",
        DENIED_SET,
    );
    app.batch_execute("ROLLBACK").await.unwrap();
    // Even a genuine token cannot be set directly: only enter() verifies and seals it.
    assert_refused(
        app.query_typed(
            "SELECT set_config('agent_boundary.boundary', $1, true)",
            &[(&dental_alice().as_str(), Type::TEXT)],
        )
        .await,
        "42501",
        DENIED_SET,
    );
    assert_refused(tenant(&app).await, "42501", NO_BOUNDARY);
}

async fn forgery_through_pgoptions_is_refused() {
    for (user, warning) in [("app", DENIED_SET), ("postgres", NOT_BY_ENTER)] {
        let mut config = cluster().config(user);
        config.options("-c agent_boundary.boundary=eyJhbGciOiJIUzI1NiJ9.e30.forged");
        let (client, notices) =
            connect_with_notices(config).await.expect("the library is not loaded yet at connect");
        load_library(&client).await;
        assert_eq!(*notices.lock().unwrap(), [format!("WARNING: {warning}")], "as {user}");
        assert_refused(tenant(&client).await, "42501", NO_BOUNDARY);
        if user == "app" {
            assert_refused(tickets(&client).await, "42501", NO_BOUNDARY);
        }
    }
}

async fn forgery_through_alter_role_database_and_function_set_is_refused() {
    let app = cluster().connect("app").await;
    // Not even a placeholder: PostgreSQL refuses unknown settings in ALTER ROLE for non-superusers.
    assert_refused(
        app.batch_execute("ALTER ROLE app SET agent_boundary.boundary = 'forged'").await,
        "42501",
        DENIED_SET,
    );
    load_library(&app).await;
    assert_refused(
        app.batch_execute("ALTER ROLE app SET agent_boundary.boundary = 'forged'").await,
        "42501",
        DENIED_SET,
    );
    assert_refused(
        app.batch_execute(
            "CREATE FUNCTION pg_temp.forge() RETURNS text LANGUAGE sql
             SET agent_boundary.boundary = 'forged' AS 'SELECT boundary.tenant_id()'",
        )
        .await,
        "42501",
        DENIED_SET,
    );
    // A superuser gets past the permission check but not the seal check.
    let admin = cluster().connect("postgres").await;
    load_library(&admin).await;
    let token = dental_alice();
    for attempt in [
        format!("ALTER ROLE app SET agent_boundary.boundary = '{token}'"),
        format!("ALTER DATABASE postgres SET agent_boundary.boundary = '{token}'"),
        "ALTER ROLE app IN DATABASE postgres SET agent_boundary.boundary = 'forged'".to_string(),
        format!(
            "CREATE FUNCTION public.forge() RETURNS text LANGUAGE sql SECURITY DEFINER
             SET agent_boundary.boundary = '{token}' AS 'SELECT boundary.tenant_id()'"
        ),
    ] {
        assert_refused(admin.batch_execute(&attempt).await, "42501", NOT_BY_ENTER);
    }
    // A superuser session that has not loaded the library can store a value unchecked; it
    // still never becomes a boundary: the check hook discards it when the library loads.
    let unloaded_admin = cluster().connect("postgres").await;
    unloaded_admin
        .batch_execute(&format!("ALTER ROLE app_victim SET agent_boundary.boundary = '{token}'"))
        .await
        .unwrap();
    let (victim, notices) = connect_with_notices(cluster().config("app_victim")).await.unwrap();
    load_library(&victim).await;
    assert_eq!(*notices.lock().unwrap(), [format!("WARNING: {NOT_BY_ENTER}")]);
    assert_refused(tickets(&victim).await, "42501", NO_BOUNDARY);
    unloaded_admin.batch_execute("ALTER ROLE app_victim RESET ALL").await.unwrap();
    assert_eq!(
        column(&admin, "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%agent_boundary.boundary%'")
            .await
            .unwrap(),
        ["0"]
    );
}

/// Setting a value sealed by another backend is refused by the check hook, with the reason.
async fn assert_foreign_seal_refused(client: &Client, sealed: &str) {
    let refused = assert_refused(
        client.batch_execute(&format!("SET LOCAL agent_boundary.boundary = '{sealed}'")).await,
        "42501",
        NOT_BY_ENTER,
    );
    assert_eq!(refused.detail(), Some("Refused: the seal does not verify in this backend."));
}

async fn a_sealed_value_cannot_be_replayed_into_another_backend() {
    let admin = cluster().connect("postgres").await;
    admin.batch_execute("BEGIN").await.unwrap();
    enter(&admin, &dental_alice()).await.unwrap();
    let sealed = column(&admin, "SHOW agent_boundary.boundary").await.unwrap().remove(0);
    assert!(sealed.starts_with("eyJ"), "a sealed JWT");

    // app_granted holds GRANT SET ON PARAMETER, so only the check hook stands in the way.
    let granted = cluster().connect("app_granted").await;
    load_library(&granted).await;
    granted.batch_execute("BEGIN; SAVEPOINT before_forgery").await.unwrap();
    assert_foreign_seal_refused(&granted, &sealed).await;
    granted.batch_execute("ROLLBACK TO SAVEPOINT before_forgery").await.unwrap();
    assert_refused(tickets(&granted).await, "42501", NO_BOUNDARY);
    granted.batch_execute("ROLLBACK").await.unwrap();

    let refused = assert_refused(
        granted.batch_execute(&format!("SET agent_boundary.boundary = '{}'", dental_alice())).await,
        "42501",
        NOT_BY_ENTER,
    );
    assert_eq!(
        refused.detail(),
        Some("Refused: the value is not a sealed boundary (use boundary.enter(token)).")
    );
    // A sealed value is not a token either.
    assert_refused(
        enter(&granted, &sealed).await,
        "28000",
        "agent boundary token refused: a sealed boundary value is not a token",
    );
    admin.batch_execute("COMMIT").await.unwrap();
}

async fn refused_tokens_say_why_and_leave_no_boundary() {
    let app = cluster().connect("app").await;
    let claims = |extra: Value| {
        let mut c = json!({"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                           "role": "admin", "iat": now(), "exp": now() + 300, "aud": "agent_boundary"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = dental_alice();
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims(json!({"tenant_id": "northstar-design"}))).unwrap())
    };
    let refused = |why: &str| format!("agent boundary token refused: {why}");
    let cases: Vec<(String, &str, String)> = vec![
        (sign_raw(&claims(json!({})), "rogue", APP_SECRET), "28000", refused("signed with an unknown or retired key id \"rogue\"")),
        (sign_raw(&claims(json!({})), APP_KID, b"a-secret-the-database-never-saw-0123"), "28000", refused("signature does not verify (tampered, or signed with another key)")),
        (format!("{}.{}.{}", parts[0], forged_payload, parts[2]), "28000", refused("signature does not verify (tampered, or signed with another key)")),
        (sign_raw(&claims(json!({"iat": now() - 600, "exp": now() - 120})), APP_KID, APP_SECRET), "28000", refused("token has expired")),
        (sign_raw(&claims(json!({"nbf": now() + 600})), APP_KID, APP_SECRET), "28000", refused("token is not valid yet (nbf is in the future)")),
        (sign_raw(&claims(json!({"exp": now() + 86_400})), APP_KID, APP_SECRET), "28000", refused("token lifetime is 86400s; agent_boundary.max_token_lifetime allows 3600s")),
        (sign_raw(&claims(json!({"aud": "billing-service"})), APP_KID, APP_SECRET), "28000", refused("token audience is not \"agent_boundary\"")),
        (sign_raw(&claims(json!({"tenant_id": "northstar\u{0}dental"})), APP_KID, APP_SECRET), "28000", refused("claim tenant_id contains a control character")),
        (sign_raw(&claims(json!({"role": null})), APP_KID, APP_SECRET), "28000", refused("claim role is missing")),
        (sign_raw(&claims(json!({"tool_ids": [1, 2]})), APP_KID, APP_SECRET), "28000", refused("claim tool_ids must be an array of strings")),
        ("not.a.token".into(), "28000", refused("token is malformed: unreadable header")),
        ("x".repeat(1 << 20), "28000", refused("token is 1048576 bytes; the limit is 16384")),
        (sign_raw(&claims(json!({"user_id": "mallory"})), APP_KID, APP_SECRET), "42501",
            "agent boundary refused: no registered principal for tenant_id \"northstar-dental\", workspace_id \"support\", user_id \"mallory\"".into()),
        (sign_raw(&claims(json!({"tenant_id": "northstar-design", "region": "us"})), APP_KID, APP_SECRET), "42501",
            "agent boundary refused: the token claims region us but the registry says eu".into()),
    ];
    for (token, sqlstate, message) in &cases {
        app.batch_execute("BEGIN").await.unwrap();
        let err = assert_refused(enter(&app, token).await, sqlstate, message);
        assert_eq!(err.hint(), None, "{message}");
        app.batch_execute("ROLLBACK").await.unwrap();
        assert_refused(tenant(&app).await, "42501", NO_BOUNDARY);
    }
    // Signed with the secret's base64 text, as generate_signing_key returns it: the same
    // refusal, with a hint that says so.
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(APP_SECRET)
    };
    app.batch_execute("BEGIN").await.unwrap();
    let err = assert_refused(
        enter(&app, &sign_raw(&claims(json!({})), APP_KID, encoded.as_bytes())).await,
        "28000",
        &refused("signature does not verify (tampered, or signed with another key)"),
    );
    assert_eq!(
        err.hint(),
        Some(
            "The token was signed with the base64 text of key \"app-2026\"'s secret: base64-decode what \
             generate_signing_key returned and sign with those bytes."
        )
    );
    app.batch_execute("ROLLBACK").await.unwrap();
    // alg "none" never verifies.
    let none = {
        use base64::Engine;
        let b64 = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
        };
        format!("{}.{}.", b64(json!({"alg": "none", "kid": APP_KID})), b64(claims(json!({}))))
    };
    let err = enter(&app, &none).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "28000", "{err}");
    // NUL bytes never reach the extension: the server refuses them as text.
    assert_refused(
        enter(&app, "eyJ\0.x.y").await,
        "22021",
        "invalid byte sequence for encoding \"UTF8\": 0x00",
    );
    // A revoked principal is refused at once, even with a fresh, valid token.
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute("SELECT boundary.register_principal('northstar-dental', 'support', 'carol', 'member')")
        .await
        .unwrap();
    let carol = app_token("northstar-dental", "support", "carol", "member", json!({}));
    app.batch_execute("BEGIN").await.unwrap();
    enter(&app, &carol).await.unwrap();
    app.batch_execute("COMMIT").await.unwrap();
    admin.batch_execute("SELECT boundary.revoke('northstar-dental', 'support', 'carol')").await.unwrap();
    assert_refused(
        enter(&app, &carol).await,
        "42501",
        "agent boundary refused: the principal has been revoked",
    );
}

async fn session_scope_is_explicit_and_expires() {
    let client = cluster().connect("app_session").await;
    let short = app_token("northstar-dental", "support", "alice", "admin", json!({"exp": now() + 2}));
    let row = client
        .query_typed_one("SELECT boundary.enter($1, 'session') ->> 'scope'", &[(&short.as_str(), Type::TEXT)])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "session");
    assert_eq!(tickets(&client).await.unwrap(), DENTAL_ROWS, "it outlives the statement that entered it");
    let exp: i64 = column(
        &client,
        "SELECT extract(epoch FROM (boundary.current() ->> 'expires_at')::timestamptz)::bigint",
    )
    .await
    .unwrap()[0]
        .parse()
        .unwrap();
    while now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_refused(tickets(&client).await, "42501", &format!("agent boundary expired (exp {exp})"));
    client.batch_execute("SELECT boundary.exit()").await.unwrap();
    assert_refused(tickets(&client).await, "42501", NO_BOUNDARY);
    // DISCARD ALL (what a session-mode pooler sends) clears a session boundary too.
    client
        .query_typed("SELECT boundary.enter($1, 'session')", &[(&dental_alice().as_str(), Type::TEXT)])
        .await
        .unwrap();
    assert_eq!(tenant(&client).await.unwrap(), "northstar-dental");
    client.batch_execute("DISCARD ALL").await.unwrap();
    assert_refused(tenant(&client).await, "42501", NO_BOUNDARY);
}

async fn preloaded_library_refuses_forgery_at_connect_and_seals_per_backend() {
    let preloaded = Cluster::start("preloaded", &["shared_preload_libraries = 'agent_boundary'"]);
    let admin = preloaded.connect("postgres").await;
    admin.batch_execute(BASE_FIXTURE).await.unwrap();
    admin.batch_execute(FIXTURE).await.unwrap();
    // With the library preloaded the GUC exists at connect, so the forgery fails at once.
    for (user, message) in [("app", DENIED_SET), ("postgres", NOT_BY_ENTER)] {
        let mut config = preloaded.config(user);
        config.options("-c agent_boundary.boundary=eyJhbGciOiJIUzI1NiJ9.e30.forged");
        assert_refused(connect_with(config).await.map(|_| ()), "42501", message);
    }
    // _PG_init ran in the postmaster, yet each backend seals with its own secret.
    admin.batch_execute("BEGIN").await.unwrap();
    enter(&admin, &dental_alice()).await.unwrap();
    let sealed = column(&admin, "SHOW agent_boundary.boundary").await.unwrap().remove(0);
    assert_foreign_seal_refused(&preloaded.connect("postgres").await, &sealed).await;
    // ...while the same backend accepts its own seal (this is how savepoints restore it).
    admin.batch_execute("SAVEPOINT s; SELECT boundary.exit()").await.unwrap();
    admin.batch_execute(&format!("SET LOCAL agent_boundary.boundary = '{sealed}'")).await.unwrap();
    assert_eq!(tenant(&admin).await.unwrap(), "northstar-dental");
    admin.batch_execute("COMMIT").await.unwrap();
}

/// Enters `token` in a transaction of its own and returns (role, tool_ids) as entered.
async fn entered_role_and_tools(
    client: &Client,
    token: &str,
) -> Result<(String, Value), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let entered = enter(client, token).await;
    client.batch_execute("ROLLBACK").await?;
    let entered = entered?;
    Ok((entered["role"].as_str().unwrap().to_string(), entered["tool_ids"].clone()))
}

/// Each backend remembers the verdicts of the tokens it entered (and the keys and registry rows
/// behind them). Every change to the registry or the keys that committed before an enter
/// started must count, wherever and however it was made; an uncommitted or rolled-back one must
/// not.
async fn remembered_verdicts_follow_every_registry_and_key_change() {
    const KID: &str = "remembered-2026";
    const SECRET: &str = "remembered-verdicts-secret-0123456789";
    const REVOKED: &str = "agent boundary refused: the principal has been revoked";
    let admin = cluster().connect("postgres").await;
    let register = |role: &str, tools: &str| {
        format!(
            "SELECT boundary.register_principal('northstar-dental', 'support', 'dana', '{role}', 'pro', 'us', \
             ARRAY[{tools}]::text[], ARRAY['tickets'])"
        )
    };
    admin
        .batch_execute(&format!(
            "SELECT boundary.add_signing_key('{KID}', 'HS256', convert_to('{SECRET}', 'UTF8')); {}",
            register("admin", "'search', 'crm'")
        ))
        .await
        .unwrap();
    let token = sign_raw(
        &json!({"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "dana",
                "role": "admin", "tool_ids": ["search", "crm"], "iat": now(), "exp": now() + 300,
                "aud": "agent_boundary"}),
        KID,
        SECRET.as_bytes(),
    );
    let app = cluster().connect("app").await;
    let admin_with_both_tools = ("admin".to_string(), json!(["crm", "search"]));
    for _ in 0..3 {
        assert_eq!(entered_role_and_tools(&app, &token).await.unwrap(), admin_with_both_tools);
    }

    // A downgrade through register_principal, then a direct UPDATE of the registry table.
    admin.batch_execute(&register("viewer", "'search'")).await.unwrap();
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap(), ("viewer".into(), json!(["search"])));
    admin
        .batch_execute("UPDATE boundary.principals SET tool_ids = '{}' WHERE user_id = 'dana'")
        .await
        .unwrap();
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap(), ("viewer".into(), json!([])));

    // An uncommitted revoke does not count yet; rolled back, it never does.
    admin
        .batch_execute("BEGIN; SELECT boundary.revoke('northstar-dental', 'support', 'dana')")
        .await
        .unwrap();
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap().0, "viewer");
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap().0, "viewer");

    // A revoke written with triggers off for replication still reaches every backend.
    admin
        .batch_execute(
            "SET session_replication_role = replica;
             UPDATE boundary.principals SET revoked_at = now() WHERE user_id = 'dana';
             RESET session_replication_role",
        )
        .await
        .unwrap();
    assert_refused(entered_role_and_tools(&app, &token).await, "42501", REVOKED);
    admin.batch_execute(&register("admin", "'search', 'crm'")).await.unwrap();
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap(), admin_with_both_tools);

    // A REPEATABLE READ transaction whose snapshot predates the revoke still sees it at enter,
    // whether or not it has written (and so holds a transaction id) before.
    for first in ["SELECT 1", "SELECT pg_current_xact_id()"] {
        assert_eq!(entered_role_and_tools(&app, &token).await.unwrap(), admin_with_both_tools);
        app.batch_execute(&format!("BEGIN ISOLATION LEVEL REPEATABLE READ; {first}")).await.unwrap();
        admin.batch_execute("SELECT boundary.revoke('northstar-dental', 'support', 'dana')").await.unwrap();
        assert_refused(enter(&app, &token).await, "42501", REVOKED);
        app.batch_execute("ROLLBACK").await.unwrap();
        admin.batch_execute(&register("admin", "'search', 'crm'")).await.unwrap();
    }

    // In the revoking transaction itself: refused after the revoke, entered again after rollback.
    admin.batch_execute("BEGIN").await.unwrap();
    enter(&admin, &token).await.unwrap();
    admin.batch_execute("SELECT boundary.revoke('northstar-dental', 'support', 'dana')").await.unwrap();
    assert_refused(enter(&admin, &token).await, "42501", REVOKED);
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(entered_role_and_tools(&admin, &token).await.unwrap(), admin_with_both_tools);
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap(), admin_with_both_tools);

    // A retired key, and a remembered token that expires (app_session has clock_skew = 0).
    admin.batch_execute(&format!("SELECT boundary.retire_signing_key('{KID}')")).await.unwrap();
    assert_refused(
        entered_role_and_tools(&app, &token).await,
        "28000",
        &format!("agent boundary token refused: signed with an unknown or retired key id \"{KID}\""),
    );
    let session = cluster().connect("app_session").await;
    let exp = now() + 2;
    let short = app_token("northstar-dental", "support", "alice", "admin", json!({"exp": exp}));
    assert_eq!(entered_role_and_tools(&session, &short).await.unwrap().0, "admin");
    assert_eq!(entered_role_and_tools(&session, &short).await.unwrap().0, "admin");
    while now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_refused(
        entered_role_and_tools(&session, &short).await,
        "28000",
        "agent boundary token refused: token has expired",
    );
}

// ---------------------------------------------------------------------------------------------

/// Every other way the registry changes is seen too: a principal added with COPY (which fires
/// the row triggers) is admitted by a backend that was just refused for it, and a TRUNCATE of
/// the registry (statement trigger) is seen by the transaction that made it.
async fn copy_and_truncate_of_the_registry_are_seen_at_once() {
    let token = app_token("northstar-dental", "support", "gina", "admin", json!({}));
    let app = cluster().connect("app").await;
    assert_refused(
        entered_role_and_tools(&app, &token).await,
        "42501",
        "agent boundary refused: no registered principal for tenant_id \"northstar-dental\", \
         workspace_id \"support\", user_id \"gina\"",
    );
    let admin = cluster().connect("postgres").await;
    let sink = admin
        .copy_in("COPY boundary.principals (tenant_id, workspace_id, user_id, role) FROM STDIN")
        .await
        .unwrap();
    {
        use futures_util::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"northstar-dental\tsupport\tgina\tadmin\n")).await.unwrap();
        sink.as_mut().finish().await.unwrap();
    }
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap().0, "admin");
    admin.batch_execute("BEGIN").await.unwrap();
    enter(&admin, &token).await.unwrap();
    admin.batch_execute("SAVEPOINT s; TRUNCATE boundary.principals CASCADE").await.unwrap();
    assert_refused(
        enter(&admin, &token).await,
        "42501",
        "agent boundary refused: no registered principal for tenant_id \"northstar-dental\", \
         workspace_id \"support\", user_id \"gina\"",
    );
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(entered_role_and_tools(&app, &token).await.unwrap().0, "admin");
    admin.batch_execute("DELETE FROM boundary.principals WHERE user_id = 'gina'").await.unwrap();
}

/// Polls `sql` (one boolean) on `client` until it is true, for at most 30 seconds.
async fn wait_until(client: &Client, sql: &str) {
    for _ in 0..300 {
        if column(client, sql).await.unwrap() == ["t"] {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = cluster().log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    panic!("timed out waiting for: {sql}\nserver log (last lines first):\n{}", tail.join("\n"));
}

/// A registry replicated from a control-plane database (logical replication, whose apply worker
/// fires row triggers but not statement triggers): a revoke, a re-grant and a key retirement
/// made there reach every long-lived backend here, for remembered and freshly signed tokens.
async fn a_revoke_replicated_from_a_control_plane_reaches_every_backend() {
    const KID: &str = "control-2026";
    const SECRET: &str = "control-plane-secret-0123456789abcdef";
    const REVOKED: &str = "agent boundary refused: the principal has been revoked";
    let admin = cluster().connect("postgres").await;
    admin.batch_execute("CREATE DATABASE control").await.unwrap();
    let control = cluster().connect_to("postgres", "control").await;
    let key = format!("SELECT boundary.add_signing_key('{KID}', 'HS256', convert_to('{SECRET}', 'UTF8'))");
    let grant =
        "SELECT boundary.register_principal('northstar-dental', 'support', 'erin', 'admin', 'pro', 'us', \
                 ARRAY['search'], ARRAY['tickets'])";
    // The same rows on both sides; from here on the control plane is the source of truth.
    control
        .batch_execute(&format!(
            "CREATE EXTENSION agent_boundary CASCADE; {key}; {grant};
             CREATE PUBLICATION registry FOR TABLE boundary.principals, boundary.signing_keys;"
        ))
        .await
        .unwrap();
    control.batch_execute("SELECT pg_create_logical_replication_slot('registry', 'pgoutput')").await.unwrap();
    admin.batch_execute(&format!("{key}; {grant}")).await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION registry
                 CONNECTION 'host=127.0.0.1 port={} user=postgres dbname=control'
                 PUBLICATION registry WITH (create_slot = false, slot_name = 'registry', copy_data = false)",
            cluster().port
        ))
        .await
        .unwrap();
    let token = || {
        sign_raw(
            &json!({"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "erin",
                    "role": "admin", "iat": now(), "exp": now() + 300, "aud": "agent_boundary"}),
            KID,
            SECRET.as_bytes(),
        )
    };
    let app = cluster().connect("app").await;
    let remembered = token();
    for _ in 0..2 {
        assert_eq!(entered_role_and_tools(&app, &remembered).await.unwrap().0, "admin");
    }
    control.batch_execute("SELECT boundary.revoke('northstar-dental', 'support', 'erin')").await.unwrap();
    wait_until(&admin, "SELECT revoked_at IS NOT NULL FROM boundary.principals WHERE user_id = 'erin'").await;
    assert_refused(entered_role_and_tools(&app, &remembered).await, "42501", REVOKED);
    assert_refused(entered_role_and_tools(&app, &token()).await, "42501", REVOKED);
    control.batch_execute(grant).await.unwrap();
    wait_until(&admin, "SELECT revoked_at IS NULL FROM boundary.principals WHERE user_id = 'erin'").await;
    assert_eq!(entered_role_and_tools(&app, &remembered).await.unwrap().0, "admin");
    control.batch_execute(&format!("SELECT boundary.retire_signing_key('{KID}')")).await.unwrap();
    wait_until(
        &admin,
        &format!("SELECT retired_at IS NOT NULL FROM boundary.signing_keys WHERE kid = '{KID}'"),
    )
    .await;
    let retired = format!("agent boundary token refused: signed with an unknown or retired key id \"{KID}\"");
    assert_refused(entered_role_and_tools(&app, &remembered).await, "28000", &retired);
    assert_refused(entered_role_and_tools(&app, &token()).await, "28000", &retired);
    admin.batch_execute("DROP SUBSCRIPTION registry").await.unwrap();
    admin.batch_execute("DROP DATABASE control WITH (FORCE)").await.unwrap();
}

/// Bad input gets an ERROR, never a crash, on a server with a memory limit (`ulimit -v`): a
/// failed Rust allocation would abort the backend and PostgreSQL would restart every session of
/// every tenant. Every public function bounds its input before allocating.
async fn huge_input_on_a_memory_limited_server_is_an_error_not_a_crash() {
    let limited = Cluster::start_limited("memory-limit", &[], Some(1024 * 1024));
    let admin = limited.connect("postgres").await;
    admin.batch_execute(BASE_FIXTURE).await.unwrap();
    admin.batch_execute("CREATE ROLE anyone LOGIN").await.unwrap();
    let bystander = limited.connect("anyone").await;
    let pid = column(&bystander, "SELECT pg_backend_pid()").await.unwrap();
    let anyone = limited.connect("anyone").await;
    for (sql, message) in [
        (
            "SELECT length(boundary.key_part(repeat(':', 300000000)))",
            "boundary.key_part() input is 300000000 bytes; the limit is 65536",
        ),
        (
            "SELECT length(boundary.compose_key(repeat(':', 100000000), 'b'))",
            "boundary.compose_key() input is 100000001 bytes; the limit is 65536",
        ),
    ] {
        assert_refused(anyone.batch_execute(sql).await, "54000", message);
    }
    // Values: the stored size is checked before the value is read into the extension.
    anyone.batch_execute("BEGIN").await.unwrap();
    enter(&anyone, &dental_alice()).await.unwrap();
    let refused = anyone
        .batch_execute("SELECT boundary.memory_set('big', to_jsonb(repeat('x', 200000000)))")
        .await
        .expect_err("refused");
    let db = refused.as_db_error().unwrap();
    assert_eq!(db.code().code(), "54000");
    assert!(db.message().ends_with("bytes of jsonb; the limit is 1048576 bytes of JSON"), "{}", db.message());
    anyone.batch_execute("ROLLBACK").await.unwrap();
    // The session that asked is still there, and so is everyone else's.
    assert_eq!(column(&anyone, "SELECT 1").await.unwrap(), ["1"]);
    assert_eq!(column(&bystander, "SELECT pg_backend_pid()").await.unwrap(), pid);
    let log = limited.log();
    assert!(!log.contains("terminated by signal") && !log.contains("memory allocation of"), "{log}");
    limited.stop();
}

fn main() {
    let args = Arguments::from_args();
    let trials = trials![
        lookalike_tenants_each_see_only_their_rows,
        no_boundary_fails_closed_and_commit_clears_it,
        pooled_connection_reuse_never_carries_a_boundary,
        parallel_workers_see_the_same_boundary,
        savepoint_rollback_restores_the_outer_boundary,
        forgery_through_set_and_set_config_is_refused,
        forgery_through_pgoptions_is_refused,
        forgery_through_alter_role_database_and_function_set_is_refused,
        a_sealed_value_cannot_be_replayed_into_another_backend,
        refused_tokens_say_why_and_leave_no_boundary,
        session_scope_is_explicit_and_expires,
        preloaded_library_refuses_forgery_at_connect_and_seals_per_backend,
        remembered_verdicts_follow_every_registry_and_key_change,
        a_revoke_replicated_from_a_control_plane_reaches_every_backend,
        copy_and_truncate_of_the_registry_are_seen_at_once,
        huge_input_on_a_memory_limited_server_is_an_error_not_a_crash,
    ];
    // wal_level = logical: a trial replicates the registry between two databases.
    start_shared_cluster_with("boundary", &["wal_level = logical"], FIXTURE);
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
