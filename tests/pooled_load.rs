//! Pooling under load: many clients across 1,000 tenants through a real pgbouncer in
//! transaction mode with a small pool, each transaction entering its own boundary, writing a
//! row tagged with the tenant it believes it is, and reading back. Midway, every agent backend
//! is killed (`pg_terminate_backend`), and later the server restarts; clients reconnect.
//!
//! Asserts: no transaction ever starts with a boundary left on its server connection, no read
//! sees another tenant's row, every row's tenant is the one its writer believed, every
//! committed write is there at the end, and nothing is there that was never attempted.
//!
//! Duration and clients: AGENT_BOUNDARY_LOAD_SECONDS (default 20, the CI run) and
//! AGENT_BOUNDARY_LOAD_CLIENTS (default 16); `bash bench/load.sh` runs it longer.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio_postgres::types::Type;

const TENANTS: usize = 1000;
const POOL_SIZE: u32 = 4;

const FIXTURE: &str = "
CREATE ROLE agent LOGIN NOBYPASSRLS;
SELECT count(boundary.register_principal(format('t%s', lpad(i::text, 4, '0')), 'ws', 'agent', 'member'))
  FROM generate_series(1, 1000) AS i;
CREATE TABLE public.ledger (
    tenant_id       text   NOT NULL,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    client          integer NOT NULL,
    seq             bigint NOT NULL,
    believed_tenant text   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
SELECT count(*) FROM boundary.protect('public.ledger');
GRANT SELECT, INSERT ON public.ledger TO agent;
-- Entering a boundary per transaction is what is under test, not the audit trail.
ALTER ROLE agent SET agent_boundary.audit_enter = off;";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A tenant with Zipf-like skew: t0001 most often, t1000 least.
fn pick_tenant(rng: &mut Rng) -> String {
    // Inverse of a continuous 1/x density over [1, TENANTS + 1).
    let rank = ((TENANTS as f64 + 1.0).powf(rng.uniform())).floor() as usize;
    format!("t{:04}", rank.clamp(1, TENANTS))
}

#[derive(Default)]
struct Tally {
    committed: AtomicI64,
    failed: AtomicI64,
    leftover_boundaries: AtomicI64,
    foreign_rows_seen: AtomicI64,
    committed_after_restart: AtomicI64,
}

type Writes = Arc<Mutex<Vec<(i32, i64, String)>>>;

/// One transaction: no boundary at the start, enter, write, read back, commit.
async fn transaction(
    client: &Client,
    tenant: &str,
    who: i32,
    seq: i64,
    tally: &Tally,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    if client.query_typed_one("SELECT boundary.is_active()", &[]).await?.get::<_, bool>(0) {
        tally.leftover_boundaries.fetch_add(1, Ordering::Relaxed);
    }
    enter(client, &app_token(tenant, "ws", "agent", "member", json!({}))).await?;
    let written: String = client
        .query_typed_one(
            "INSERT INTO ledger (client, seq, believed_tenant) VALUES ($1, $2, $3) RETURNING tenant_id",
            &[(&who, Type::INT4), (&seq, Type::INT8), (&tenant, Type::TEXT)],
        )
        .await?
        .get(0);
    let foreign: i64 = client
        .query_typed_one("SELECT count(*) FROM ledger WHERE tenant_id <> $1", &[(&tenant, Type::TEXT)])
        .await?
        .get(0);
    let mine: i64 = client
        .query_typed_one(
            "SELECT count(*) FROM ledger WHERE client = $1 AND seq = $2",
            &[(&who, Type::INT4), (&seq, Type::INT8)],
        )
        .await?
        .get(0);
    tally
        .foreign_rows_seen
        .fetch_add(foreign + i64::from(written != tenant) + i64::from(mine != 1), Ordering::Relaxed);
    client.batch_execute("COMMIT").await
}

async fn run_client(
    who: i32,
    port: u16,
    deadline: Instant,
    restarted: Arc<Mutex<Option<Instant>>>,
    tally: Arc<Tally>,
    confirmed: Writes,
    in_doubt: Writes,
) {
    let mut rng = Rng(u64::try_from(who).unwrap_or(0) + 1);
    let mut seq = 0i64;
    let mut connection: Option<Client> = None;
    while Instant::now() < deadline {
        if connection.is_none() {
            let mut config = tokio_postgres::Config::new();
            config.host("127.0.0.1").port(port).user("agent").dbname("postgres");
            match connect_with(config).await {
                Ok(c) => connection = Some(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let tenant = pick_tenant(&mut rng);
        seq += 1;
        let client = connection.as_ref().unwrap();
        match transaction(client, &tenant, who, seq, &tally).await {
            Ok(()) => {
                tally.committed.fetch_add(1, Ordering::Relaxed);
                if restarted.lock().unwrap().is_some() {
                    tally.committed_after_restart.fetch_add(1, Ordering::Relaxed);
                }
                confirmed.lock().unwrap().push((who, seq, tenant));
            }
            Err(_) => {
                // The commit may or may not have happened; reconnect and go on.
                tally.failed.fetch_add(1, Ordering::Relaxed);
                in_doubt.lock().unwrap().push((who, seq, tenant));
                connection = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn pooled_clients_under_load_never_cross_tenants_or_lose_writes() {
    let seconds = setting("AGENT_BOUNDARY_LOAD_SECONDS", 20);
    let clients = setting("AGENT_BOUNDARY_LOAD_CLIENTS", 16) as i32;
    let bouncer = Pgbouncer::start(cluster(), "transaction", POOL_SIZE, &["agent"]);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let (confirmed, in_doubt): (Writes, Writes) = Default::default();
    let restarted = Arc::new(Mutex::new(None));
    eprintln!(
        "load: {clients} clients, {TENANTS} tenants, pgbouncer transaction pool of {POOL_SIZE}, {seconds}s"
    );
    let workers: Vec<_> = (0..clients)
        .map(|who| {
            tokio::spawn(run_client(
                who,
                bouncer.port,
                deadline,
                restarted.clone(),
                tally.clone(),
                confirmed.clone(),
                in_doubt.clone(),
            ))
        })
        .collect();
    let progress = |what: &str| {
        eprintln!(
            "[{:>5.1}s] {what}: {} committed, {} failed",
            start.elapsed().as_secs_f64(),
            tally.committed.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed)
        )
    };
    tokio::time::sleep(Duration::from_secs(seconds / 3)).await;
    let admin = cluster().connect("postgres").await;
    let killed = column(
        &admin,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'agent'",
    )
    .await
    .unwrap();
    progress(&format!("terminated {} agent backends", killed[0]));
    assert_ne!(killed, ["0"], "pgbouncer held server connections to kill");
    tokio::time::sleep(Duration::from_secs(seconds / 3)).await;
    progress("restarting the server");
    tokio::task::spawn_blocking(|| cluster().restart()).await.unwrap();
    *restarted.lock().unwrap() = Some(Instant::now());
    progress("server back");
    for worker in workers {
        worker.await.unwrap();
    }
    progress("done");

    let admin = cluster().connect("postgres").await;
    let rows = admin.query("SELECT client, seq, tenant_id, believed_tenant FROM ledger", &[]).await.unwrap();
    let stored: HashSet<(i32, i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let misattributed = rows.iter().filter(|r| r.get::<_, String>(2) != r.get::<_, String>(3)).count();
    let confirmed: HashSet<(i32, i64, String)> = confirmed.lock().unwrap().iter().cloned().collect();
    let in_doubt: HashSet<(i32, i64, String)> = in_doubt.lock().unwrap().iter().cloned().collect();
    let lost = confirmed.difference(&stored).count();
    let unexplained = stored.iter().filter(|w| !confirmed.contains(*w) && !in_doubt.contains(*w)).count();
    let tenants_written = stored.iter().map(|(_, _, t)| t).collect::<HashSet<_>>().len();
    eprintln!(
        "load: {} committed ({:.0}/s), {} failed during the kill and restart, {} rows stored across {tenants_written} tenants; \
         {} committed after the restart; lost {lost}, misattributed {misattributed}, unexplained {unexplained}, \
         leftover boundaries {}, foreign rows seen {}",
        confirmed.len(),
        confirmed.len() as f64 / seconds as f64,
        in_doubt.len(),
        stored.len(),
        tally.committed_after_restart.load(Ordering::Relaxed),
        tally.leftover_boundaries.load(Ordering::Relaxed),
        tally.foreign_rows_seen.load(Ordering::Relaxed),
    );
    assert_eq!(tally.leftover_boundaries.load(Ordering::Relaxed), 0, "a transaction started with a boundary");
    assert_eq!(tally.foreign_rows_seen.load(Ordering::Relaxed), 0, "a read saw another tenant's row");
    assert_eq!(misattributed, 0, "a row landed in a tenant its writer did not believe in");
    assert_eq!(lost, 0, "a committed write is missing");
    assert_eq!(unexplained, 0, "a row nobody wrote");
    assert!(confirmed.len() as u64 >= seconds, "the load ran: {} commits", confirmed.len());
    assert!(
        tally.committed_after_restart.load(Ordering::Relaxed) > 0,
        "clients reconnected after the restart"
    );
    assert!(tenants_written > 100, "writes spread over many tenants: {tenants_written}");
}

fn main() {
    let args = Arguments::from_args();
    start_shared_cluster("pooled_load", FIXTURE);
    let trials = trials![pooled_clients_under_load_never_cross_tenants_or_lose_writes];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
