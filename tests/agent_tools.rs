//! Tool arguments, jobs and the audit trail, from a real client against a real server with the
//! lookalike tenants. The seed's five prompts become SQL-level attempts; each is refused or
//! answered only from the right tenant. Runs in order: the last trial searches the audit table
//! and the server log for every private note written here.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use support::*;
use tokio_postgres::types::Type;

/// Every note's text starts with this, so the last trial can look for any of it.
const PRIVATE: &str = "PRIVATE-NOTE";

const FIXTURE: &str = "
CREATE ROLE agent LOGIN NOBYPASSRLS;
SELECT boundary.register_principal('northstar-dental', 'sales', 'alice', 'admin', 'pro', 'us', ARRAY['search'], ARRAY['tickets']);
CREATE TABLE public.notes (
    tenant_id    text   NOT NULL,
    workspace_id text   NOT NULL,
    id           bigint PRIMARY KEY,
    customer     text   NOT NULL,
    body         text   NOT NULL,
    renewal_date date
);
SELECT count(*) FROM boundary.protect('public.notes');
GRANT SELECT, UPDATE ON public.notes TO agent;
INSERT INTO public.notes VALUES
    ('northstar-dental', 'support', 1, 'Northstar Dental', 'PRIVATE-NOTE dental: renewal risk, billing dispute over imaging fees', NULL),
    ('northstar-dental', 'support', 2, 'Northstar Dental', 'PRIVATE-NOTE dental: crown fitting follow-up', NULL),
    ('northstar-dental', 'sales',   3, 'Northstar Dental', 'PRIVATE-NOTE dental sales: discount offered for renewal', NULL),
    ('northstar-design', 'support', 4, 'Northstar Design', 'PRIVATE-NOTE design: renewal risk, slow feedback on brand guide', NULL),
    ('northstar-design', 'support', 5, 'Northstar Design', 'PRIVATE-NOTE design: renewal moved to 2027-06-30', NULL);";

async fn as_agent(token: &str) -> Client {
    let agent = cluster().connect("agent").await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, token).await.unwrap();
    agent
}

async fn assert_in(client: &Client, id: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows =
        client.query_typed("SELECT boundary.assert_in('public.notes', $1)", &[(&id, Type::TEXT)]).await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

async fn summarize_northstars_renewal_risk() {
    // "Summarize Northstar's renewal risk": each Northstar gets its own notes, never the other's.
    for (token, own) in [(dental_alice(), "dental: renewal risk"), (design_alice(), "design: renewal risk")] {
        let agent = as_agent(&token).await;
        let found = column(&agent, "SELECT body FROM notes WHERE body ILIKE '%renewal risk%' ORDER BY id")
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains(own), "{found:?}");
    }
}

async fn use_the_previous_customer_note() {
    // "Use the previous customer note...": the note Design's agent remembered is not Dental's to use.
    let design = as_agent(&design_alice()).await;
    design
        .batch_execute("SELECT boundary.memory_set('previous_customer_note', '{\"note_id\": 5}')")
        .await
        .unwrap();
    design.batch_execute("COMMIT").await.unwrap();
    let dental = as_agent(&dental_alice()).await;
    assert_eq!(
        column(&dental, "SELECT coalesce(boundary.memory_get('previous_customer_note')::text, 'none')")
            .await
            .unwrap(),
        ["none"]
    );
    // Even told the id outright, the tool check refuses it, exactly as for an id that does not exist.
    let other = assert_refused(
        assert_in(&dental, "5").await,
        "42501",
        "resource public.notes:5 is outside current boundary",
    );
    assert!(other.detail().is_none());
    dental.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&dental, &dental_alice()).await.unwrap();
    assert_refused(
        assert_in(&dental, "99999").await,
        "42501",
        "resource public.notes:99999 is outside current boundary",
    );
    dental.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&dental, &dental_alice()).await.unwrap();
    assert_refused(
        assert_in(&dental, "not-an-id").await,
        "42501",
        "resource public.notes:not-an-id is outside current boundary",
    );
    dental.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&dental, &dental_alice()).await.unwrap();
    assert_eq!(assert_in(&dental, "1").await.unwrap(), ["1"]);
}

async fn find_the_document_from_the_other_northstar_workspace() {
    // Dental's support agent asks for Dental's sales-workspace note (id 3): same tenant, other workspace.
    let agent = as_agent(&dental_alice()).await;
    assert_eq!(column(&agent, "SELECT count(*) FROM notes WHERE id = 3").await.unwrap(), ["0"]);
    assert_refused(
        assert_in(&agent, "3").await,
        "42501",
        "resource public.notes:3 is outside current boundary",
    );
}

async fn update_the_ticket_with_the_renewal_date_you_remember() {
    // The remembered date is Design's (note 5); the agent writes it to the id it "remembers".
    let agent = as_agent(&dental_alice()).await;
    agent.batch_execute("SAVEPOINT tool").await.unwrap();
    assert_refused(
        assert_in(&agent, "5").await,
        "42501",
        "resource public.notes:5 is outside current boundary",
    );
    agent.batch_execute("ROLLBACK TO SAVEPOINT tool").await.unwrap();
    // Skipping the check does not help: the UPDATE matches nothing outside the boundary.
    let updated =
        agent.execute("UPDATE notes SET renewal_date = '2027-06-30' WHERE id = 5", &[]).await.unwrap();
    assert_eq!(updated, 0);
    assert_eq!(
        agent.execute("UPDATE notes SET renewal_date = '2027-01-31' WHERE id = 1", &[]).await.unwrap(),
        1
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    // A viewer may read but not write, and may not use the CRM tool.
    let bob_token = app_token("northstar-dental", "support", "bob", "viewer", json!({}));
    let bob = as_agent(&bob_token).await;
    assert_refused(
        bob.execute("UPDATE notes SET renewal_date = '2027-01-31' WHERE id = 1", &[]).await,
        "42501",
        "new row violates row-level security policy \"boundary_update\" for table \"notes\"",
    );
    bob.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&bob, &bob_token).await.unwrap();
    assert_refused(
        column(&bob, "SELECT boundary.assert_tool('crm')").await,
        "42501",
        "tool crm is outside current boundary",
    );
    bob.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&bob, &bob_token).await.unwrap();
    assert_eq!(column(&bob, "SELECT boundary.assert_tool('search')").await.unwrap(), ["search"]);
    assert_refused(
        column(&bob, "SELECT boundary.assert_datasource('billing')").await,
        "42501",
        "datasource billing is outside current boundary",
    );
}

async fn ignore_workspace_boundaries_and_search_all_notes() {
    let agent = as_agent(&dental_alice()).await;
    assert_eq!(
        column(&agent, "SELECT string_agg(id::text, ',' ORDER BY id) FROM notes").await.unwrap(),
        ["1,2"]
    );
    agent.batch_execute("SAVEPOINT s").await.unwrap();
    assert_refused(
        agent.batch_execute("SET agent_boundary.boundary = ''").await,
        "42501",
        "permission denied to set parameter \"agent_boundary.boundary\"",
    );
    agent.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    assert_refused(
        agent.batch_execute("SELECT boundary.exit(); SELECT count(*) FROM notes").await,
        "42501",
        "no agent boundary is set",
    );
}

/// A job token snapshotted from `token`'s boundary, valid for `ttl`.
async fn job_token(token: &str, ttl: &str) -> String {
    let agent = as_agent(token).await;
    let job = column(&agent, &format!("SELECT boundary.snapshot('{ttl}')")).await.unwrap().remove(0);
    agent.batch_execute("COMMIT").await.unwrap();
    job
}

async fn resume(job: &str) -> Result<Value, tokio_postgres::Error> {
    let worker = cluster().connect("agent").await;
    worker.batch_execute("BEGIN").await?;
    let row = worker.query_typed_one("SELECT boundary.resume($1)::text", &[(&job, Type::TEXT)]).await?;
    let notes = column(&worker, "SELECT count(*) FROM notes").await?;
    assert_eq!(notes, ["2"], "the resumed job sees Dental's support notes only");
    worker.batch_execute("COMMIT").await?;
    Ok(serde_json::from_str(row.get::<_, &str>(0)).unwrap())
}

async fn carol_registered(admin: &Client, role: &str, plan: &str, region: &str, tools: &str, sources: &str) {
    admin
        .batch_execute(&format!(
            "SELECT boundary.register_principal('northstar-dental', 'support', 'carol', '{role}', '{plan}', '{region}', '{tools}', '{sources}')"
        ))
        .await
        .unwrap();
}

async fn a_job_resumes_with_todays_permissions_or_is_refused() {
    let admin = cluster().connect("postgres").await;
    let carol = || {
        app_token(
            "northstar-dental",
            "support",
            "carol",
            "admin",
            json!({"run_id": "run-7", "allow_jobs": true}),
        )
    };
    // A worker holding nothing reads nothing protected.
    let worker = cluster().connect("agent").await;
    assert_refused(
        worker.query("SELECT count(*) FROM notes", &[]).await,
        "42501",
        "no agent boundary is set",
    );

    carol_registered(&admin, "admin", "pro", "us", "{search,crm}", "{tickets,kb}").await;
    let job = job_token(&carol(), "10 minutes").await;
    let resumed = resume(&job).await.unwrap();
    assert_eq!((resumed["run_id"].as_str(), resumed["role"].as_str()), (Some("run-7"), Some("admin")));
    // A job token is not a boundary token, and the other way round.
    let agent = cluster().connect("agent").await;
    assert_refused(
        enter(&agent, &job).await,
        "28000",
        "agent boundary token refused: token audience is not \"agent_boundary\"",
    );
    assert_refused(
        agent.query_typed_one("SELECT boundary.resume($1)::text", &[(&carol(), Type::TEXT)]).await,
        "28000",
        "agent boundary token refused: token audience is not \"agent_boundary.job\"",
    );

    let changes = [
        ("SELECT boundary.revoke('northstar-dental', 'support', 'carol')", "the principal has been revoked"),
        (
            "UPDATE boundary.principals SET role = 'viewer' WHERE user_id = 'carol'",
            "role downgraded from admin to viewer",
        ),
        (
            "UPDATE boundary.principals SET tool_ids = '{search}' WHERE user_id = 'carol'",
            "tool crm was removed",
        ),
        (
            "UPDATE boundary.principals SET datasource_ids = '{tickets}' WHERE user_id = 'carol'",
            "datasource kb was removed",
        ),
        (
            "UPDATE boundary.principals SET region = 'eu' WHERE user_id = 'carol'",
            "region changed from us to eu",
        ),
        (
            "UPDATE boundary.principals SET plan = 'enterprise' WHERE user_id = 'carol'",
            "plan changed from pro to enterprise",
        ),
        ("DELETE FROM boundary.principals WHERE user_id = 'carol'", "the principal is no longer registered"),
    ];
    for (change, reason) in changes {
        carol_registered(&admin, "admin", "pro", "us", "{search,crm}", "{tickets,kb}").await;
        let job = job_token(&carol(), "10 minutes").await;
        admin.batch_execute(change).await.unwrap();
        let before = blocked_total(&admin).await;
        let refused = assert_refused(
            resume(&job).await,
            "42501",
            "resume refused: permissions changed during execution",
        );
        assert_eq!(refused.detail(), Some(reason), "{change}");
        assert_eq!(blocked_total(&admin).await, before + 1, "counted despite the rollback: {change}");
        assert!(
            cluster().log().contains(&format!("\"event\":\"resume_refused\",\"reason\":\"{reason}\"")),
            "a log line survives the rollback: {change}"
        );
    }

    // Expiry: with no clock skew allowed, a one-second job token is refused two seconds later.
    carol_registered(&admin, "admin", "pro", "us", "{search,crm}", "{tickets,kb}").await;
    admin.batch_execute("ALTER ROLE agent SET agent_boundary.clock_skew = 0").await.unwrap();
    let short = job_token(&carol(), "1 second").await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let refused =
        assert_refused(resume(&short).await, "42501", "resume refused: permissions changed during execution");
    assert_eq!(refused.detail(), Some("the job token has expired"));
    admin.batch_execute("ALTER ROLE agent RESET agent_boundary.clock_skew").await.unwrap();
}

/// The payload of a signed token, as JSON (no verification: the test reads what it was given).
fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A job token cannot extend the grant it came from: only a token that allows jobs may
/// snapshot, never in a read-only transaction (the audit row could not be written), no chain of
/// snapshot, resume and snapshot runs past the grant's start plus max_job_lifetime, one run is
/// resumed by one worker at a time, and one transaction cannot flood the audit trail.
async fn a_job_never_outlives_the_grant_it_came_from() {
    let admin = cluster().connect("postgres").await;
    carol_registered(&admin, "admin", "pro", "us", "{search,crm}", "{tickets,kb}").await;
    let request = |extra: Value| app_token("northstar-dental", "support", "carol", "admin", extra);
    // Model-written SQL in an ordinary request cannot turn it into a job.
    let agent = as_agent(&request(json!({}))).await;
    assert_refused(
        agent.batch_execute("SELECT boundary.snapshot('1 minute')").await,
        "42501",
        "boundary.snapshot() refused: the token this boundary was entered with does not allow jobs",
    );
    // A job token is always in the audit trail, so a read-only transaction makes none.
    let reader = cluster().connect("agent").await;
    reader.batch_execute("BEGIN READ ONLY").await.unwrap();
    enter(&reader, &request(json!({"allow_jobs": true}))).await.unwrap();
    assert_refused(
        reader.batch_execute("SELECT boundary.snapshot('1 minute')").await,
        "25006",
        "boundary.snapshot() needs a read-write transaction: every job token is recorded in boundary.audit_log",
    );
    // A chain: the grant starts at the request token's iat; with max_job_lifetime = 4s every
    // job token from it ends by then, and resuming after that is refused.
    admin.batch_execute("ALTER ROLE agent SET agent_boundary.max_job_lifetime = '4s'").await.unwrap();
    let granted = now();
    let first =
        job_token(&request(json!({"allow_jobs": true, "run_id": "run-chain", "iat": granted})), "3 seconds")
            .await;
    assert_eq!(payload(&first)["granted_at"], json!(granted));
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let worker = cluster().connect("agent").await;
    worker.batch_execute("BEGIN").await.unwrap();
    worker.query_typed_one("SELECT boundary.resume($1)::text", &[(&first, Type::TEXT)]).await.unwrap();
    // One run, one worker at a time.
    let second_worker = cluster().connect("agent").await;
    second_worker.batch_execute("BEGIN").await.unwrap();
    assert_refused(
        second_worker.query_typed_one("SELECT boundary.resume($1)::text", &[(&first, Type::TEXT)]).await,
        "55P03",
        "boundary.resume() refused: run run-chain is already running in another session",
    );
    second_worker.batch_execute("ROLLBACK").await.unwrap();
    let next = column(&worker, "SELECT boundary.snapshot('3 seconds')").await.unwrap().remove(0);
    worker.batch_execute("COMMIT").await.unwrap();
    let claims = payload(&next);
    assert_eq!(claims["granted_at"], json!(granted), "the grant travels with the chain");
    assert!(claims["exp"].as_i64().unwrap() <= granted + 4, "{claims}");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let refused =
        assert_refused(resume(&next).await, "42501", "resume refused: permissions changed during execution");
    assert!(refused.detail().unwrap().starts_with("the grant this job came from ended at "), "{refused:?}");
    admin.batch_execute("ALTER ROLE agent RESET agent_boundary.max_job_lifetime").await.unwrap();
    // The trail's size is managed by retention: the append-only log loses rows only through
    // boundary.purge_audit_log(), which ordinary roles cannot call.
    assert_eq!(
        column(&admin, "SELECT boundary.purge_audit_log('1 day')").await.unwrap(),
        ["0"],
        "nothing that old"
    );
    let before: i64 =
        column(&admin, "SELECT count(*) FROM boundary.audit_log").await.unwrap()[0].parse().unwrap();
    admin.batch_execute("SET session_replication_role = replica; UPDATE boundary.audit_log SET at = at - interval '40 days' WHERE event = 'snapshot'; RESET session_replication_role").await.unwrap();
    let aged: i64 =
        column(&admin, "SELECT count(*) FROM boundary.audit_log WHERE at < now() - interval '30 days'")
            .await
            .unwrap()[0]
            .parse()
            .unwrap();
    assert!(aged > 0);
    assert_eq!(
        column(&admin, "SELECT boundary.purge_audit_log('30 days')").await.unwrap(),
        [aged.to_string()]
    );
    let after: i64 =
        column(&admin, "SELECT count(*) FROM boundary.audit_log").await.unwrap()[0].parse().unwrap();
    assert_eq!(after, before - aged + 1, "the purge itself is recorded");
    assert_refused(
        cluster().connect("agent").await.batch_execute("SELECT boundary.purge_audit_log('1 day')").await,
        "42501",
        "permission denied for function purge_audit_log",
    );
    assert_refused(
        admin.batch_execute("DELETE FROM boundary.audit_log").await,
        "42501",
        "boundary.audit_log is append-only: DELETE is refused",
    );
    // One transaction adds at most max_audit_rows_per_transaction rows to the trail.
    let flooder = as_agent(&request(json!({"allow_jobs": true}))).await;
    assert_refused(
        flooder.batch_execute("SELECT count(boundary.snapshot('1 minute')) FROM generate_series(1, 2000)").await,
        "54000",
        "this transaction has added 100 rows to boundary.audit_log; agent_boundary.max_audit_rows_per_transaction allows 100",
    );
}

/// A read-only request's audit rows do not cost it a WAL flush: a transaction whose only writes
/// are its enter/exit rows commits without waiting, while a request that writes anything else,
/// before or after enter, commits as the session configured; the setting turns it off. (The
/// table is vacuumed first: a read that prunes pages writes WAL too, and then the commit waits.) Seen
/// through synchronous replication to a standby that never connects (this cluster names one): a
/// commit that waits for its WAL hangs there until statement_timeout cancels the wait, with a
/// WARNING, and one that does not wait returns at once.
async fn read_only_requests_do_not_wait_for_their_audit_rows_to_be_flushed() {
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(
            "CREATE TABLE public.request_log (note text); GRANT INSERT ON public.request_log TO agent;",
        )
        .await
        .unwrap();
    admin.batch_execute("VACUUM public.notes").await.unwrap();
    let token =
        |trace: &str| app_token("northstar-dental", "support", "alice", "admin", json!({"trace_id": trace}));
    // Whether the request's COMMIT waited for its WAL: seen waiting for the standby, and let go.
    let request = |sql: &'static str, trace: &'static str| {
        let token = token(trace);
        async move {
            let agent = cluster().connect("agent").await;
            let watcher = cluster().connect("postgres").await;
            // The test cluster commits asynchronously by default; a real server does not.
            agent.batch_execute("SET synchronous_commit = on").await.unwrap();
            agent.batch_execute("BEGIN").await.unwrap();
            if sql.starts_with("INSERT") {
                agent.batch_execute(sql).await.unwrap();
                enter(&agent, &token).await.unwrap();
            } else {
                enter(&agent, &token).await.unwrap();
                agent.batch_execute(sql).await.unwrap();
            }
            let commit = agent.batch_execute("COMMIT");
            tokio::pin!(commit);
            let mut waited = false;
            loop {
                tokio::select! {
                    done = &mut commit => { done.unwrap(); break; }
                    _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                        let cancelled = column(
                            &watcher,
                            "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                              WHERE wait_event = 'SyncRep' AND usename = 'agent'",
                        )
                        .await
                        .unwrap();
                        waited |= cancelled != ["0"];
                    }
                }
            }
            waited
        }
    };
    assert!(
        !request("SELECT count(*) FROM notes", "trace-async-read").await,
        "a read-only request did not wait"
    );
    assert_eq!(
        column(&admin, "SELECT count(*) FROM boundary.audit_log WHERE trace_id = 'trace-async-read'")
            .await
            .unwrap(),
        ["1"],
        "and its row is there"
    );
    assert!(
        request("UPDATE notes SET renewal_date = renewal_date WHERE id = 1", "trace-async-write").await,
        "a write after enter: the commit waited for its WAL"
    );
    assert!(
        request("INSERT INTO public.request_log VALUES ('before enter')", "trace-async-before").await,
        "a write before enter: the commit waited for its WAL"
    );
    admin.batch_execute("ALTER ROLE agent SET agent_boundary.audit_async_commit = off").await.unwrap();
    assert!(request("SELECT count(*) FROM notes", "trace-async-off").await, "turned off: it waited");
    admin
        .batch_execute(
            "ALTER ROLE agent RESET agent_boundary.audit_async_commit; DROP TABLE public.request_log",
        )
        .await
        .unwrap();
}

/// One enter row per boundary per backend per `audit_enter_interval`: the enters in between
/// write nothing and are counted into the next row, a row only suppresses once it committed
/// (a rolled-back transaction or savepoint suppresses nothing and gives its count back), and
/// any difference in what the row shows (here the trace id) writes a row of its own.
async fn enter_rows_repeat_at_most_once_per_interval_and_count_what_they_skipped() {
    let session = cluster().connect("postgres").await;
    let token =
        |trace: &str| app_token("northstar-dental", "support", "alice", "admin", json!({"trace_id": trace}));
    let rows = |trace: &'static str| {
        let session = &session;
        async move {
            column(
                session,
                &format!(
                    "SELECT string_agg(repeats::text, ',' ORDER BY at) FROM boundary.audit_log
                      WHERE event = 'enter' AND trace_id = '{trace}'"
                ),
            )
            .await
            .unwrap()
            .remove(0)
        }
    };
    let request = |token: String, end: &'static str| {
        let session = &session;
        async move {
            session.batch_execute("BEGIN").await.unwrap();
            enter(session, &token).await.unwrap();
            session.batch_execute(end).await.unwrap();
        }
    };
    session.batch_execute("SET agent_boundary.audit_enter_interval = '1h'").await.unwrap();
    for _ in 0..3 {
        request(token("trace-repeat"), "COMMIT").await;
    }
    assert_eq!(rows("trace-repeat").await, "0", "three requests of one boundary: one row");
    request(token("trace-repeat-other"), "COMMIT").await;
    assert_eq!(rows("trace-repeat-other").await, "0", "another trace id is another row");

    request(token("trace-repeat-rolled-back"), "ROLLBACK").await;
    request(token("trace-repeat-rolled-back"), "COMMIT").await;
    assert_eq!(rows("trace-repeat-rolled-back").await, "0", "a rolled-back row suppresses nothing");

    session.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    enter(&session, &token("trace-repeat-savepoint")).await.unwrap();
    session.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT").await.unwrap();
    request(token("trace-repeat-savepoint"), "COMMIT").await;
    assert_eq!(
        rows("trace-repeat-savepoint").await,
        "0",
        "a row rolled back with its savepoint suppresses nothing either"
    );

    // The interval over, the next row carries the two enters that wrote none.
    session.batch_execute("SET agent_boundary.audit_enter_interval = 0").await.unwrap();
    request(token("trace-repeat"), "COMMIT").await;
    assert_eq!(rows("trace-repeat").await, "0,2");
    request(token("trace-repeat"), "COMMIT").await;
    assert_eq!(rows("trace-repeat").await, "0,2,0", "0 writes a row for every enter");

    let agent = cluster().connect("agent").await;
    // (Once the library is loaded: before, a SET makes a placeholder that loading discards.)
    agent.batch_execute("SELECT boundary.is_active()").await.unwrap();
    assert_refused(
        agent.batch_execute("SET agent_boundary.audit_enter_interval = '1h'").await,
        "42501",
        "permission denied to set parameter \"agent_boundary.audit_enter_interval\"",
    );
}

async fn blocked_total(admin: &Client) -> i64 {
    column(admin, "SELECT boundary.blocked_events_total()").await.unwrap()[0].parse().unwrap()
}

async fn blocked_attempts_survive_rollback_and_audit_rows_hold_metadata_only() {
    let admin = cluster().connect("postgres").await;
    let before = blocked_total(&admin).await;
    let traced =
        app_token("northstar-dental", "support", "alice", "admin", json!({"trace_id": "trace-rollback-1"}));
    let agent = as_agent(&traced).await;
    assert_refused(
        assert_in(&agent, "4").await,
        "42501",
        "resource public.notes:4 is outside current boundary",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(blocked_total(&admin).await, before + 1);
    assert!(cluster().log().lines().any(|l| l.contains("agent_boundary audit: ")
        && l.contains("\"event\":\"blocked\"")
        && l.contains("\"resource\":\"resource public.notes:4\"")
        && l.contains("\"trace_id\":\"trace-rollback-1\"")));
    // The rolled-back transaction's enter row is gone; a committed one stays, with the refusals
    // its agent caught counted in its exit row.
    assert_eq!(
        column(&admin, "SELECT count(*) FROM boundary.audit_log WHERE trace_id = 'trace-rollback-1'")
            .await
            .unwrap(),
        ["0"]
    );
    let traced =
        app_token("northstar-dental", "support", "alice", "admin", json!({"trace_id": "trace-commit-1"}));
    let agent = as_agent(&traced).await;
    agent.batch_execute("SAVEPOINT tool").await.unwrap();
    assert_refused(
        assert_in(&agent, "4").await,
        "42501",
        "resource public.notes:4 is outside current boundary",
    );
    agent.batch_execute("ROLLBACK TO SAVEPOINT tool; SELECT boundary.exit(); COMMIT").await.unwrap();
    assert_eq!(
        column(&admin, "SELECT string_agg(event || ':' || blocked_count, ',' ORDER BY id) FROM boundary.audit_log WHERE trace_id = 'trace-commit-1'")
            .await
            .unwrap(),
        ["enter:0,exit:1"]
    );
    // Tenants read only their own rows.
    let design = as_agent(&design_alice()).await;
    assert_eq!(
        column(
            &design,
            "SELECT count(*) FROM boundary.audit_log WHERE tenant_id IS DISTINCT FROM 'northstar-design'"
        )
        .await
        .unwrap(),
        ["0"]
    );
    assert_ne!(column(&design, "SELECT count(*) FROM boundary.audit_log").await.unwrap(), ["0"]);
    // Agents cannot write audit rows of their own.
    assert_refused(
        design
            .batch_execute(
                "INSERT INTO boundary.audit_log (event, tenant_id) VALUES ('enter', 'northstar-design')",
            )
            .await,
        "42501",
        "permission denied for table audit_log",
    );
    design.batch_execute("ROLLBACK").await.unwrap();
    // Append-only, even for the superuser's ordinary paths.
    for (statement, op) in [
        ("UPDATE boundary.audit_log SET event = 'enter'", "UPDATE"),
        ("DELETE FROM boundary.audit_log", "DELETE"),
        ("TRUNCATE boundary.audit_log", "TRUNCATE"),
    ] {
        assert_refused(
            admin.batch_execute(statement).await,
            "42501",
            &format!("boundary.audit_log is append-only: {op} is refused"),
        );
    }
}

async fn no_private_note_text_reaches_the_audit_table_or_the_server_log() {
    let admin = cluster().connect("postgres").await;
    let rows = column(&admin, "SELECT count(*) FROM boundary.audit_log").await.unwrap();
    assert_ne!(rows, ["0"], "the earlier trials wrote audit rows");
    assert_eq!(
        column(
            &admin,
            &format!("SELECT count(*) FROM boundary.audit_log a WHERE a::text LIKE '%{PRIVATE}%'")
        )
        .await
        .unwrap(),
        ["0"]
    );
    let log = cluster().log();
    assert!(log.contains("agent_boundary audit: "), "the refusals are in the log");
    assert!(!log.contains(PRIVATE), "private note text in the server log");
}

/// A user reads the audit trail of their own boundaries; the tenant's admins read the whole
/// tenant's. A viewer must not learn another user's trace ids, run ids or memory names.
async fn audit_rows_are_read_by_their_own_user_or_the_tenants_admins() {
    let alice_token = app_token(
        "northstar-dental",
        "support",
        "alice",
        "admin",
        json!({"trace_id": "trace-alice-private"}),
    );
    let alice = as_agent(&alice_token).await;
    alice.batch_execute("COMMIT").await.unwrap();
    let bob = as_agent(&app_token(
        "northstar-dental",
        "support",
        "bob",
        "viewer",
        json!({"trace_id": "trace-bob"}),
    ))
    .await;
    assert_eq!(
        column(&bob, "SELECT count(*) FROM boundary.audit_log WHERE trace_id = 'trace-alice-private'")
            .await
            .unwrap(),
        ["0"],
        "a viewer does not read another user's trail"
    );
    assert_eq!(
        column(&bob, "SELECT count(*) FROM boundary.audit_log WHERE user_id <> 'bob'").await.unwrap(),
        ["0"]
    );
    assert_ne!(
        column(&bob, "SELECT count(*) FROM boundary.audit_log WHERE trace_id = 'trace-bob'").await.unwrap(),
        ["0"]
    );
    bob.batch_execute("COMMIT").await.unwrap();
    let admin = as_agent(&alice_token).await;
    assert_ne!(
        column(&admin, "SELECT count(*) FROM boundary.audit_log WHERE trace_id = 'trace-bob'").await.unwrap(),
        ["0"],
        "the tenant's admin reads the whole tenant's trail"
    );
    assert_eq!(
        column(
            &admin,
            "SELECT count(*) FROM boundary.audit_log WHERE tenant_id IS DISTINCT FROM 'northstar-dental'"
        )
        .await
        .unwrap(),
        ["0"],
        "and nothing of another tenant's"
    );
    // The row ids are one identity for every tenant: their gaps would count other tenants'
    // events, so tenants read every column but the id (order by `at`).
    assert_refused(
        admin.batch_execute("SELECT max(id) FROM boundary.audit_log").await,
        "42501",
        "permission denied for table audit_log",
    );
    admin.batch_execute("ROLLBACK").await.unwrap();
    let admin = as_agent(&alice_token).await;
    assert_ne!(
        column(&admin, "SELECT count(*) FROM (SELECT event, at FROM boundary.audit_log ORDER BY at) a")
            .await
            .unwrap(),
        ["0"]
    );
    admin.batch_execute("COMMIT").await.unwrap();
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    // A synchronous standby that never connects: a commit that waits for its WAL shows it.
    start_shared_cluster_with("agent_tools", &["synchronous_standby_names = 'never_connects'"], FIXTURE);
    let trials = trials![
        summarize_northstars_renewal_risk,
        use_the_previous_customer_note,
        find_the_document_from_the_other_northstar_workspace,
        update_the_ticket_with_the_renewal_date_you_remember,
        ignore_workspace_boundaries_and_search_all_notes,
        a_job_resumes_with_todays_permissions_or_is_refused,
        a_job_never_outlives_the_grant_it_came_from,
        read_only_requests_do_not_wait_for_their_audit_rows_to_be_flushed,
        enter_rows_repeat_at_most_once_per_interval_and_count_what_they_skipped,
        blocked_attempts_survive_rollback_and_audit_rows_hold_metadata_only,
        no_private_note_text_reaches_the_audit_table_or_the_server_log,
        audit_rows_are_read_by_their_own_user_or_the_tenants_admins,
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
