//! docs/attacks.md, rows 1–12, 14–20, 22 and 27–30, each tried against a real server with two
//! lookalike tenants and tables protected by `boundary.protect()`. (Rows 13 and 15 for the
//! boundary itself are in tests/boundary.rs.) Each trial asserts exact rows, or SQLSTATE and
//! message, or — where PostgreSQL cannot close the hole — that the lint reports it.
//!
//! Trials run one at a time: some change cluster-wide state (roles, the event trigger).

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use support::*;
use tokio_postgres::types::Type;

const NO_BOUNDARY: &str = "no agent boundary is set";
const DENTAL: [&str; 3] =
    ["1 Crown fitting follow-up", "2 Renewal risk: billing dispute", "4 Implant consult"];
const DESIGN: [&str; 3] = ["1 Logo refresh for spring", "2 Renewal risk: slow feedback", "3 Brand guide v2"];

/// tickets_owner owns and protects the tables (it has no BYPASSRLS); agent is the data agent;
/// app logs in and can SET ROLE to agent.
const FIXTURE: &str = r#"
CREATE ROLE tickets_owner LOGIN NOBYPASSRLS;
CREATE ROLE agent LOGIN NOBYPASSRLS;
CREATE ROLE app LOGIN NOBYPASSRLS IN ROLE agent;
GRANT CREATE ON SCHEMA public TO tickets_owner;
SET ROLE tickets_owner;
CREATE TABLE public.tickets (
    tenant_id text NOT NULL, id bigint NOT NULL, subject text NOT NULL,
    PRIMARY KEY (tenant_id, id));
CREATE TABLE public.ticket_notes (
    tenant_id text NOT NULL, ticket_id bigint NOT NULL, body text NOT NULL,
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES public.tickets (tenant_id, id));
SELECT boundary.protect('public.tickets');
SELECT boundary.protect('public.ticket_notes');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tickets, public.ticket_notes TO agent;
-- As a deployment would: the agent role gets what the owner's migrations create.
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO agent;
RESET ROLE;
INSERT INTO public.tickets VALUES
    ('northstar-dental', 1, 'Crown fitting follow-up'),
    ('northstar-dental', 2, 'Renewal risk: billing dispute'),
    ('northstar-dental', 4, 'Implant consult'),
    ('northstar-design', 1, 'Logo refresh for spring'),
    ('northstar-design', 2, 'Renewal risk: slow feedback'),
    ('northstar-design', 3, 'Brand guide v2');
"#;

async fn tickets(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    column(client, "SELECT id || ' ' || subject FROM public.tickets ORDER BY id").await
}

/// BEGIN and enter `token` on `client`.
async fn begin_in(client: &Client, token: &str) {
    client.batch_execute("BEGIN").await.unwrap();
    enter(client, token).await.unwrap();
}

async fn admin() -> Client {
    cluster().connect("postgres").await
}

async fn lint(client: &Client, advisories: bool) -> Vec<String> {
    column(
        client,
        &format!(
            "SELECT object || ' | ' || problem FROM boundary.unprotected_tables(include_advisories => {advisories})"
        ),
    )
    .await
    .unwrap()
}

// 1 -------------------------------------------------------------------------------------------
async fn owner_without_bypassrls_is_held_by_forced_rls() {
    let admin = admin().await;
    assert_eq!(
        column(
            &admin,
            "SELECT relforcerowsecurity::text FROM pg_class WHERE oid = 'public.tickets'::regclass"
        )
        .await
        .unwrap(),
        ["true"]
    );
    let owner = cluster().connect("tickets_owner").await;
    assert_refused(tickets(&owner).await, "42501", NO_BOUNDARY);
    begin_in(&owner, &dental_alice()).await;
    assert_eq!(tickets(&owner).await.unwrap(), DENTAL);
    assert_refused(
        owner.batch_execute("INSERT INTO public.tickets VALUES ('northstar-design', 9, 'planted')").await,
        "42501",
        "new row violates row-level security policy \"boundary_insert\" for table \"tickets\"",
    );
    owner.batch_execute("ROLLBACK").await.unwrap();
}

// 2 -------------------------------------------------------------------------------------------
async fn roles_that_bypass_rls_are_flagged_by_the_lint() {
    let admin = admin().await;
    admin
        .batch_execute(
            "CREATE ROLE reporting LOGIN BYPASSRLS; GRANT SELECT ON public.tickets TO reporting;
             CREATE ROLE analyst LOGIN IN ROLE reporting;",
        )
        .await
        .unwrap();
    // What PostgreSQL does: a BYPASSRLS role reads every tenant, boundary or not.
    let reporting = cluster().connect("reporting").await;
    assert_eq!(column(&reporting, "SELECT count(*) FROM public.tickets").await.unwrap(), ["6"]);
    // What the lint says about it, including the role that reaches BYPASSRLS by membership.
    let findings = lint(&admin, false).await;
    for expected in [
        "analyst | can bypass row level security (membership in reporting) and has privileges on protected table public.tickets",
        "reporting | can bypass row level security (BYPASSRLS) and has privileges on protected table public.tickets",
    ] {
        assert!(findings.contains(&expected.to_string()), "{findings:#?}");
    }
    admin
        .batch_execute("DROP ROLE analyst; REVOKE ALL ON public.tickets FROM reporting; DROP ROLE reporting")
        .await
        .unwrap();
    assert_eq!(lint(&admin, false).await, Vec::<String>::new());
}

// 3 -------------------------------------------------------------------------------------------
async fn views_over_protected_tables_check_the_callers_policies() {
    let admin = admin().await;
    // A superuser-owned view would read as the superuser (no RLS): the event trigger fixes it.
    let (admin2, notices) = connect_with_notices(cluster().config("postgres")).await.unwrap();
    admin2
        .batch_execute("CREATE VIEW public.ticket_subjects AS SELECT id, subject FROM public.tickets; GRANT SELECT ON public.ticket_subjects TO agent")
        .await
        .unwrap();
    assert_eq!(
        *notices.lock().unwrap(),
        ["NOTICE: agent_boundary set security_invoker = true on view public.ticket_subjects: it reads protected tables"]
    );
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &design_alice()).await;
    assert_eq!(column(&agent, "SELECT count(*) FROM public.ticket_subjects").await.unwrap(), ["3"]);
    agent.batch_execute("COMMIT").await.unwrap();
    // Switched back behind the trigger's back, the view leaks; the lint names it.
    admin
        .batch_execute(
            "ALTER EVENT TRIGGER boundary_auto_protect DISABLE;
                        ALTER VIEW public.ticket_subjects SET (security_invoker = false);
                        ALTER EVENT TRIGGER boundary_auto_protect ENABLE",
        )
        .await
        .unwrap();
    begin_in(&agent, &design_alice()).await;
    assert_eq!(
        column(&agent, "SELECT count(*) FROM public.ticket_subjects").await.unwrap(),
        ["6"],
        "the leak the lint is for"
    );
    agent.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        lint(&admin, false).await,
        ["public.ticket_subjects | view reads protected table public.tickets with its owner's rights (security_invoker is off)"]
    );
    admin.batch_execute("DROP VIEW public.ticket_subjects").await.unwrap();
}

// 4 -------------------------------------------------------------------------------------------
async fn a_leaky_function_only_ever_sees_the_boundarys_rows() {
    let (agent, notices) = connect_with_notices(cluster().config("agent")).await.unwrap();
    // Made inside the boundary: a session holding temporary objects cannot enter one.
    begin_in(&agent, &dental_alice()).await;
    agent
        .batch_execute(
            "CREATE FUNCTION pg_temp.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
             $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$",
        )
        .await
        .unwrap();
    let rows = column(&agent, "SELECT subject FROM public.tickets WHERE pg_temp.peek(subject) ORDER BY id")
        .await
        .unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    assert_eq!(rows.len(), 3);
    let mut seen = notices.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "NOTICE: saw Crown fitting follow-up",
            "NOTICE: saw Implant consult",
            "NOTICE: saw Renewal risk: billing dispute"
        ]
    );
}

// 5 -------------------------------------------------------------------------------------------
async fn planner_statistics_of_protected_tables_are_hidden() {
    let admin = admin().await;
    admin
        .batch_execute("CREATE STATISTICS public.tickets_stats (mcv) ON tenant_id, subject FROM public.tickets; ANALYZE public.tickets")
        .await
        .unwrap();
    let stats = "SELECT (SELECT count(*) FROM pg_stats WHERE tablename = 'tickets') || '/' ||
                        (SELECT count(*) FROM pg_stats_ext WHERE tablename = 'tickets')";
    assert_eq!(column(&admin, stats).await.unwrap(), ["3/1"], "the statistics exist");
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    assert_eq!(column(&agent, stats).await.unwrap(), ["0/0"]);
    assert_refused(
        column(&agent, "SELECT count(*) FROM pg_statistic").await,
        "42501",
        "permission denied for table pg_statistic",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    admin.batch_execute("DROP STATISTICS public.tickets_stats").await.unwrap();
}

// 6 -------------------------------------------------------------------------------------------
async fn explain_counts_are_reported_and_avoided_by_the_tenant_index() {
    let admin = admin().await;
    assert!(lint(&admin, true).await.contains(
        &"public.tickets | advisory: pg_class.reltuples, EXPLAIN estimates and EXPLAIN ANALYZE of a sequential scan (\"Rows Removed by Filter\") reveal how many rows all tenants hold".to_string()
    ));
    // A point lookup goes through the tenant-leading key, never touching other tenants' rows.
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("SET LOCAL enable_seqscan = off").await.unwrap();
    let plan = column(
        &agent,
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM public.tickets WHERE id = 3",
    )
    .await
    .unwrap()
    .join("\n");
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert!(plan.contains("Index Cond: ((tenant_id = boundary.tenant_id()) AND (id = 3))"), "{plan}");
    assert!(!plan.contains("Rows Removed"), "{plan}");
}

// 7 -------------------------------------------------------------------------------------------
async fn unique_keys_that_include_the_tenant_reveal_nothing() {
    let agent = cluster().connect("agent").await;
    // Design has ticket 3; Dental does not. Dental inserting id 3 succeeds: no duplicate-key oracle.
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("INSERT INTO public.tickets (id, subject) VALUES (3, 'probe')").await.unwrap();
    agent.batch_execute("ROLLBACK").await.unwrap();
    // With a key that lacks the tenant, the error would tell; the lint flags such keys.
    let admin = admin().await;
    admin
        .batch_execute(
            "CREATE TABLE public.handles (tenant_id text NOT NULL, handle text NOT NULL UNIQUE);
             SELECT boundary.protect('public.handles');
             INSERT INTO public.handles VALUES ('northstar-design', 'ceo@northstar');
             GRANT SELECT, INSERT ON public.handles TO agent",
        )
        .await
        .unwrap();
    begin_in(&agent, &dental_alice()).await;
    assert_refused(
        agent.batch_execute("INSERT INTO public.handles (handle) VALUES ('ceo@northstar')").await,
        "23505",
        "duplicate key value violates unique constraint \"handles_handle_key\"",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        lint(&admin, false).await,
        ["public.handles | unique index public.handles_handle_key does not have the tenant column tenant_id among its key columns; a duplicate-key error reveals other tenants' values"]
    );
    admin.batch_execute("DROP TABLE public.handles").await.unwrap();
}

// 8 -------------------------------------------------------------------------------------------
async fn foreign_keys_cannot_link_across_tenants() {
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    // Ticket 3 exists only for Design; the composite key resolves (tenant, id) = (Dental, 3).
    let refused = assert_refused(
        agent.batch_execute("INSERT INTO public.ticket_notes (ticket_id, body) VALUES (3, 'attach to their ticket')").await,
        "23503",
        "insert or update on table \"ticket_notes\" violates foreign key constraint \"ticket_notes_tenant_id_ticket_id_fkey\"",
    );
    // PostgreSQL leaves the key values out of the detail when the table has row level security.
    assert_eq!(refused.detail(), Some("Key is not present in table \"tickets\"."));
    agent.batch_execute("ROLLBACK").await.unwrap();
    begin_in(&agent, &dental_alice()).await;
    agent
        .batch_execute("INSERT INTO public.ticket_notes (ticket_id, body) VALUES (4, 'own ticket')")
        .await
        .unwrap();
    agent.batch_execute("ROLLBACK").await.unwrap();
}

// 9 -------------------------------------------------------------------------------------------
async fn copy_truncate_and_whole_table_paths() {
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &design_alice()).await;
    let copied = {
        use futures_util::TryStreamExt;
        let stream = agent.copy_out("COPY public.tickets (id, subject) TO STDOUT").await.unwrap();
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        String::from_utf8(chunks.concat()).unwrap()
    };
    assert_eq!(copied, "1\tLogo refresh for spring\n2\tRenewal risk: slow feedback\n3\tBrand guide v2\n");
    assert_refused(
        agent.batch_execute("COPY public.tickets FROM STDIN").await,
        "0A000",
        "COPY FROM not supported with row-level security",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    let admin = admin().await;
    admin.batch_execute("GRANT TRUNCATE ON public.ticket_notes TO agent").await.unwrap();
    admin
        .batch_execute("INSERT INTO public.ticket_notes VALUES ('northstar-design', 1, 'note')")
        .await
        .unwrap();
    begin_in(&agent, &design_alice()).await;
    assert_refused(
        agent.batch_execute("TRUNCATE public.ticket_notes").await,
        "42501",
        "TRUNCATE on public.ticket_notes is refused: it would bypass row level security",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(column(&admin, "SELECT count(*) FROM public.ticket_notes").await.unwrap(), ["1"]);
    // The privilege is refused at run time by the trigger, and reported by the lint (app
    // holds it through its membership in agent).
    assert_eq!(
        lint(&admin, false).await,
        [
            "agent | has TRUNCATE on protected table public.ticket_notes",
            "app | has TRUNCATE on protected table public.ticket_notes"
        ]
    );
    admin
        .batch_execute("REVOKE TRUNCATE ON public.ticket_notes FROM agent; DELETE FROM public.ticket_notes")
        .await
        .unwrap();
}

// 10 ------------------------------------------------------------------------------------------
async fn upsert_and_merge_cannot_reach_another_tenants_rows() {
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    assert_refused(
        agent
            .batch_execute(
                "INSERT INTO public.tickets VALUES ('northstar-design', 1, 'hijacked')
                 ON CONFLICT (tenant_id, id) DO UPDATE SET subject = excluded.subject",
            )
            .await,
        "42501",
        "new row violates row-level security policy \"boundary_insert\" for table \"tickets\"",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    begin_in(&agent, &dental_alice()).await;
    agent
        .batch_execute(
            "INSERT INTO public.tickets (id, subject) VALUES (1, 'Crown fitting, rescheduled')
             ON CONFLICT (tenant_id, id) DO UPDATE SET subject = excluded.subject;
             MERGE INTO public.tickets t USING (VALUES (3::bigint, 'merged')) s(id, subject) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET subject = s.subject
             WHEN NOT MATCHED THEN INSERT (id, subject) VALUES (s.id, s.subject)",
        )
        .await
        .unwrap();
    assert_eq!(
        tickets(&agent).await.unwrap(),
        ["1 Crown fitting, rescheduled", "2 Renewal risk: billing dispute", "3 merged", "4 Implant consult"]
    );
    assert_refused(
        agent
            .batch_execute(
                "MERGE INTO public.tickets t USING (VALUES (2::bigint)) s(id) ON false
                 WHEN NOT MATCHED THEN INSERT VALUES ('northstar-design', 7, 'planted')",
            )
            .await,
        "42501",
        "new row violates row-level security policy \"boundary_insert\" for table \"tickets\"",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    let admin = admin().await;
    assert_eq!(
        column(&admin, "SELECT string_agg(id || ' ' || subject, ', ' ORDER BY id) FROM public.tickets WHERE tenant_id = 'northstar-design'").await.unwrap(),
        ["1 Logo refresh for spring, 2 Renewal risk: slow feedback, 3 Brand guide v2"]
    );
}

// 11 ------------------------------------------------------------------------------------------
async fn prepared_statements_generic_plans_functions_and_ctes_follow_the_current_boundary() {
    admin()
        .await
        .batch_execute(
            "CREATE FUNCTION public.subjects() RETURNS SETOF text LANGUAGE sql STABLE
                 AS 'SELECT id || '' '' || subject FROM public.tickets ORDER BY id';
             CREATE FUNCTION public.subjects_plpgsql() RETURNS SETOF text LANGUAGE plpgsql STABLE
                 AS $$ BEGIN RETURN QUERY SELECT id || ' ' || subject FROM public.tickets ORDER BY id; END $$",
        )
        .await
        .unwrap();
    let agent = cluster().connect("agent").await;
    agent
        .batch_execute(
            "SET plan_cache_mode = force_generic_plan;
             PREPARE q AS SELECT id || ' ' || subject FROM public.tickets ORDER BY id;",
        )
        .await
        .unwrap();
    let protocol_prepared =
        agent.prepare("SELECT id || ' ' || subject FROM public.tickets ORDER BY id").await.unwrap();
    for (token, rows) in [(dental_alice(), DENTAL), (design_alice(), DESIGN), (dental_alice(), DENTAL)] {
        begin_in(&agent, &token).await;
        assert_eq!(column(&agent, "EXECUTE q").await.unwrap(), rows);
        assert_eq!(column(&agent, "SELECT public.subjects()").await.unwrap(), rows);
        assert_eq!(column(&agent, "SELECT public.subjects_plpgsql()").await.unwrap(), rows);
        assert_eq!(
            column(&agent, "WITH t AS MATERIALIZED (SELECT * FROM public.tickets) SELECT id || ' ' || subject FROM t ORDER BY id")
                .await
                .unwrap(),
            rows
        );
        let via_protocol: Vec<String> = agent
            .query(&protocol_prepared, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        assert_eq!(via_protocol, rows);
        agent.batch_execute("COMMIT").await.unwrap();
    }
    assert_refused(column(&agent, "EXECUTE q").await, "42501", NO_BOUNDARY);
    admin().await.batch_execute("DROP FUNCTION public.subjects(), public.subjects_plpgsql()").await.unwrap();
}

/// A Dental transaction with a cursor open over its tickets, one row fetched, and a savepoint.
async fn dental_transaction_with_open_cursor() -> Client {
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    agent
        .batch_execute("DECLARE c CURSOR FOR SELECT id || ' ' || subject FROM public.tickets ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column(&agent, "FETCH 1 FROM c").await.unwrap(), ["1 Crown fitting follow-up"]);
    agent.batch_execute("SAVEPOINT switch").await.unwrap();
    agent
}

// 12 ------------------------------------------------------------------------------------------
async fn cursors_never_carry_rows_across_boundaries() {
    let agent = cluster().connect("agent").await;
    // The same principal with narrower rights (a viewer token): different rows for writes, so
    // the cursor guard, not the one-principal rule, is what refuses.
    let dental_viewer =
        app_token("northstar-dental", "support", "alice", "viewer", json!({"allow_jobs": true}));
    // enter
    let first = dental_transaction_with_open_cursor().await;
    assert_refused(
        enter(&first, &dental_viewer).await,
        "42501",
        "cannot switch to another agent boundary while 1 cursor(s) are open",
    );
    // resume: a queued job is another way onto the transaction, through the same admit()
    let viewer_job = {
        let worker = cluster().connect("agent").await;
        begin_in(&worker, &dental_viewer).await;
        let job = column(&worker, "SELECT boundary.snapshot('10 minutes')").await.unwrap().remove(0);
        worker.batch_execute("COMMIT").await.unwrap();
        job
    };
    let second = dental_transaction_with_open_cursor().await;
    assert_refused(
        second.query_typed_one("SELECT boundary.resume($1)::text", &[(&viewer_job, Type::TEXT)]).await,
        "42501",
        "cannot switch to another agent boundary while 1 cursor(s) are open",
    );
    // exit: leaving the boundary mid-cursor is refused too
    let third = dental_transaction_with_open_cursor().await;
    assert_refused(
        third.batch_execute("SELECT boundary.exit()").await,
        "42501",
        "cannot leave the agent boundary while 1 cursor(s) are open",
    );
    for client in [&first, &second, &third] {
        client.batch_execute("ROLLBACK TO SAVEPOINT switch").await.unwrap();
        assert_eq!(
            column(client, "FETCH ALL FROM c").await.unwrap(),
            ["2 Renewal risk: billing dispute", "4 Implant consult"],
            "the cursor still reads only the boundary it was opened under"
        );
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    // Re-entering the same boundary with a cursor open is fine.
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("DECLARE c CURSOR FOR SELECT 1").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    // WITH HOLD cursors keep rows past COMMIT (and, behind a pooler, for the next client).
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("DECLARE h CURSOR WITH HOLD FOR SELECT subject FROM public.tickets").await.unwrap();
    assert_refused(
        column(&agent, "FETCH 1 FROM h").await,
        "42501",
        "a WITH HOLD cursor cannot read data guarded by an agent boundary",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("DECLARE h CURSOR WITH HOLD FOR SELECT subject FROM public.tickets").await.unwrap();
    assert_refused(
        agent.batch_execute("COMMIT").await,
        "42501",
        "a WITH HOLD cursor cannot read data guarded by an agent boundary",
    );
    assert_refused(column(&agent, "FETCH ALL FROM h").await, "34000", "cursor \"h\" does not exist");
}

// 27 ------------------------------------------------------------------------------------------
/// Temporary look-alikes of what the extension's SQL names: types (a domain `text` whose CHECK
/// calls a spy), a view shadowing a catalog, a table shadowing a protected one. Every call
/// records itself in `spied`.
const PLANT: &str = "
    CREATE TEMP TABLE spied (what text);
    CREATE FUNCTION pg_temp.spy(anyelement) RETURNS boolean LANGUAGE sql
        AS $$ INSERT INTO pg_temp.spied VALUES (pg_catalog.pg_typeof($1)::pg_catalog.text); SELECT true $$;
    CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.spy(VALUE));
    CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.spy(VALUE));
    CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.spy(VALUE));
    CREATE DOMAIN pg_temp.regclass AS pg_catalog.regclass CHECK (pg_temp.spy(VALUE));
    CREATE DOMAIN pg_temp.interval AS pg_catalog.interval CHECK (pg_temp.spy(VALUE));
    CREATE TEMP VIEW pg_cursors AS SELECT 'planted'::pg_catalog.text AS name WHERE pg_temp.spy(1);
    CREATE TEMP TABLE tickets (tenant_id pg_catalog.text, id int8, subject pg_catalog.text);";

async fn planted_temporary_shadows_never_run_inside_extension_sql() {
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute(PLANT).await.unwrap();
    // Every public function an agent can call, under its boundary, with the shadows in place.
    for call in [
        "SELECT boundary.assert_in('public.tickets', '1')",
        "SELECT boundary.assert_tool('search'), boundary.assert_datasource('tickets')",
        "SELECT boundary.tenant_id(), boundary.current()::pg_catalog.text, boundary.is_active()",
        "SELECT boundary.memory_set('planted-check', '{\"v\": 1}'), boundary.memory_get('planted-check')",
        "SELECT boundary.memory_key('planted-check'), boundary.memory_delete('planted-check')",
        "SELECT boundary.cache_put(boundary.cache_key('ns', 'q', 'v1'), '1')",
        "SELECT boundary.cache_get(boundary.cache_key('ns', 'q', 'v1'))",
        "SELECT count(*) FROM boundary.memory_list()",
        "SELECT boundary.snapshot('1 minute') IS NOT NULL",
        "SELECT boundary.compose_key('a', 'b'), boundary.key_part('c:d')",
        "SELECT count(*) FROM boundary.unprotected_tables()",
    ] {
        agent.batch_execute(call).await.unwrap_or_else(|e| panic!("{call}: {e}"));
    }
    assert_eq!(
        column(&agent, "SELECT boundary.assert_in('public.tickets', '2')").await.unwrap(),
        ["2"],
        "the result is the real table's, not the planted one's"
    );
    assert_eq!(
        column(&agent, "SELECT count(*) FROM pg_temp.spied").await.unwrap(),
        ["0"],
        "no planted code ran inside extension SQL"
    );
    agent.batch_execute("SELECT boundary.exit()").await.unwrap();
    assert_eq!(column(&agent, "SELECT count(*) FROM pg_temp.spied").await.unwrap(), ["0"]);
    agent.batch_execute("ROLLBACK").await.unwrap();
}

// 28 ------------------------------------------------------------------------------------------
/// Through pgbouncer in transaction mode with one server connection (no reset query, the worst
/// case): Design's request leaves temporary objects named like the protected tables; Dental's
/// next request on that connection is refused at enter, and once the connection is reset it
/// reads and writes the real tables only.
async fn objects_planted_on_a_pooled_connection_never_answer_the_next_boundary() {
    let bouncer = Pgbouncer::start(cluster(), "transaction", 1, &["agent"]);
    let design = bouncer.connect("agent").await;
    let dental = bouncer.connect("agent").await;
    begin_in(&design, &design_alice()).await;
    design
        .batch_execute(
            "CREATE TEMP TABLE tickets (tenant_id text, id bigint, subject text);
             INSERT INTO tickets VALUES ('northstar-dental', 99, 'planted by Design');
             CREATE TEMP VIEW ticket_notes AS SELECT 'northstar-dental'::text AS tenant_id, 1::bigint AS ticket_id,
                    'planted note'::text AS body;
             CREATE FUNCTION pg_temp.tenant_id() RETURNS text LANGUAGE sql AS $$ SELECT 'northstar-design' $$;
             COMMIT",
        )
        .await
        .unwrap();
    // The README's request, unqualified names and all, on the same server connection.
    dental.batch_execute("BEGIN").await.unwrap();
    let refused = enter(&dental, &dental_alice()).await.expect_err("entering next to planted objects");
    let db = refused.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().starts_with("boundary.enter() refused: this session holds ")
            && db.message().ends_with(
                " temporary object(s) made before the agent boundary; they could answer its queries"
            ),
        "{}",
        db.message()
    );
    assert!(db.hint().unwrap_or_default().contains("server_reset_query_always"), "{:?}", db.hint());
    dental.batch_execute("ROLLBACK").await.unwrap();
    // What pgbouncer's server_reset_query = 'DISCARD ALL' (with server_reset_query_always) does.
    dental.batch_execute("DISCARD ALL").await.unwrap();
    begin_in(&dental, &dental_alice()).await;
    dental.batch_execute("INSERT INTO tickets (id, subject) VALUES (60, 'written by Dental')").await.unwrap();
    assert_eq!(
        column(&dental, "SELECT id || ' ' || subject FROM tickets ORDER BY id").await.unwrap(),
        [DENTAL.as_slice(), &["60 written by Dental"]].concat()
    );
    dental.batch_execute("COMMIT").await.unwrap();
    let admin = admin().await;
    assert_eq!(
        column(&admin, "SELECT tenant_id FROM public.tickets WHERE id = 60").await.unwrap(),
        ["northstar-dental"]
    );
    admin.batch_execute("DELETE FROM public.tickets WHERE id = 60").await.unwrap();
    // Design never sees Dental's rows or writes.
    begin_in(&design, &design_alice()).await;
    assert_eq!(tickets(&design).await.unwrap(), DESIGN);
    design.batch_execute("COMMIT").await.unwrap();
}

/// What PostgreSQL scopes by role, not by row, as the lint reports it: large objects owned by an
/// agent role (a finding), TEMPORARY and session visibility (advisories), each with its fix.
async fn what_one_role_shares_across_tenants_is_reported() {
    let admin = admin().await;
    let agent = cluster().connect("agent").await;
    let blob = column(&agent, "SELECT pg_catalog.lo_from_bytea(0, 'a tenant''s attachment')::text")
        .await
        .unwrap()
        .remove(0);
    let finding = format!(
        "large object {blob} | is owned by role agent, which has privileges on protected tables: every tenant's agent running as agent can read it"
    );
    assert!(lint(&admin, false).await.contains(&finding), "{:#?}", lint(&admin, false).await);
    admin.batch_execute(&format!("SELECT pg_catalog.lo_unlink({blob})")).await.unwrap();
    assert!(!lint(&admin, false).await.iter().any(|f| f.starts_with("large object")));
    let temporary = "agent | advisory: can create temporary objects (TEMPORARY on database postgres) and reaches protected table public.ticket_notes; boundary.enter() refuses a session that holds them, so a pooled connection left with some fails its next request";
    let sessions = "agent | advisory: sessions of one role share what PostgreSQL scopes by role, not by row: pg_stat_activity query text, pg_cancel_backend and pg_terminate_backend, LISTEN/NOTIFY channels and large objects; tenants whose agents run as one role can see or disturb each other there";
    let advisories = lint(&admin, true).await;
    assert!(
        advisories.contains(&temporary.to_string()) && advisories.contains(&sessions.to_string()),
        "{advisories:#?}"
    );
    assert!(!lint(&admin, false).await.iter().any(|f| f.contains("advisory")), "advisories only on request");
    admin.batch_execute("REVOKE TEMPORARY ON DATABASE postgres FROM PUBLIC").await.unwrap();
    assert!(!lint(&admin, true).await.contains(&temporary.to_string()), "the fix clears it");
    admin.batch_execute("GRANT TEMPORARY ON DATABASE postgres TO PUBLIC").await.unwrap();
    // A role that may UPDATE or DELETE a shared table may LOCK it and stall every tenant;
    // PostgreSQL has no finer privilege, so the advisory asks for a transaction_timeout.
    let locks = "agent | advisory: can LOCK protected table public.ticket_notes IN ACCESS EXCLUSIVE MODE (it holds UPDATE or DELETE, as every role does on boundary.memories, run_state and cache) and stall every tenant until its transaction ends; PostgreSQL has no finer lock privilege";
    assert!(lint(&admin, true).await.contains(&locks.to_string()), "{:#?}", lint(&admin, true).await);
    // transaction_timeout is PostgreSQL 17's; before it the fix is a statement and an idle limit.
    let version: i32 = column(&admin, "SHOW server_version_num").await.unwrap()[0].parse().unwrap();
    let timeouts: &[&str] = if version >= 170000 {
        &["transaction_timeout"]
    } else {
        &["statement_timeout", "idle_in_transaction_session_timeout"]
    };
    for (i, setting) in timeouts.iter().enumerate() {
        assert_eq!(
            lint(&admin, true).await.contains(&locks.to_string()),
            i < timeouts.len(),
            "the advisory stays until every limit is set"
        );
        admin.batch_execute(&format!("ALTER ROLE agent SET {setting} = '30s'")).await.unwrap();
    }
    assert!(!lint(&admin, true).await.contains(&locks.to_string()), "the fix clears it");
    for setting in timeouts {
        admin.batch_execute(&format!("ALTER ROLE agent RESET {setting}")).await.unwrap();
    }
}

// 30 ------------------------------------------------------------------------------------------
/// Tenant ids that differ as text never share rows, whatever the tenant column's type: a
/// varchar(12) would cut both Northstars to 'northstar-de'; a type whose equality merges
/// different texts (numeric: '1.0' = '1.00') is refused; the tenant predicate stays an index
/// condition.
async fn tenant_ids_that_differ_as_text_never_share_rows() {
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE TABLE public.short_ids (tenant_id varchar(12) NOT NULL, id int NOT NULL, note text NOT NULL,
                                            PRIMARY KEY (tenant_id, id));
             SELECT count(*) FROM boundary.protect('public.short_ids');
             GRANT SELECT, INSERT ON public.short_ids TO agent",
        )
        .await
        .unwrap();
    // A row that the cut tenant id would match, as earlier data (or another path) left it.
    admin()
        .await
        .batch_execute("INSERT INTO public.short_ids VALUES ('northstar-de', 1, 'whose is this?')")
        .await
        .unwrap();
    let agent = cluster().connect("agent").await;
    for token in [dental_alice(), design_alice()] {
        begin_in(&agent, &token).await;
        assert_eq!(column(&agent, "SELECT note FROM public.short_ids").await.unwrap(), Vec::<String>::new());
        assert_refused(
            agent.batch_execute("INSERT INTO public.short_ids (id, note) VALUES (2, 'mine')").await,
            "42501",
            "new row violates row-level security policy \"boundary_insert\" for table \"short_ids\"",
        );
        agent.batch_execute("ROLLBACK").await.unwrap();
    }
    begin_in(&agent, &dental_alice()).await;
    let plan =
        column(&agent, "EXPLAIN (COSTS OFF) SELECT note FROM public.short_ids WHERE id = 1").await.unwrap();
    assert!(plan.iter().any(|line| line.contains("Index Cond") && line.contains("tenant_id")), "{plan:#?}");
    agent.batch_execute("ROLLBACK").await.unwrap();
    // A type whose equality merges ids that differ as text is refused.
    owner
        .batch_execute("CREATE TABLE public.numbered (tenant_id numeric NOT NULL, id int NOT NULL)")
        .await
        .unwrap();
    assert_refused(
        owner.batch_execute("SELECT boundary.protect('public.numbered')").await,
        "42804",
        "column \"tenant_id\" of table public.numbered has type numeric, whose equality can merge ids that \
         differ as text; use text, varchar, char, uuid, smallint, integer or bigint (or a domain over one) \
         with a deterministic collation",
    );
    // A table protected before this rule (its policies made by hand here) is reported by the lint.
    let finding = "public.numbered | tenant column tenant_id has type numeric, whose equality can merge tenant ids that differ as text";
    assert!(!lint(&admin().await, false).await.contains(&finding.to_string()));
    owner
        .batch_execute(
            "ALTER TABLE public.numbered ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY boundary_allow ON public.numbered USING (true);
             CREATE POLICY boundary_select ON public.numbered AS RESTRICTIVE USING (tenant_id = (boundary.tenant_id())::numeric);
             CREATE POLICY boundary_insert ON public.numbered AS RESTRICTIVE FOR INSERT WITH CHECK (false);
             CREATE POLICY boundary_update ON public.numbered AS RESTRICTIVE FOR UPDATE USING (false);
             CREATE POLICY boundary_delete ON public.numbered AS RESTRICTIVE FOR DELETE USING (false);
             COMMENT ON POLICY boundary_select ON public.numbered IS 'agent_boundary protect options: \
             {\"tenant_column\":\"tenant_id\",\"workspace_column\":{\"mode\":\"off\"},\"datasource_column\":{\"mode\":\"off\"},\
             \"user_column\":{\"mode\":\"off\"},\"write_roles\":[\"owner\"]}'",
        )
        .await
        .unwrap();
    assert!(
        lint(&admin().await, false).await.contains(&finding.to_string()),
        "{:#?}",
        lint(&admin().await, false).await
    );
    owner.batch_execute("DROP TABLE public.short_ids, public.numbered").await.unwrap();
}

/// The lint sees keys that answer "does another tenant have this value?" (a unique index with
/// the tenant column only in INCLUDE, an exclusion constraint without it), a renamed tenant
/// column, and a dropped TRUNCATE guard; each with a negative case.
async fn the_lint_sees_existence_oracles_renamed_columns_and_missing_guards() {
    let admin = admin().await;
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE TABLE public.contacts (tenant_id text NOT NULL, id int NOT NULL, email text NOT NULL,
                                           PRIMARY KEY (tenant_id, id));
             CREATE UNIQUE INDEX contacts_email_key ON public.contacts (email) INCLUDE (tenant_id);
             CREATE TABLE public.slots (tenant_id text NOT NULL, room text NOT NULL,
                                        EXCLUDE USING btree (room WITH =));
             CREATE TABLE public.scoped_slots (tenant_id text NOT NULL, room text NOT NULL,
                                               EXCLUDE USING btree (tenant_id WITH =, room WITH =));
             SELECT count(*) FROM boundary.protect('public.contacts');
             SELECT count(*) FROM boundary.protect('public.slots');
             SELECT count(*) FROM boundary.protect('public.scoped_slots');",
        )
        .await
        .unwrap();
    let findings = lint(&admin, false).await;
    for expected in [
        "public.contacts | unique index public.contacts_email_key does not have the tenant column tenant_id among its key columns; a duplicate-key error reveals other tenants' values",
        "public.slots | exclusion constraint slots_room_excl does not compare the tenant column tenant_id; a conflict error reveals other tenants' values",
    ] {
        assert!(findings.contains(&expected.to_string()), "{findings:#?}");
    }
    assert!(!findings.iter().any(|f| f.starts_with("public.scoped_slots")), "{findings:#?}");
    assert_eq!(
        column(&admin, "SELECT fix FROM boundary.unprotected_tables() WHERE problem LIKE 'unique index public.contacts_email_key %'")
            .await
            .unwrap(),
        ["make the key (tenant_id, ...) instead; an application that upserts with ON CONFLICT on the old key must then name the new one, or its upserts fail with 42P10"]
    );
    // Dropped guards and a policy changed by hand (with the DDL guard off, as before this
    // version), and a tenant column renamed while auto-protection was off.
    admin
        .batch_execute(
            "ALTER EVENT TRIGGER boundary_guard_drop DISABLE; ALTER EVENT TRIGGER boundary_guard_ddl DISABLE;
             ALTER EVENT TRIGGER boundary_auto_protect DISABLE",
        )
        .await
        .unwrap();
    owner
        .batch_execute(
            "DROP TRIGGER boundary_refuse_truncate ON public.contacts;
             DROP TRIGGER boundary_refuse_cascade ON public.contacts;
             ALTER POLICY boundary_select ON public.slots USING (true);
             ALTER TABLE public.scoped_slots RENAME COLUMN tenant_id TO org",
        )
        .await
        .unwrap();
    admin
        .batch_execute(
            "ALTER EVENT TRIGGER boundary_guard_drop ENABLE; ALTER EVENT TRIGGER boundary_guard_ddl ENABLE;
             ALTER EVENT TRIGGER boundary_auto_protect ENABLE",
        )
        .await
        .unwrap();
    let findings = lint(&admin, false).await;
    for expected in [
        "public.contacts | the TRUNCATE guard (trigger boundary_refuse_truncate) is missing",
        "public.contacts | the cascade guard (trigger boundary_refuse_cascade) is missing",
        "public.slots | its generated policies differ from what protect() made (changed by hand, or protected by an older version)",
        "public.scoped_slots | protect() scoped it by column tenant_id, which it no longer has (renamed or dropped); every later ALTER TABLE will fail",
    ] {
        assert!(findings.contains(&expected.to_string()), "{findings:#?}");
    }
    assert!(
        !findings.iter().any(|f| f.starts_with("public.contacts | its generated policies")),
        "{findings:#?}"
    );
    owner.batch_execute("SELECT count(*) FROM boundary.reprotect('public.slots')").await.unwrap();
    assert!(
        !lint(&admin, false).await.iter().any(|f| f.starts_with("public.slots | its generated policies")),
        "reprotect() clears it"
    );
    owner.batch_execute("DROP TABLE public.contacts, public.slots, public.scoped_slots").await.unwrap();
    // A protected table under an unprotected inheritance parent: reading the parent returns the
    // child's rows of every tenant, under the parent's (absent) policies.
    // protect() refuses it, so it takes a child protected before it inherited, with
    // auto-protection (which would re-protect it, and so refuse the ALTER) off.
    owner
        .batch_execute(
            "CREATE TABLE public.base_notes (tenant_id text NOT NULL, id int NOT NULL);
             CREATE TABLE public.child_notes () INHERITS (public.base_notes);",
        )
        .await
        .unwrap();
    assert_refused(
        owner.batch_execute("SELECT boundary.protect('public.child_notes')").await,
        "55000",
        "table public.child_notes inherits from unprotected table public.base_notes, whose reads would return \
         its rows of every tenant; protect public.base_notes (which protects its children too), or detach it first",
    );
    owner.batch_execute("ALTER TABLE public.child_notes NO INHERIT public.base_notes").await.unwrap();
    owner.batch_execute("SELECT count(*) FROM boundary.protect('public.child_notes')").await.unwrap();
    assert_refused(
        owner.batch_execute("ALTER TABLE public.child_notes INHERIT public.base_notes").await,
        "55000",
        "table public.child_notes inherits from unprotected table public.base_notes, whose reads would return \
         its rows of every tenant; protect public.base_notes (which protects its children too), or detach it first",
    );
    admin.batch_execute("ALTER EVENT TRIGGER boundary_auto_protect DISABLE").await.unwrap();
    owner.batch_execute("ALTER TABLE public.child_notes INHERIT public.base_notes").await.unwrap();
    admin.batch_execute("ALTER EVENT TRIGGER boundary_auto_protect ENABLE").await.unwrap();
    let parent = "public.base_notes | is an unprotected inheritance parent of protected table public.child_notes: reading it returns that table's rows of every tenant";
    assert!(lint(&admin, false).await.contains(&parent.to_string()), "{:#?}", lint(&admin, false).await);
    owner.batch_execute("SELECT count(*) FROM boundary.protect('public.base_notes')").await.unwrap();
    assert!(!lint(&admin, false).await.contains(&parent.to_string()), "protecting the parent clears it");
    owner.batch_execute("DROP TABLE public.base_notes CASCADE").await.unwrap();
    assert!(!lint(&admin, false).await.iter().any(|f| f.contains("contacts") || f.contains("slots")));
}

// 31 ------------------------------------------------------------------------------------------
const CASCADE_REFUSED: &str =
    "DELETE on protected table public.chunks reached a row outside the agent boundary \
                               (a cascaded or trigger-made change, which row level security does not check)";

/// Referential actions skip row level security: with a shared (unprotected) parent, one
/// tenant's delete of the parent would remove every tenant's children — langchain-postgres'
/// delete_collection(). A protected table refuses a cascaded change to a row outside the
/// boundary; a cascade that stays inside it, and a superuser's maintenance, still work.
async fn referential_actions_never_change_another_tenants_rows() {
    let admin = admin().await;
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE TABLE public.collections (uuid text PRIMARY KEY, name text NOT NULL);
             CREATE TABLE public.chunks (
                 tenant_id text NOT NULL, id int NOT NULL, doc text NOT NULL,
                 collection_id text REFERENCES public.collections ON DELETE CASCADE,
                 shelf text REFERENCES public.collections ON DELETE SET NULL,
                 PRIMARY KEY (tenant_id, id));
             SELECT count(*) FROM boundary.protect('public.chunks');
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.collections, public.chunks TO agent;",
        )
        .await
        .unwrap();
    admin
        .batch_execute(
            "INSERT INTO public.collections VALUES ('shared', 'docs'), ('dental-only', 'x'), ('maint', 'y'), ('shelf', 'z');
             INSERT INTO public.chunks VALUES
                 ('northstar-dental', 1, 'crown prices', 'shared', NULL),
                 ('northstar-design', 1, 'logo brief', 'shared', 'shelf'),
                 ('northstar-dental', 2, 'implant notes', 'dental-only', NULL),
                 ('northstar-design', 2, 'old brief', 'maint', NULL);",
        )
        .await
        .unwrap();
    let rows = || async {
        let sql =
            "SELECT tenant_id || ' ' || id || ' ' || coalesce(shelf, '-') FROM public.chunks ORDER BY 1";
        column(&cluster().connect("postgres").await, sql).await.unwrap()
    };
    let all =
        ["northstar-dental 1 -", "northstar-dental 2 -", "northstar-design 1 shelf", "northstar-design 2 -"];
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    assert_refused(
        agent.batch_execute("DELETE FROM public.collections WHERE uuid = 'shared'").await,
        "42501",
        CASCADE_REFUSED,
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    begin_in(&agent, &dental_alice()).await;
    assert_refused(
        agent.batch_execute("DELETE FROM public.collections WHERE uuid = 'shelf'").await,
        "42501",
        "UPDATE on protected table public.chunks reached a row outside the agent boundary \
         (a cascaded or trigger-made change, which row level security does not check)",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    // Outside any boundary a role under row level security cannot cascade either.
    assert_refused(
        agent.batch_execute("DELETE FROM public.collections WHERE uuid = 'shared'").await,
        "42501",
        CASCADE_REFUSED,
    );
    assert_eq!(rows().await, all, "nothing of either tenant was removed");
    // A cascade that reaches only the boundary's own rows goes through.
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("DELETE FROM public.collections WHERE uuid = 'dental-only'").await.unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    // A superuser's maintenance outside any boundary is not a tenant's request.
    admin.batch_execute("DELETE FROM public.collections WHERE uuid = 'maint'").await.unwrap();
    assert_eq!(rows().await, ["northstar-dental 1 -", "northstar-design 1 shelf"]);
    // The lint names foreign keys with referential actions towards unprotected parents; a plain
    // reference to a shared catalog is not one.
    let findings = lint(&admin, false).await;
    for expected in [
        "public.chunks | foreign key chunks_collection_id_fkey to unprotected table public.collections has ON DELETE CASCADE: a change to a shared parent row reaches every tenant's rows (agent_boundary refuses it when it reaches another tenant's row, so the parent's change fails)",
        "public.chunks | foreign key chunks_shelf_fkey to unprotected table public.collections has ON DELETE SET NULL: a change to a shared parent row reaches every tenant's rows (agent_boundary refuses it when it reaches another tenant's row, so the parent's change fails)",
    ] {
        assert!(findings.contains(&expected.to_string()), "{findings:#?}");
    }
    owner
        .batch_execute(
            "ALTER TABLE public.chunks DROP CONSTRAINT chunks_collection_id_fkey, DROP CONSTRAINT chunks_shelf_fkey,
                 ADD FOREIGN KEY (collection_id) REFERENCES public.collections NOT VALID")
        .await
        .unwrap();
    assert!(
        !lint(&admin, false).await.iter().any(|f| f.starts_with("public.chunks")),
        "{:#?}",
        lint(&admin, false).await
    );
    owner.batch_execute("DROP TABLE public.chunks, public.collections").await.unwrap();
}

// 32 ------------------------------------------------------------------------------------------
const DDL_HINT: &str = "Run schema changes outside agent boundaries, as a role agents never connect as.";

/// A role that owns a protected table and runs inside a boundary (a framework's reset() or
/// migration, model-written SQL) cannot drop the table or its scope column, validate
/// constraints or build indexes over every tenant's rows, or take the generated policies and
/// guards apart; outside a boundary the owner keeps a supported way to change the schema, and
/// tampering with the generated objects is refused there too.
async fn owner_ddl_inside_a_boundary_is_refused() {
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE TABLE public.memories_v1 (tenant_id text NOT NULL, id int NOT NULL, body text NOT NULL,
                                              PRIMARY KEY (tenant_id, id));
             SELECT count(*) FROM boundary.protect('public.memories_v1');",
        )
        .await
        .unwrap();
    admin()
        .await
        .batch_execute("INSERT INTO public.memories_v1 VALUES ('northstar-dental', 1, 'a'), ('northstar-design', 1, 'b')")
        .await
        .unwrap();
    let inside = |sql: &'static str| {
        let owner = &owner;
        async move {
            begin_in(owner, &dental_alice()).await;
            let result = owner.batch_execute(sql).await;
            owner.batch_execute("ROLLBACK").await.unwrap();
            result
        }
    };
    let refused = |tag: &str| {
        format!("{tag} on protected table public.memories_v1 is refused inside an agent boundary: it would read, check or rewrite every tenant's rows, or take its protection apart")
    };
    for (sql, tag) in [
        ("DROP TABLE public.memories_v1", "DROP TABLE"),
        ("ALTER TABLE public.memories_v1 ADD CHECK (length(body) < 100)", "ALTER TABLE"),
        ("ALTER TABLE public.memories_v1 ADD FOREIGN KEY (tenant_id, id) REFERENCES public.tickets (tenant_id, id) NOT VALID", "ALTER TABLE"),
        ("CREATE INDEX ON public.memories_v1 (lower(body))", "CREATE INDEX"),
        ("ALTER TABLE public.memories_v1 DROP COLUMN tenant_id CASCADE", "ALTER TABLE"),
        ("DROP POLICY boundary_select ON public.memories_v1", "DROP POLICY"),
        ("DROP TRIGGER boundary_refuse_truncate ON public.memories_v1", "DROP TRIGGER"),
    ] {
        let err = assert_refused(inside(sql).await, "42501", &refused(tag));
        assert_eq!(err.hint(), Some(DDL_HINT), "{sql}");
    }
    // Generated objects are changed only by protect(), reprotect() and unprotect(), also outside
    // a boundary.
    for (sql, message) in [
        ("ALTER POLICY boundary_select ON public.memories_v1 USING (true)",
         "ALTER POLICY on boundary_select of protected table public.memories_v1 is refused: agent_boundary generates it"),
        ("DROP POLICY boundary_select ON public.memories_v1",
         "DROP POLICY on boundary_select of protected table public.memories_v1 is refused: agent_boundary generates it"),
        ("DROP TRIGGER boundary_refuse_truncate ON public.memories_v1",
         "DROP TRIGGER on boundary_refuse_truncate of protected table public.memories_v1 is refused: agent_boundary generates it"),
        ("ALTER TABLE public.memories_v1 DROP COLUMN tenant_id CASCADE",
         "ALTER TABLE on boundary_delete of protected table public.memories_v1 is refused: agent_boundary generates it"),
    ] {
        let err = assert_refused(owner.batch_execute(sql).await, "42501", message);
        assert_eq!(err.hint(), Some("Use boundary.unprotect() to stop protecting the table, and boundary.reprotect() to rebuild its protection."), "{sql}");
    }
    // Outside a boundary the owner changes the schema. PostgreSQL validates a foreign key under
    // the owner's row level security (so it would fail here, and inside a boundary check one
    // tenant's rows); boundary.validate_constraint() checks every tenant's rows: here it finds
    // Design's row whose ticket is gone.
    let add_key = "ALTER TABLE public.memories_v1 ADD FOREIGN KEY (tenant_id, id) REFERENCES public.tickets (tenant_id, id) NOT VALID";
    owner.batch_execute(add_key).await.unwrap();
    owner
        .batch_execute(
            "SELECT boundary.validate_constraint('public.memories_v1', 'memories_v1_tenant_id_id_fkey')",
        )
        .await
        .unwrap();
    owner.batch_execute("CREATE INDEX ON public.memories_v1 (lower(body))").await.unwrap();
    admin()
        .await
        .batch_execute("INSERT INTO public.tickets VALUES ('northstar-design', 9, 'orphan-to-be')")
        .await
        .unwrap();
    admin()
        .await
        .batch_execute("INSERT INTO public.memories_v1 VALUES ('northstar-design', 9, 'c')")
        .await
        .unwrap();
    owner
        .batch_execute("ALTER TABLE public.memories_v1 DROP CONSTRAINT memories_v1_tenant_id_id_fkey")
        .await
        .unwrap();
    admin().await.batch_execute("DELETE FROM public.tickets WHERE id = 9").await.unwrap();
    owner.batch_execute(add_key).await.unwrap();
    assert_refused(
        owner.batch_execute("SELECT boundary.validate_constraint('public.memories_v1', 'memories_v1_tenant_id_id_fkey')").await,
        "23503",
        "insert or update on table \"memories_v1\" violates foreign key constraint \"memories_v1_tenant_id_id_fkey\"",
    );
    assert_refused(
        cluster()
            .connect("agent")
            .await
            .batch_execute(
                "SELECT boundary.validate_constraint('public.memories_v1', 'memories_v1_tenant_id_id_fkey')",
            )
            .await,
        "42501",
        "boundary.validate_constraint() is for the owner of table public.memories_v1",
    );
    assert_refused(
        inside("SELECT boundary.validate_constraint('public.memories_v1', 'memories_v1_tenant_id_id_fkey')")
            .await,
        "42501",
        &refused("VALIDATE CONSTRAINT"),
    );
    owner.batch_execute("DROP TABLE public.memories_v1").await.unwrap();
    // The lint sees agents that must be connecting as an owner: a protected table no other
    // role can use, and a login role that is a member of an owner.
    let admin = admin().await;
    admin
        .batch_execute(
            "CREATE ROLE solo_owner LOGIN NOBYPASSRLS; GRANT CREATE ON SCHEMA public TO solo_owner;
             SET ROLE solo_owner;
             CREATE TABLE public.solo_notes (tenant_id text NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
             SELECT count(*) FROM boundary.protect('public.solo_notes');
             RESET ROLE;
             CREATE ROLE helper LOGIN IN ROLE tickets_owner;",
        )
        .await
        .unwrap();
    let findings = lint(&admin, false).await;
    assert!(findings.contains(&"public.solo_notes | no role but its owner solo_owner can read or write it, so agents must be connecting as the owner, who can take its protection apart".to_string()), "{findings:#?}");
    let member = "helper | can log in and is a member of tickets_owner, which owns protected table public.";
    let suffix = ": its sessions take on the owner's rights and can take the table's protection apart";
    assert!(findings.iter().any(|f| f.starts_with(member) && f.ends_with(suffix)), "{findings:#?}");
    assert!(
        !findings.iter().any(|f| f.starts_with("public.tickets") || f.starts_with("agent ")),
        "{findings:#?}"
    );
    admin.batch_execute("GRANT SELECT ON public.solo_notes TO agent; DROP ROLE helper;").await.unwrap();
    let findings = lint(&admin, false).await;
    assert!(
        !findings.iter().any(|f| f.contains("solo_") || f.starts_with("helper")),
        "the fixes clear them: {findings:#?}"
    );
    admin
        .batch_execute(
            "DROP TABLE public.solo_notes; REVOKE CREATE ON SCHEMA public FROM solo_owner; DROP ROLE solo_owner;",
        )
        .await
        .unwrap();
}

/// The lint follows views to any depth (a materialized view over a security_invoker view over a
/// protected table holds every tenant's rows) and names tables that auto-protection skipped for
/// want of a tenant column; each with a negative case.
async fn the_lint_sees_views_at_any_depth_and_tables_auto_protection_skipped() {
    let admin = admin().await;
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE VIEW public.open_tickets WITH (security_invoker = true) AS SELECT * FROM public.tickets;
             CREATE VIEW public.open_tickets_2 WITH (security_invoker = true) AS SELECT * FROM public.open_tickets;
             CREATE MATERIALIZED VIEW public.ticket_digest AS SELECT id, subject FROM public.open_tickets_2 WITH NO DATA;
             CREATE VIEW public.ticket_subjects AS SELECT subject FROM public.open_tickets;",
        )
        .await
        .unwrap();
    let findings = lint(&admin, false).await;
    for expected in [
        "public.ticket_digest | materialized view holds rows of every tenant of protected table public.tickets; row level security does not apply to it",
        "public.ticket_subjects | view reads protected table public.tickets with its owner's rights (security_invoker is off)",
    ] {
        assert!(findings.contains(&expected.to_string()), "{findings:#?}");
    }
    assert!(!findings.iter().any(|f| f.starts_with("public.open_tickets")), "{findings:#?}");
    owner
        .batch_execute(
            "DROP MATERIALIZED VIEW public.ticket_digest; ALTER VIEW public.ticket_subjects SET (security_invoker = true)",
        )
        .await
        .unwrap();
    assert!(!lint(&admin, false).await.iter().any(|f| f.contains("ticket_")), "the fixes clear them");
    owner
        .batch_execute("DROP VIEW public.ticket_subjects, public.open_tickets_2, public.open_tickets")
        .await
        .unwrap();
    // A framework's table born without a tenant column in an auto-protected schema.
    admin
        .batch_execute(
            "CREATE SCHEMA agents AUTHORIZATION tickets_owner;
             ALTER DATABASE postgres SET agent_boundary.auto_protect_schemas = 'agents'",
        )
        .await
        .unwrap();
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE TABLE agents.checkpoints (thread_id text PRIMARY KEY, checkpoint jsonb);
             CREATE TABLE agents.store (tenant_id text NOT NULL, key text NOT NULL, PRIMARY KEY (tenant_id, key));",
        )
        .await
        .unwrap();
    // (A new session: ALTER DATABASE SET reaches sessions that start after it.)
    let findings = lint(&cluster().connect("postgres").await, false).await;
    assert!(
        findings.contains(&"agents.checkpoints | is in agent_boundary.auto_protect_schemas but has no tenant_id column, so it is not protected".to_string()),
        "{findings:#?}"
    );
    assert!(!findings.iter().any(|f| f.starts_with("agents.store")), "auto-protected: {findings:#?}");
    admin
        .batch_execute(
            "ALTER DATABASE postgres RESET agent_boundary.auto_protect_schemas; DROP SCHEMA agents CASCADE",
        )
        .await
        .unwrap();
}

// 29 ------------------------------------------------------------------------------------------
const ANOTHER_PRINCIPAL: &str = "this transaction already serves another agent principal; one transaction \
                                 serves one tenant, workspace and user";

async fn a_transaction_serves_one_principal() {
    let agent = cluster().connect("agent").await;
    let refused = |how: &str| format!("boundary.{how}() refused: {ANOTHER_PRINCIPAL}");
    // Inside a savepoint: refused, and the outer boundary is intact.
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("SAVEPOINT s").await.unwrap();
    assert_refused(enter(&agent, &design_alice()).await, "42501", &refused("enter"));
    agent.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    assert_eq!(tickets(&agent).await.unwrap(), DENTAL);
    agent.batch_execute("ROLLBACK").await.unwrap();
    // After exit(): the transaction still served Dental.
    begin_in(&agent, &dental_alice()).await;
    agent.batch_execute("SELECT boundary.exit()").await.unwrap();
    assert_refused(enter(&agent, &design_alice()).await, "42501", &refused("enter"));
    agent.batch_execute("ROLLBACK").await.unwrap();
    // Entered inside a savepoint that is then released: the principal stays with the transaction.
    agent.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    agent.batch_execute("RELEASE SAVEPOINT s; SAVEPOINT t").await.unwrap();
    assert_refused(enter(&agent, &design_alice()).await, "42501", &refused("enter"));
    agent.batch_execute("ROLLBACK TO SAVEPOINT t").await.unwrap();
    assert_eq!(tickets(&agent).await.unwrap(), DENTAL);
    agent.batch_execute("ROLLBACK").await.unwrap();
    // A rolled-back savepoint does not free the transaction either.
    agent.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    agent.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    assert_refused(enter(&agent, &design_alice()).await, "42501", &refused("enter"));
    agent.batch_execute("ROLLBACK").await.unwrap();
    // resume() of another principal's job: the same rule.
    let design_job = {
        let worker = cluster().connect("agent").await;
        begin_in(&worker, &design_alice()).await;
        let job = column(&worker, "SELECT boundary.snapshot('10 minutes')").await.unwrap().remove(0);
        worker.batch_execute("COMMIT").await.unwrap();
        job
    };
    begin_in(&agent, &dental_alice()).await;
    assert_refused(
        agent.query_typed_one("SELECT boundary.resume($1)::text", &[(&design_job, Type::TEXT)]).await,
        "42501",
        &refused("resume"),
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    // The same principal may enter again: a refreshed token with narrower tools.
    begin_in(&agent, &dental_alice()).await;
    let narrower =
        app_token("northstar-dental", "support", "alice", "admin", json!({"tool_ids": ["search"]}));
    enter(&agent, &narrower).await.unwrap();
    assert_eq!(column(&agent, "SELECT boundary.tool_ids()::text").await.unwrap(), ["{search}"]);
    agent.batch_execute("COMMIT").await.unwrap();
    // The next transaction on the connection serves whoever enters it.
    begin_in(&agent, &design_alice()).await;
    assert_eq!(tickets(&agent).await.unwrap(), DESIGN);
    agent.batch_execute("COMMIT").await.unwrap();
}

/// Two requests sharing one connection, the second nested in the first's transaction (what
/// `with conn.transaction():` does when a framework reuses a connection): the second request's
/// enter fails, and nothing is written as the wrong tenant.
async fn nested_requests_on_one_connection_cannot_switch_tenant() {
    let mut conn = cluster().connect("agent").await;
    let mut request_a = conn.transaction().await.unwrap();
    request_a.query_typed("SELECT boundary.enter($1)::text", &[(&dental_alice(), Type::TEXT)]).await.unwrap();
    {
        let request_b = request_a.savepoint("request_b").await.unwrap();
        assert_refused(
            request_b.query_typed("SELECT boundary.enter($1)::text", &[(&design_alice(), Type::TEXT)]).await,
            "42501",
            &format!("boundary.enter() refused: {ANOTHER_PRINCIPAL}"),
        );
        request_b.rollback().await.unwrap();
    }
    request_a
        .batch_execute("INSERT INTO public.tickets (id, subject) VALUES (50, 'written by request A')")
        .await
        .unwrap();
    request_a.commit().await.unwrap();
    let admin = admin().await;
    assert_eq!(
        column(&admin, "SELECT tenant_id FROM public.tickets WHERE id = 50").await.unwrap(),
        ["northstar-dental"],
        "request A's row belongs to request A's tenant, and nothing was written as Design"
    );
    admin.batch_execute("DELETE FROM public.tickets WHERE id = 50").await.unwrap();
}

// 14 ------------------------------------------------------------------------------------------
async fn reset_role_does_not_change_the_boundary() {
    let app = cluster().connect("app").await;
    app.batch_execute("SET ROLE agent").await.unwrap();
    begin_in(&app, &design_alice()).await;
    assert_eq!(tickets(&app).await.unwrap(), DESIGN);
    app.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(column(&app, "SELECT current_user").await.unwrap(), ["app"]);
    assert_eq!(tickets(&app).await.unwrap(), DESIGN, "still the boundary's rows, as the login role");
    app.batch_execute("SET ROLE agent; RESET ROLE; SET SESSION AUTHORIZATION DEFAULT").await.unwrap();
    assert_eq!(tickets(&app).await.unwrap(), DESIGN);
    app.batch_execute("COMMIT").await.unwrap();
    assert_refused(tickets(&app).await, "42501", NO_BOUNDARY);
}

// 15 ------------------------------------------------------------------------------------------
async fn pooled_clients_never_share_a_boundary_on_protected_tables() {
    let bouncer = Pgbouncer::start(cluster(), "transaction", 1, &["agent"]);
    let first = bouncer.connect("agent").await;
    let second = bouncer.connect("agent").await;
    for token in [dental_alice(), design_alice()] {
        begin_in(&first, &token).await;
        first.batch_execute("INSERT INTO public.tickets (id, subject) VALUES (99, 'scratch')").await.unwrap();
        assert_eq!(tickets(&first).await.unwrap().len(), 4);
        first.batch_execute("ROLLBACK").await.unwrap();
        assert_refused(tickets(&second).await, "42501", NO_BOUNDARY);
        assert_refused(
            second.batch_execute("INSERT INTO public.tickets (id, subject) VALUES (98, 'no boundary')").await,
            "42501",
            NO_BOUNDARY,
        );
    }
}

// 16 ------------------------------------------------------------------------------------------
async fn search_path_tricks_do_not_reach_security_definer_code_or_policies() {
    let admin = admin().await;
    assert_eq!(
        column(
            &admin,
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'boundary'::regnamespace AND prosecdef
                AND NOT coalesce(proconfig @> '{\"search_path=pg_catalog, pg_temp\"}', false)"
        )
        .await
        .unwrap(),
        ["0"]
    );
    let agent = cluster().connect("agent").await;
    // Shadows planted inside a boundary (a session holding them cannot enter one), then a forged
    // token whose key exists only in the shadow table.
    begin_in(&agent, &dental_alice()).await;
    agent
        .batch_execute(
            "CREATE TEMP TABLE signing_keys (kid text, alg text, verify_key bytea, signing_key bytea, retired_at timestamptz);
             INSERT INTO signing_keys VALUES ('forged', 'HS256', convert_to('attacker-chosen-secret-0123456789abcdef', 'UTF8'), NULL, NULL);
             CREATE TEMP TABLE principals (tenant_id text, workspace_id text, user_id text, role text, plan text,
                                          region text, tool_ids text[], datasource_ids text[], revoked_at timestamptz);
             CREATE FUNCTION pg_temp.tenant_id() RETURNS text LANGUAGE sql AS $$ SELECT 'northstar-design' $$;
             SET LOCAL search_path = pg_temp, boundary, public, pg_catalog;
             SAVEPOINT forging",
        )
        .await
        .unwrap();
    let forged = sign_raw(
        &json!({"tenant_id": "northstar-design", "workspace_id": "support", "user_id": "alice", "role": "owner",
                "iat": now(), "exp": now() + 60}),
        "forged",
        b"attacker-chosen-secret-0123456789abcdef",
    );
    assert_refused(
        enter(&agent, &forged).await,
        "28000",
        "agent boundary token refused: signed with an unknown or retired key id \"forged\"",
    );
    agent.batch_execute("ROLLBACK TO SAVEPOINT forging").await.unwrap();
    assert_eq!(tickets(&agent).await.unwrap(), DENTAL, "policies call boundary.tenant_id() by oid");
    agent.batch_execute("ROLLBACK").await.unwrap();
}

// 17 ------------------------------------------------------------------------------------------
async fn partitions_and_children_read_directly_are_protected() {
    let owner = cluster().connect("tickets_owner").await;
    owner
        .batch_execute(
            "CREATE TABLE public.events (tenant_id text NOT NULL, id int NOT NULL, kind text NOT NULL,
                                         PRIMARY KEY (tenant_id, id)) PARTITION BY LIST (tenant_id);
             CREATE TABLE public.events_dental PARTITION OF public.events FOR VALUES IN ('northstar-dental');
             SELECT boundary.protect('public.events');
             CREATE TABLE public.events_design PARTITION OF public.events FOR VALUES IN ('northstar-design');
             GRANT SELECT, INSERT ON public.events, public.events_dental, public.events_design TO agent",
        )
        .await
        .unwrap();
    let admin = admin().await;
    admin
        .batch_execute("INSERT INTO public.events VALUES ('northstar-dental', 1, 'login'), ('northstar-design', 2, 'export')")
        .await
        .unwrap();
    let agent = cluster().connect("agent").await;
    begin_in(&agent, &dental_alice()).await;
    assert_eq!(
        column(&agent, "SELECT count(*) FROM public.events_design").await.unwrap(),
        ["0"],
        "partition made after protect()"
    );
    assert_eq!(column(&agent, "SELECT kind FROM public.events_dental").await.unwrap(), ["login"]);
    assert_eq!(column(&agent, "SELECT kind FROM public.events").await.unwrap(), ["login"]);
    assert_refused(
        agent
            .batch_execute("INSERT INTO public.events_design VALUES ('northstar-design', 3, 'planted')")
            .await,
        "42501",
        "new row violates row-level security policy \"boundary_insert\" for table \"events_design\"",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(lint(&admin, false).await, Vec::<String>::new());
    admin.batch_execute("DROP TABLE public.events").await.unwrap();
}

// 18 ------------------------------------------------------------------------------------------
async fn pg_dump_and_replication_as_the_agent_role_fail_closed() {
    let bin = pg_bin_dir();
    let port = cluster().port.to_string();
    let dump = |extra: &[&str]| {
        std::process::Command::new(bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "agent",
                "-d",
                "postgres",
                "-t",
                "public.tickets",
                "--data-only",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = dump(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("query would be affected by row-level security policy for table \"tickets\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dump(&["--enable-row-security"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(NO_BOUNDARY),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Renewal risk"));
    let replication = std::process::Command::new(bin.join("psql"))
        .arg(format!("host=127.0.0.1 port={port} user=agent dbname=postgres replication=database"))
        .args(["-X", "-c", "IDENTIFY_SYSTEM"])
        .output()
        .unwrap();
    assert!(!replication.status.success());
    assert!(
        String::from_utf8_lossy(&replication.stderr).contains("permission denied to start WAL sender"),
        "{}",
        String::from_utf8_lossy(&replication.stderr)
    );
}

// 19 ------------------------------------------------------------------------------------------
async fn tokens_never_reach_query_text_or_the_server_log() {
    let agent = cluster().connect("agent").await;
    let token = dental_alice();
    begin_in(&agent, &token).await;
    let pid = column(&agent, "SELECT pg_backend_pid()").await.unwrap().remove(0);
    let admin = admin().await;
    let activity =
        column(&admin, &format!("SELECT query FROM pg_stat_activity WHERE pid = {pid}")).await.unwrap();
    assert_eq!(activity, ["SELECT pg_backend_pid()"]);
    agent.batch_execute("ROLLBACK").await.unwrap();
    // A refused token: neither the error nor the log repeats it.
    let tampered = format!("{}x", token);
    let err = enter(&agent, &tampered).await.unwrap_err();
    assert!(!err.as_db_error().unwrap().message().contains(&token[..40]));
    admin.batch_execute("SELECT pg_catalog.pg_sleep(0.2)").await.unwrap();
    assert!(!cluster().log().contains(&token[..40]), "the token is in the server log");
    assert!(cluster().log().contains("agent boundary token refused"), "the refusal itself is logged");
}

// 22 ------------------------------------------------------------------------------------------
async fn installing_into_a_pre_created_schema_fails_cleanly() {
    let admin = admin().await;
    for statement in
        ["CREATE ROLE mallory LOGIN", "CREATE DATABASE hostile OWNER mallory", "CREATE DATABASE shadowed"]
    {
        admin.batch_execute(statement).await.unwrap();
    }
    let mallory = cluster().connect_to("mallory", "hostile").await;
    mallory.batch_execute("CREATE SCHEMA boundary").await.unwrap();
    let superuser = cluster().connect_to("postgres", "hostile").await;
    let refused = assert_refused(
        superuser.batch_execute("CREATE EXTENSION agent_boundary CASCADE").await,
        "42P06",
        "schema \"boundary\" already exists (owner mallory, 0 objects); agent_boundary will not install into it",
    );
    assert_eq!(
        refused.hint(),
        Some("Find out who created schema \"boundary\" and why, drop or rename it, then run CREATE EXTENSION again.")
    );
    let shadowed = cluster().connect_to("postgres", "shadowed").await;
    shadowed
        .batch_execute("CREATE SCHEMA boundary; CREATE FUNCTION boundary.tenant_id() RETURNS text LANGUAGE sql AS $$ SELECT 'northstar-design' $$")
        .await
        .unwrap();
    assert_refused(
        shadowed.batch_execute("CREATE EXTENSION agent_boundary CASCADE").await,
        "42P06",
        "schema \"boundary\" already exists (owner postgres, 1 objects); agent_boundary will not install into it",
    );
    assert_eq!(
        column(&shadowed, "SELECT count(*) FROM pg_extension WHERE extname = 'agent_boundary'")
            .await
            .unwrap(),
        ["0"]
    );
    drop((mallory, superuser, shadowed));
    for statement in
        ["DROP DATABASE hostile WITH (FORCE)", "DROP DATABASE shadowed WITH (FORCE)", "DROP ROLE mallory"]
    {
        admin.batch_execute(statement).await.unwrap();
    }
}

// DROP EXTENSION ... CASCADE takes the generated policies with it. What is left must deny every
// row (row level security stays on and forced, with no policy admitting anything), never admit
// every row through a leftover permissive policy; protecting again after re-creating the
// extension restores each tenant's rows.
async fn dropping_the_extension_leaves_protected_tables_denying_everything() {
    let admin = admin().await;
    admin.batch_execute("CREATE DATABASE dropped").await.unwrap();
    let owner = cluster().connect_to("postgres", "dropped").await;
    owner
        .batch_execute(
            "CREATE EXTENSION agent_boundary CASCADE;
             SELECT boundary.generate_signing_key('drop-test');
             SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin');
             CREATE TABLE notes (tenant_id text NOT NULL, workspace_id text NOT NULL, body text);
             SELECT count(*) FROM boundary.protect('notes');
             INSERT INTO notes VALUES ('northstar-dental', 'support', 'dental note'),
                                      ('northstar-design', 'support', 'design note');
             GRANT SELECT, INSERT ON notes TO agent;",
        )
        .await
        .unwrap();
    // A table protected by an earlier release: its allow policy is a bare true (with the
    // fingerprint of that, as the release recorded it).
    owner
        .batch_execute(
            "CREATE TABLE legacy_notes (tenant_id text NOT NULL, body text);
             SELECT count(*) FROM boundary.protect('legacy_notes');
             ALTER EVENT TRIGGER boundary_guard_ddl DISABLE;
             ALTER POLICY boundary_allow ON legacy_notes USING (true) WITH CHECK (true);
             ALTER EVENT TRIGGER boundary_guard_ddl ENABLE;
             DO $$ BEGIN EXECUTE format('COMMENT ON POLICY boundary_allow ON legacy_notes IS %L',
                 'agent_boundary policies fingerprint: ' || boundary.policies_fingerprint('legacy_notes')); END $$;",
        )
        .await
        .unwrap();
    assert_eq!(
        lint(&owner, false).await,
        ["public.legacy_notes | boundary_allow admits rows without depending on the extension: DROP EXTENSION ... \
          CASCADE would leave it admitting every row"]
    );
    owner.batch_execute("SELECT count(*) FROM boundary.reprotect('legacy_notes')").await.unwrap();
    assert_eq!(lint(&owner, false).await, Vec::<String>::new());
    owner.batch_execute("DROP EXTENSION agent_boundary CASCADE").await.unwrap();

    assert_eq!(
        column(
            &owner,
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'notes'::regclass"
        )
        .await
        .unwrap(),
        ["t"]
    );
    let agent = cluster().connect_to("agent", "dropped").await;
    assert_eq!(column(&agent, "SELECT body FROM notes").await.unwrap(), Vec::<String>::new());
    assert_refused(
        agent.batch_execute("INSERT INTO notes VALUES ('northstar-design', 'support', 'planted')").await,
        "42501",
        "new row violates row-level security policy for table \"notes\"",
    );
    owner
        .batch_execute(
            "CREATE EXTENSION agent_boundary CASCADE; SELECT count(*) FROM boundary.protect('notes')",
        )
        .await
        .unwrap();
    assert_eq!(column(&owner, "SELECT count(*) FROM notes").await.unwrap(), ["2"], "nothing was lost");
    drop((owner, agent));
    admin.batch_execute("DROP DATABASE dropped WITH (FORCE)").await.unwrap();
}

// The kit's CI lint script, pointed at this database.
async fn the_ci_lint_script_fails_on_findings() {
    let run = || {
        std::process::Command::new(pg_bin_dir().join("psql"))
            .arg(format!("host=127.0.0.1 port={} user=postgres dbname=postgres", cluster().port))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ci_lint.sql"))
            .output()
            .unwrap()
    };
    let clean = run();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    let admin = admin().await;
    admin.batch_execute("CREATE TABLE public.forgotten (tenant_id text, body text)").await.unwrap();
    let dirty = run();
    admin.batch_execute("DROP TABLE public.forgotten").await.unwrap();
    assert_eq!(dirty.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&dirty.stdout).contains("SELECT boundary.protect('public.forgotten');"));
    assert!(String::from_utf8_lossy(&dirty.stderr)
        .contains("agent_boundary lint: 1 finding(s), listed above with their fixes"));
}

// 20 ------------------------------------------------------------------------------------------
async fn parallel_workers_apply_generated_policies() {
    let agent = cluster().connect("agent").await;
    agent
        .batch_execute(
            "SET debug_parallel_query = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0",
        )
        .await
        .unwrap();
    begin_in(&agent, &design_alice()).await;
    let plan =
        column(&agent, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM public.tickets")
            .await
            .unwrap()
            .join("\n");
    assert!(plan.contains("Workers Launched: 1"), "{plan}");
    assert_eq!(tickets(&agent).await.unwrap(), DESIGN);
    agent.batch_execute("COMMIT").await.unwrap();
    assert_refused(tickets(&agent).await, "42501", NO_BOUNDARY);
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    start_shared_cluster("attacks", FIXTURE);
    let trials = trials![
        owner_without_bypassrls_is_held_by_forced_rls,
        roles_that_bypass_rls_are_flagged_by_the_lint,
        views_over_protected_tables_check_the_callers_policies,
        a_leaky_function_only_ever_sees_the_boundarys_rows,
        planner_statistics_of_protected_tables_are_hidden,
        explain_counts_are_reported_and_avoided_by_the_tenant_index,
        unique_keys_that_include_the_tenant_reveal_nothing,
        foreign_keys_cannot_link_across_tenants,
        copy_truncate_and_whole_table_paths,
        upsert_and_merge_cannot_reach_another_tenants_rows,
        prepared_statements_generic_plans_functions_and_ctes_follow_the_current_boundary,
        cursors_never_carry_rows_across_boundaries,
        planted_temporary_shadows_never_run_inside_extension_sql,
        objects_planted_on_a_pooled_connection_never_answer_the_next_boundary,
        what_one_role_shares_across_tenants_is_reported,
        tenant_ids_that_differ_as_text_never_share_rows,
        the_lint_sees_existence_oracles_renamed_columns_and_missing_guards,
        the_lint_sees_views_at_any_depth_and_tables_auto_protection_skipped,
        referential_actions_never_change_another_tenants_rows,
        owner_ddl_inside_a_boundary_is_refused,
        a_transaction_serves_one_principal,
        nested_requests_on_one_connection_cannot_switch_tenant,
        reset_role_does_not_change_the_boundary,
        pooled_clients_never_share_a_boundary_on_protected_tables,
        search_path_tricks_do_not_reach_security_definer_code_or_policies,
        partitions_and_children_read_directly_are_protected,
        pg_dump_and_replication_as_the_agent_role_fail_closed,
        tokens_never_reach_query_text_or_the_server_log,
        parallel_workers_apply_generated_policies,
        installing_into_a_pre_created_schema_fails_cleanly,
        dropping_the_extension_leaves_protected_tables_denying_everything,
        the_ci_lint_script_fails_on_findings,
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
