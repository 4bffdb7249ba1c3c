//! The background audit writer, on a server that preloads the library: `enter` rows reach
//! `boundary.audit_log` through the queue without making the request a writing transaction,
//! whatever the request then does; a clean shutdown or a stopped writer loses nothing; tenants
//! read only their own rows; and the inline writer is one setting away.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use std::time::{Duration, Instant};
use support::*;

const PRELOADED: &[&str] =
    &["shared_preload_libraries = 'agent_boundary'", "agent_boundary.audit_flush_interval = '50ms'"];

const FIXTURE: &str = "CREATE ROLE agent LOGIN NOBYPASSRLS;";

fn traced(tenant: &str, trace: &str) -> String {
    app_token(
        tenant,
        "support",
        "alice",
        if tenant == "northstar-dental" { "admin" } else { "member" },
        json!({ "trace_id": trace }),
    )
}

const WRITERS: &str =
    "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'agent_boundary audit writer'";

/// One request under `token` that ends with `end` (COMMIT or ROLLBACK); returns the
/// transaction id it had been given by then, if any.
async fn request(client: &Client, token: &str, end: &str) -> Option<i64> {
    client.batch_execute("BEGIN").await.unwrap();
    enter(client, token).await.unwrap();
    let xid: Option<i64> = client.query_one("SELECT txid_current_if_assigned()", &[]).await.unwrap().get(0);
    client.batch_execute(end).await.unwrap();
    xid
}

/// The writer's pid, once it is attached (an enter asks for it).
async fn writer_pid(server: &Cluster, admin: &Client) -> i32 {
    let agent = server.connect("agent").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        request(&agent, &traced("northstar-dental", "wake-the-writer"), "COMMIT").await;
        if let Some(row) = admin.query_opt(WRITERS, &[]).await.unwrap() {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "no audit writer started:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn traces(admin: &Client, like: &str) -> Vec<String> {
    admin
        .query("SELECT trace_id FROM boundary.audit_log WHERE trace_id LIKE $1 ORDER BY at", &[&like])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn set_flush_interval(admin: &Client, interval: &str) {
    admin
        .batch_execute(&format!("ALTER SYSTEM SET agent_boundary.audit_flush_interval = '{interval}'"))
        .await
        .unwrap();
    admin.batch_execute("SELECT pg_catalog.pg_reload_conf()").await.unwrap();
    // The writer rereads the configuration when the reload signal wakes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn queued_enter_rows_are_written_and_the_request_stays_read_only_even_when_it_rolls_back() {
    let admin = cluster().connect("postgres").await;
    writer_pid(cluster(), &admin).await;
    let agent = cluster().connect("agent").await;
    let mut expected = Vec::new();
    for i in 0..6 {
        let trace = format!("queued-{i}");
        let xid = request(
            &agent,
            &traced("northstar-dental", &trace),
            if i % 2 == 0 { "COMMIT" } else { "ROLLBACK" },
        )
        .await;
        assert_eq!(xid, None, "enter gave the request a transaction id (it wrote the row itself)");
        expected.push(trace);
    }
    admin.batch_execute("SELECT boundary.flush_audit_log()").await.unwrap();
    assert_eq!(traces(&admin, "queued-%").await, expected, "rolled-back requests used their boundary too");
    let row = admin
        .query_one(
            "SELECT tenant_id, workspace_id, user_id, event, repeats FROM boundary.audit_log WHERE trace_id = 'queued-0'",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String, String, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(got, ("northstar-dental".into(), "support".into(), "alice".into(), "enter".into(), 0));
}

async fn the_transaction_writer_writes_inside_the_request_and_a_rollback_undoes_it() {
    let admin = cluster().connect("postgres").await;
    writer_pid(cluster(), &admin).await;
    admin.batch_execute("SET agent_boundary.audit_writer = transaction").await.unwrap();
    let token = traced("northstar-dental", "inline-1");
    admin.batch_execute("BEGIN").await.unwrap();
    enter(&admin, &token).await.unwrap();
    let xid: Option<i64> = admin.query_one("SELECT txid_current_if_assigned()", &[]).await.unwrap().get(0);
    assert!(xid.is_some(), "the row is written by the entering transaction");
    assert_eq!(traces(&admin, "inline-%").await, ["inline-1"], "visible before commit");
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert!(traces(&admin, "inline-%").await.is_empty());
    admin.batch_execute("RESET agent_boundary.audit_writer").await.unwrap();
}

async fn a_tenant_reads_only_its_own_queued_rows() {
    let admin = cluster().connect("postgres").await;
    writer_pid(cluster(), &admin).await;
    let agent = cluster().connect("agent").await;
    request(&agent, &traced("northstar-design", "design-queued"), "COMMIT").await;
    request(&agent, &traced("northstar-dental", "dental-queued"), "COMMIT").await;
    admin.batch_execute("SELECT boundary.flush_audit_log()").await.unwrap();
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &traced("northstar-dental", "dental-reader")).await.unwrap();
    let seen = column(&agent, "SELECT DISTINCT tenant_id FROM boundary.audit_log ORDER BY 1").await.unwrap();
    let traces = column(&agent, "SELECT trace_id FROM boundary.audit_log WHERE trace_id LIKE '%-queued'")
        .await
        .unwrap();
    agent.batch_execute("COMMIT").await.unwrap();
    assert_eq!(seen, ["northstar-dental"]);
    assert_eq!(traces, ["dental-queued"]);
}

async fn a_stopped_writer_writes_its_queue_first_and_another_takes_over() {
    let admin = cluster().connect("postgres").await;
    let pid = writer_pid(cluster(), &admin).await;
    set_flush_interval(&admin, "60s").await;
    let agent = cluster().connect("agent").await;
    for i in 0..3 {
        request(&agent, &traced("northstar-dental", &format!("stopped-{i}")), "COMMIT").await;
    }
    assert!(traces(&admin, "stopped-%").await.is_empty(), "queued, not yet written");
    admin.query_one("SELECT pg_catalog.pg_terminate_backend($1, 10000)", &[&pid]).await.unwrap();
    assert_eq!(traces(&admin, "stopped-%").await, ["stopped-0", "stopped-1", "stopped-2"]);
    set_flush_interval(&admin, "50ms").await;
    let next = writer_pid(cluster(), &admin).await;
    assert_ne!(next, pid);
    request(&agent, &traced("northstar-dental", "after-stop"), "COMMIT").await;
    admin.batch_execute("SELECT boundary.flush_audit_log()").await.unwrap();
    assert_eq!(traces(&admin, "after-stop").await, ["after-stop"]);
}

async fn a_clean_shutdown_writes_the_queue() {
    let admin = cluster().connect("postgres").await;
    writer_pid(cluster(), &admin).await;
    set_flush_interval(&admin, "60s").await;
    let agent = cluster().connect("agent").await;
    for i in 0..3 {
        request(&agent, &traced("northstar-design", &format!("shutdown-{i}")), "COMMIT").await;
    }
    assert!(traces(&admin, "shutdown-%").await.is_empty(), "queued, not yet written");
    drop((admin, agent));
    cluster().restart();
    let admin = cluster().connect("postgres").await;
    assert_eq!(traces(&admin, "shutdown-%").await, ["shutdown-0", "shutdown-1", "shutdown-2"]);
    set_flush_interval(&admin, "50ms").await;
}

/// A batch of queued rows is written by one INSERT: each row arrives whole and in order, with
/// tool and datasource ids that look like array syntax (commas, braces, quotes, backslashes,
/// the word NULL), absent fields absent, and lists of any length.
async fn a_batch_keeps_every_field_of_every_row() {
    let admin = cluster().connect("postgres").await;
    writer_pid(cluster(), &admin).await;
    let odd: Vec<String> = ["a,b", "{x}", r#"say "hi""#, r"back\slash", "NULL", " sp ", "\u{e9}\u{1F600}"]
        .map(String::from)
        .to_vec();
    admin
        .execute(
            "SELECT boundary.register_principal('northstar-dental', 'support', 'odd-ids', 'member', 'pro', 'us', $1, $2)",
            &[&odd, &vec!["{}".to_string()]],
        )
        .await
        .unwrap();
    set_flush_interval(&admin, "60s").await;
    let agent = cluster().connect("agent").await;
    let odd_token = |trace: &str| {
        app_token(
            "northstar-dental",
            "support",
            "odd-ids",
            "member",
            json!({ "trace_id": trace, "run_id": r#"r"1"# }),
        )
    };
    request(&agent, &odd_token("batch-0"), "COMMIT").await;
    request(&agent, &traced("northstar-design", "batch-1"), "ROLLBACK").await;
    request(&agent, &odd_token("batch-2"), "COMMIT").await;
    assert!(traces(&admin, "batch-%").await.is_empty(), "queued, not yet written");
    admin.batch_execute("SELECT boundary.flush_audit_log()").await.unwrap();
    type AuditRow = (String, String, String, Option<String>, Vec<String>, Vec<String>, String, i32);
    let got: Vec<AuditRow> = admin
        .query(
            "SELECT trace_id, tenant_id, user_id, run_id, tool_ids, datasource_ids, event, repeats
               FROM boundary.audit_log WHERE trace_id LIKE 'batch-%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
        .collect();
    let mut sorted = odd.clone();
    sorted.sort();
    let odd_row = |trace: &str| -> AuditRow {
        (
            trace.into(),
            "northstar-dental".into(),
            "odd-ids".into(),
            Some(r#"r"1"#.into()),
            sorted.clone(),
            vec!["{}".into()],
            "enter".into(),
            0,
        )
    };
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], odd_row("batch-0"));
    assert_eq!(
        (got[1].0.as_str(), got[1].1.as_str(), got[1].3.as_deref(), got[1].4.as_slice()),
        ("batch-1", "northstar-design", None, &["search".to_string()][..]),
        "absent fields stay absent"
    );
    assert_eq!(got[2], odd_row("batch-2"));
    set_flush_interval(&admin, "50ms").await;
}

/// Four connections entering as fast as they can into a queue of 64 kB (the smallest): rows
/// the queue cannot take are written inline, and every enter is in the trail exactly once.
async fn under_load_with_the_smallest_queue_every_enter_is_written_exactly_once() {
    let server = Cluster::start(
        "audit-writer-small",
        &["shared_preload_libraries = 'agent_boundary'", "agent_boundary.audit_queue_size = 64"],
    );
    let admin = server.connect("postgres").await;
    admin.batch_execute(BASE_FIXTURE).await.unwrap();
    admin.batch_execute(FIXTURE).await.unwrap();
    writer_pid(&server, &admin).await;
    let per_client: i32 = 300;
    let mut tasks = Vec::new();
    for c in 0..4 {
        let agent = server.connect("agent").await;
        let tokens: Vec<String> =
            (0..per_client).map(|i| traced("northstar-dental", &format!("load-{c}-{i}"))).collect();
        tasks.push(tokio::spawn(async move {
            let mut inline = 0;
            for (i, token) in tokens.iter().enumerate() {
                inline += usize::from(
                    request(&agent, token, if i % 3 == 0 { "ROLLBACK" } else { "COMMIT" }).await.is_some(),
                );
            }
            inline
        }));
    }
    let mut inline = 0;
    for task in tasks {
        inline += task.await.unwrap();
    }
    admin.batch_execute("SELECT boundary.flush_audit_log()").await.unwrap();
    let row = admin
        .query_one(
            "SELECT count(*), count(DISTINCT trace_id) FROM boundary.audit_log WHERE trace_id LIKE 'load-%'",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    // An inline row rolls back with its request; a queued one is written either way. So every
    // committed request's row is there, and none twice.
    assert_eq!(rows, distinct, "no row twice");
    assert!(rows <= 4 * i64::from(per_client));
    let missing = admin
        .query_one(
            "SELECT count(*) FROM generate_series(0, 3) c, generate_series(0, $1 - 1) i
              WHERE i % 3 <> 0
                AND NOT EXISTS (SELECT FROM boundary.audit_log WHERE trace_id = 'load-' || c || '-' || i)",
            &[&per_client],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(missing, 0, "a committed request's enter is missing ({inline} rows were written inline)");
    eprintln!("    {rows} rows, {inline} of them written inline");
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    start_shared_cluster_with("audit-writer", PRELOADED, FIXTURE);
    let trials = trials![
        queued_enter_rows_are_written_and_the_request_stays_read_only_even_when_it_rolls_back,
        the_transaction_writer_writes_inside_the_request_and_a_rollback_undoes_it,
        a_tenant_reads_only_its_own_queued_rows,
        a_stopped_writer_writes_its_queue_first_and_another_takes_over,
        a_clean_shutdown_writes_the_queue,
        a_batch_keeps_every_field_of_every_row,
        under_load_with_the_smallest_queue_every_enter_is_written_exactly_once,
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
