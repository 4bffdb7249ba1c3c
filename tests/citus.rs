//! agent_boundary on a real Citus cluster: a coordinator and two workers started from the
//! PostgreSQL the tests use, when Citus is installed there. Without Citus every test here is
//! reported as ignored, with one line saying why, and never counted as passed.
//!
//! Every node preloads the library and reads the same cluster seal key. Checked: it fails closed
//! (Citus copies policies to shards without their RESTRICTIVE flag, so protect() gives Citus
//! databases permissive policies that each carry the whole predicate; no shard admits a row by
//! a bare `true`; every query without a boundary fails; the lint compares every shard's
//! policies with the table's); the boundary entered on the coordinator reaches the workers, so
//! lookalike tenants' router, multi-shard and write queries see and change only their own rows;
//! a boundary value captured from a worker cannot be set anywhere else; then Citus DDL on
//! protected tables: ALTER TABLE, reprotect(), auto-protection configured on every node,
//! reference tables, and a forged Citus application_name; the key and registry tables as
//! reference tables (boundary.distribute_own_tables()): a worker enters, its queries carry the
//! boundary to the other nodes, and every node forgets what a change revokes.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use support::*;

/// The coordinator (index 0) and two workers.
struct CitusCluster {
    nodes: Vec<Cluster>,
}

static CITUS: OnceLock<CitusCluster> = OnceLock::new();

fn citus() -> &'static CitusCluster {
    CITUS.get().expect("main starts the Citus cluster first")
}

fn coordinator() -> &'static Cluster {
    &citus().nodes[0]
}

/// Where Citus would be installed in the PostgreSQL the tests use, and whether it is.
fn citus_installed() -> Result<(), String> {
    let pg_config = pg_bin_dir().join("pg_config");
    let ask = |flag: &str| -> Result<PathBuf, String> {
        let out = Command::new(&pg_config)
            .arg(flag)
            .output()
            .map_err(|e| format!("{}: {e}", pg_config.display()))?;
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let library = ask("--pkglibdir")?.join("citus.so");
    let control = ask("--sharedir")?.join("extension/citus.control");
    if library.exists() && control.exists() {
        Ok(())
    } else {
        Err(format!(
            "Citus is not installed in the PostgreSQL at {} (no {})",
            pg_bin_dir().display(),
            library.display()
        ))
    }
}

const MASTER_RUN_ON_WORKER: &str = "pg_catalog.master_run_on_worker(text[], integer[], text[], boolean)";

fn start_citus() {
    // The same cluster seal key on every node, as a deployment puts it there.
    let key_file = std::env::temp_dir().join(format!("agent-boundary-citus-seal-{}", std::process::id()));
    std::fs::write(&key_file, "c2VhbCBrZXkgZm9yIHRoZSB0ZXN0IGNsdXN0ZXIgb25seSwgbm90IGEgcmVhbCBvbmU=\n")
        .unwrap();
    let key_setting = format!("agent_boundary.cluster_seal_key_file = '{}'", key_file.display());
    let conf = [
        "shared_preload_libraries = 'citus,agent_boundary'",
        "max_prepared_transactions = 20",
        "citus.log_remote_commands = off",
        &key_setting,
    ];
    let nodes: Vec<Cluster> = ["citus-coordinator", "citus-worker1", "citus-worker2"]
        .iter()
        .map(|n| Cluster::start(n, &conf))
        .collect();
    block_on(async {
        for node in &nodes {
            node.connect("postgres").await.batch_execute("CREATE EXTENSION citus").await.expect("citus");
        }
        let admin = nodes[0].connect("postgres").await;
        admin
            .execute(
                "SELECT pg_catalog.citus_set_coordinator_host('127.0.0.1', $1)",
                &[&(nodes[0].port as i32)],
            )
            .await
            .expect("coordinator host");
        for worker in &nodes[1..] {
            admin
                .execute("SELECT pg_catalog.citus_add_node('127.0.0.1', $1)", &[&(worker.port as i32)])
                .await
                .expect("add worker");
        }
        // Created on the coordinator, propagated to the workers by Citus.
        admin.batch_execute(BASE_FIXTURE).await.expect("base fixture");
        // The keys and registry the base fixture wrote become one copy on every node.
        admin.batch_execute("SELECT boundary.distribute_own_tables()").await.expect("distribute own tables");
        admin.batch_execute(FIXTURE).await.expect("fixture");
        // The deployment rule the lint checks: no ordinary role runs its own SQL on the workers.
        for node in &nodes {
            node.connect("postgres")
                .await
                .batch_execute(&format!("REVOKE EXECUTE ON FUNCTION {MASTER_RUN_ON_WORKER} FROM PUBLIC"))
                .await
                .expect("revoke master_run_on_worker");
        }
    });
    assert!(CITUS.set(CitusCluster { nodes }).is_ok(), "started twice");
}

/// Two lookalike tenants' notes in a table distributed by tenant after it was protected, and in
/// one protected after it was distributed.
const FIXTURE: &str = r#"
CREATE ROLE agent LOGIN NOBYPASSRLS;
SET citus.enable_unsafe_triggers = on;
CREATE TABLE public.notes (tenant_id text NOT NULL, id bigint NOT NULL, body text NOT NULL,
                           PRIMARY KEY (tenant_id, id));
SELECT count(*) FROM boundary.protect('public.notes');
SELECT pg_catalog.create_distributed_table('public.notes', 'tenant_id');
CREATE TABLE public.later (tenant_id text NOT NULL, id bigint NOT NULL, body text NOT NULL,
                           PRIMARY KEY (tenant_id, id));
SELECT pg_catalog.create_distributed_table('public.later', 'tenant_id');
SELECT count(*) FROM boundary.protect('public.later');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes, public.later TO agent;
INSERT INTO public.notes VALUES ('northstar-dental', 1, 'dental: crown follow-up'),
                                ('northstar-design', 1, 'design: logo refresh');
INSERT INTO public.later VALUES ('northstar-dental', 1, 'dental: x-ray'),
                                ('northstar-design', 1, 'design: palette');
"#;

/// The statements an agent's model might write, each on its own: a router query naming the
/// other tenant, a multi-shard scan, writes aimed at the other tenant's rows.
const PROBES: &[&str] = &[
    "SELECT body FROM public.notes WHERE tenant_id = 'northstar-design'",
    "SELECT body FROM public.notes",
    "SELECT body FROM public.later WHERE tenant_id = 'northstar-design'",
    "SELECT body FROM public.later",
    "UPDATE public.notes SET body = 'overwritten' WHERE tenant_id = 'northstar-design' RETURNING body",
    "DELETE FROM public.later WHERE tenant_id = 'northstar-design' RETURNING body",
    "INSERT INTO public.notes VALUES ('northstar-design', 2, 'planted') RETURNING body",
];

async fn agent() -> Client {
    coordinator().connect("agent").await
}

/// Design's rows as the superuser sees them, to show nothing was changed.
async fn design_bodies() -> Vec<String> {
    let admin = coordinator().connect("postgres").await;
    column(
        &admin,
        "SELECT body FROM public.notes WHERE tenant_id = 'northstar-design'
         UNION ALL SELECT body FROM public.later WHERE tenant_id = 'northstar-design' ORDER BY 1",
    )
    .await
    .unwrap()
}

async fn without_a_boundary_every_query_fails_on_every_shard() {
    let agent = agent().await;
    for probe in PROBES {
        assert_refused(column(&agent, probe).await, "42501", "no agent boundary is set");
    }
    assert_eq!(design_bodies().await, ["design: logo refresh", "design: palette"]);
}

/// What each probe answers inside Dental's boundary: its own rows, none of Design's; writes
/// aimed at Design's rows change nothing, a row planted under Design's name is refused.
async fn inside_dentals_boundary_every_query_sees_and_changes_only_dentals_rows() {
    let expected: &[(&str, Result<&[&str], &str>)] = &[
        (PROBES[0], Ok(&[])),
        (PROBES[1], Ok(&["dental: crown follow-up"])),
        (PROBES[2], Ok(&[])),
        (PROBES[3], Ok(&["dental: x-ray"])),
        (PROBES[4], Ok(&[])),
        (PROBES[5], Ok(&[])),
        // Refused by the insert guard, which runs before the policy's check.
        (PROBES[6], Err("INSERT on protected table public.notes_")),
    ];
    for (probe, answer) in expected {
        let agent = agent().await;
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &dental_alice()).await.unwrap();
        match (column(&agent, probe).await, answer) {
            (Ok(rows), Ok(want)) => assert_eq!(rows, *want, "{probe}"),
            (Err(e), Err(want)) => {
                let db = e.as_db_error().expect("a server error");
                assert_eq!(db.code().code(), "42501", "{probe}: {db:?}");
                assert!(db.message().starts_with(want), "{probe}: {db:?}");
            }
            (got, want) => panic!("{probe}: got {got:?}, expected {want:?}"),
        }
        agent.batch_execute("COMMIT").await.ok();
    }
    assert_eq!(design_bodies().await, ["design: logo refresh", "design: palette"]);
}

/// The lookalike tenant sees its own rows and none of Dental's; a row it writes without naming a
/// tenant lands in its own (the default is the boundary's tenant), and on its tenant's shard.
async fn each_lookalike_tenant_reads_and_writes_its_own_rows_on_every_shard() {
    let agent = agent().await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &design_alice()).await.unwrap();
    assert_eq!(
        column(&agent, "SELECT body FROM public.notes UNION ALL SELECT body FROM public.later ORDER BY 1")
            .await
            .unwrap(),
        ["design: logo refresh", "design: palette"]
    );
    assert_eq!(
        column(&agent, "INSERT INTO public.notes (id, body) VALUES (7, 'design: brief') RETURNING tenant_id")
            .await
            .unwrap(),
        ["northstar-design"]
    );
    assert_eq!(
        column(&agent, "SELECT body FROM public.notes WHERE id = 7").await.unwrap(),
        ["design: brief"]
    );
    agent.batch_execute("COMMIT").await.unwrap();
    let admin = coordinator().connect("postgres").await;
    assert_eq!(
        column(&admin, "SELECT tenant_id FROM public.notes WHERE id = 7").await.unwrap(),
        ["northstar-design"]
    );
    admin.batch_execute("DELETE FROM public.notes WHERE id = 7").await.unwrap();
}

/// A pooled coordinator connection serves Dental, then a request that enters nothing: Citus
/// keeps its worker connections, and the boundary did not stay on them. exit() takes it off the
/// workers too.
async fn the_next_request_on_a_pooled_connection_gets_no_boundary_on_the_workers() {
    let agent = agent().await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    assert_eq!(column(&agent, "SELECT body FROM public.notes").await.unwrap(), ["dental: crown follow-up"]);
    agent.batch_execute("COMMIT").await.unwrap();
    for probe in PROBES {
        assert_refused(column(&agent, probe).await, "42501", "no agent boundary is set");
    }
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    assert_eq!(column(&agent, "SELECT body FROM public.later").await.unwrap(), ["dental: x-ray"]);
    agent.batch_execute("SELECT boundary.exit()").await.unwrap();
    assert_refused(
        column(&agent, "SELECT body FROM public.later").await,
        "42501",
        "no agent boundary is set",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
}

/// The tasks (shard queries) a statement's plan has, and the node of its first, from EXPLAIN.
async fn tasks(client: &Client, sql: &str) -> (String, String) {
    let plan = column(client, &format!("EXPLAIN (COSTS OFF) {sql}")).await.unwrap();
    let find = |prefix: &str| {
        plan.iter().find_map(|line| line.trim().strip_prefix(prefix).map(str::to_string)).unwrap_or_default()
    };
    (find("Task Count: "), find("Node: "))
}

/// Inside a boundary, a query that does not name its tenant runs on that tenant's shard only,
/// the same one a hand-written WHERE reaches; so do UPDATE and DELETE.
async fn a_query_that_names_no_tenant_runs_on_its_tenants_shard_only() {
    let agent = agent().await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    let by_hand = tasks(&agent, "SELECT body FROM public.notes WHERE tenant_id = 'northstar-dental'").await;
    assert_eq!(by_hand.0, "1");
    for sql in [
        "SELECT body FROM public.notes",
        "SELECT n.body FROM public.notes n JOIN public.later l USING (tenant_id, id)",
        "UPDATE public.notes SET body = body WHERE id = 1",
        "DELETE FROM public.later WHERE id = 99",
    ] {
        assert_eq!(tasks(&agent, sql).await, by_hand, "{sql}");
    }
    assert_eq!(column(&agent, "SELECT body FROM public.notes").await.unwrap(), ["dental: crown follow-up"]);
    // Switched off, the same query runs on every shard and answers the same.
    agent.batch_execute("SET LOCAL agent_boundary.route_to_tenant_shard = off").await.unwrap();
    assert_eq!(tasks(&agent, "SELECT body FROM public.notes").await.0, "32");
    assert_eq!(column(&agent, "SELECT body FROM public.notes").await.unwrap(), ["dental: crown follow-up"]);
    agent.batch_execute("COMMIT").await.unwrap();
    // Without a boundary nothing is routed, and the shards refuse even to plan it.
    assert_refused(
        column(&agent, "EXPLAIN (COSTS OFF) SELECT body FROM public.notes").await,
        "42501",
        "no agent boundary is set",
    );
}

/// A pooled connection keeps its prepared statements: one planned inside Dental's boundary is
/// planned again for Design's (else it would go to Dental's shard, and answer nothing), and
/// without a boundary it fails on the shard.
async fn a_prepared_query_follows_each_tenant_on_a_pooled_connection() {
    let agent = agent().await;
    let statement = agent.prepare("SELECT body FROM public.notes").await.unwrap();
    let bodies =
        |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
    for (token, expected) in
        [(dental_alice(), "dental: crown follow-up"), (design_alice(), "design: logo refresh")]
            .into_iter()
            .cycle()
            .take(4)
    {
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        assert_eq!(bodies(agent.query(&statement, &[]).await.unwrap()), [expected]);
        agent.batch_execute("COMMIT").await.unwrap();
    }
    assert_refused(agent.query(&statement, &[]).await, "42501", "no agent boundary is set");
}

/// vector_search on a distributed table: filtered before ranking on the tenant's shard, so each
/// lookalike tenant gets exactly k of its own rows, even where the other's are all nearer.
async fn vector_search_on_a_distributed_table_returns_k_rows_of_the_tenant() {
    let admin = coordinator().connect("postgres").await;
    admin
        .batch_execute(
            "SET citus.enable_unsafe_triggers = on;
             CREATE TABLE public.chunks (tenant_id text NOT NULL, id bigint NOT NULL, embedding vector(3),
                                         PRIMARY KEY (tenant_id, id));
             SELECT count(*) FROM boundary.protect('public.chunks');
             SELECT pg_catalog.create_distributed_table('public.chunks', 'tenant_id');
             SELECT boundary.vector_index('public.chunks');
             INSERT INTO public.chunks SELECT 'northstar-design', g, ARRAY[1, g * 0.001, 0]::vector
               FROM generate_series(1, 50) g;
             INSERT INTO public.chunks SELECT 'northstar-dental', 100 + g, ARRAY[g, 10, 0]::vector
               FROM generate_series(1, 5) g;
             GRANT SELECT ON public.chunks TO agent;",
        )
        .await
        .unwrap();
    // On its own, so that it runs on the coordinator: Citus pushes a function joined with a
    // distributed table down to the workers, where the table is a shell without data.
    let nearest = "SELECT string_agg(id, ',' ORDER BY distance)
                     FROM boundary.vector_search('public.chunks', '[1,0,0]', 3)";
    for (token, expected) in [(dental_alice(), "105,104,103"), (design_alice(), "1,2,3")] {
        let agent = agent().await;
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        assert_eq!(column(&agent, nearest).await.unwrap(), [expected]);
        agent.batch_execute("COMMIT").await.unwrap();
    }
    admin.batch_execute("DROP TABLE public.chunks").await.unwrap();
}

/// Dental's boundary as Citus carries it to the workers, captured the way an attacker could
/// (here simply read back by the role that entered it), and the Citus global pid that entered it.
async fn captured_cluster_boundary() -> (String, String) {
    let agent = agent().await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    let value = column(&agent, "SHOW agent_boundary.cluster_boundary").await.unwrap().remove(0);
    let gpid = column(&agent, "SELECT pg_catalog.citus_backend_gpid()").await.unwrap().remove(0);
    agent.batch_execute("COMMIT").await.unwrap();
    assert_eq!(value.split('.').count(), 3, "a sealed value: {value}");
    (value, gpid)
}

const REFUSED_SET: &str = "agent_boundary.cluster_boundary can only be set by boundary.enter()";

/// A captured value cannot be set anywhere but by boundary.enter on the coordinator: not by
/// SET LOCAL on the coordinator (so Citus never carries it), not as a role default, not on a
/// worker outside Citus' connections, not with a forged application_name, not over Citus'
/// connections of another backend, not tampered with; and once master_run_on_worker is revoked
/// the agent cannot reach the workers with its own SQL at all.
async fn a_captured_worker_boundary_is_refused_everywhere_else() {
    let (value, gpid) = captured_cluster_boundary().await;
    let agent = agent().await;
    agent.batch_execute("BEGIN; SET LOCAL citus.propagate_set_commands = 'local'").await.unwrap();
    let refused = assert_refused(
        agent.batch_execute(&format!("SET LOCAL agent_boundary.cluster_boundary = '{value}'")).await,
        "42501",
        REFUSED_SET,
    );
    assert_eq!(
        refused.detail(),
        Some("Refused: only boundary.enter sets it; a worker accepts it only on Citus' own connections.")
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_refused(
        agent
            .batch_execute(&format!("ALTER ROLE agent SET agent_boundary.cluster_boundary = '{value}'"))
            .await,
        "42501",
        REFUSED_SET,
    );
    for probe in PROBES {
        assert_refused(column(&agent, probe).await, "42501", "no agent boundary is set");
    }

    // Over Citus' own connections of another backend, while master_run_on_worker is granted
    // (Citus names those connections by SET; RESET gives them back the name they connected with).
    let admin = coordinator().connect("postgres").await;
    admin.batch_execute(&format!("GRANT EXECUTE ON FUNCTION {MASTER_RUN_ON_WORKER} TO agent")).await.unwrap();
    let replay = format!(
        "SELECT success::text || ' ' || result FROM pg_catalog.run_command_on_workers(
           $cmd$DO $do$BEGIN RESET application_name; SET LOCAL agent_boundary.cluster_boundary = '{value}'; END$do$$cmd$)"
    );
    let answers = column(&agent, &replay).await;
    let lint = column(&admin, LINT).await.unwrap();
    admin
        .batch_execute(&format!("REVOKE EXECUTE ON FUNCTION {MASTER_RUN_ON_WORKER} FROM agent"))
        .await
        .unwrap();
    let answers = answers.unwrap();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for answer in answers {
        assert!(answer.starts_with("false ") && answer.contains(REFUSED_SET), "{answer}");
    }
    assert_eq!(
        lint,
        [format!("{MASTER_RUN_ON_WORKER} | agent can run its own SQL on the Citus workers over Citus' connections (so can run_command_on_workers and the other run_command_on_* functions built on it), where it could replay a boundary seen in a worker's log or pg_stat_activity")]
    );
    assert_refused(
        column(&agent, &replay).await,
        "42501",
        "permission denied for function master_run_on_worker",
    );

    let worker = &citus().nodes[1];
    let direct = worker.connect("agent").await;
    let refused = assert_refused(
        direct.batch_execute(&format!("BEGIN; SET LOCAL agent_boundary.cluster_boundary = '{value}'")).await,
        "42501",
        REFUSED_SET,
    );
    assert_eq!(
        refused.detail(),
        Some("Refused: only boundary.enter sets it; a worker accepts it only on Citus' own connections.")
    );
    direct.batch_execute("ROLLBACK").await.unwrap();
    direct.batch_execute(&format!("SET application_name = 'citus_internal gpid={gpid}'")).await.unwrap();
    assert_refused(
        direct.batch_execute(&format!("BEGIN; SET LOCAL agent_boundary.cluster_boundary = '{value}'")).await,
        "42501",
        REFUSED_SET,
    );
    direct.batch_execute("ROLLBACK").await.unwrap();

    // On a connection that looks like Citus' own (a login to a worker that pg_hba.conf should not
    // allow an agent role), for another backend than the one that entered it.
    let other_gpid = gpid.parse::<u64>().unwrap() + 1;
    let mut config = worker.config("agent");
    config.application_name(format!("citus_internal gpid={other_gpid}"));
    let other = connect_with(config).await.unwrap();
    let refused = assert_refused(
        other.batch_execute(&format!("BEGIN; SET LOCAL agent_boundary.cluster_boundary = '{value}'")).await,
        "42501",
        REFUSED_SET,
    );
    assert_eq!(
        refused.detail().unwrap(),
        format!(
            "Refused: it was entered by Citus global pid {gpid}, and this connection serves {other_gpid}."
        )
    );
    // ... and for the backend that entered it, a value whose seal was changed.
    let mut config = worker.config("agent");
    config.application_name(format!("citus_internal gpid={gpid}"));
    let forged = connect_with(config).await.unwrap();
    let (payload_and_header, signature) = value.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{payload_and_header}.{flipped}{}", &signature[1..]);
    let refused = assert_refused(
        forged
            .batch_execute(&format!("BEGIN; SET LOCAL agent_boundary.cluster_boundary = '{tampered}'"))
            .await,
        "42501",
        REFUSED_SET,
    );
    assert_eq!(
        refused.detail(),
        Some("Refused: the seal does not verify with this node's cluster seal key.")
    );
    forged.batch_execute("ROLLBACK").await.unwrap();
}

/// A shard moved to the other worker (Citus recreates it there over its own connections, where
/// the extension's hooks stand aside) keeps the table's policies, and each tenant its rows.
async fn a_moved_shard_keeps_its_policies_and_each_tenant_its_rows() {
    let admin = coordinator().connect("postgres").await;
    let placement = "SELECT shardid || ' ' || nodeport FROM pg_catalog.pg_dist_shard_placement
                      WHERE shardid = pg_catalog.get_shard_id_for_distribution_column('public.notes', 'northstar-dental')";
    let before = column(&admin, placement).await.unwrap().remove(0);
    let (shard, from) = before.split_once(' ').unwrap();
    let to = citus().nodes[1..].iter().map(|n| n.port.to_string()).find(|port| port != from).unwrap();
    admin
        .batch_execute(&format!(
            "SELECT pg_catalog.citus_move_shard_placement({shard}, '127.0.0.1', {from}, '127.0.0.1', {to},
                                                       shard_transfer_mode => 'block_writes')"
        ))
        .await
        .unwrap();
    assert_eq!(column(&admin, placement).await.unwrap(), [format!("{shard} {to}")]);
    assert_eq!(column(&admin, LINT).await.unwrap(), Vec::<String>::new());
    no_shard_admits_a_row_by_a_bare_true().await;
    without_a_boundary_every_query_fails_on_every_shard().await;
    inside_dentals_boundary_every_query_sees_and_changes_only_dentals_rows().await;
    each_lookalike_tenant_reads_and_writes_its_own_rows_on_every_shard().await;
}

/// Every shard's policies, as the worker holding it has them: name, permissive or not, and the
/// expression, for one table.
async fn shard_policies(table: &str) -> Vec<String> {
    let admin = coordinator().connect("postgres").await;
    column(
        &admin,
        &format!(
            "SELECT result FROM pg_catalog.run_command_on_placements('{table}',
               $$SELECT string_agg(polname || ' ' || polpermissive || ' ' || coalesce(pg_get_expr(polqual, polrelid), '')
                                   || ' / ' || coalesce(pg_get_expr(polwithcheck, polrelid), ''), '; ' ORDER BY polname)
                   FROM pg_policy WHERE polrelid = '%s'::regclass$$)"
        ),
    )
    .await
    .unwrap()
}

async fn no_shard_admits_a_row_by_a_bare_true() {
    for table in ["public.notes", "public.later"] {
        let shards = shard_policies(table).await;
        assert_eq!(shards.len(), 32, "{table}: one result per shard (Citus' default 32, one placement each)");
        for shard in &shards {
            for policy in shard.split("; ") {
                assert!(
                    policy.contains("boundary.tenant_id()") || policy.contains("NOT boundary.installed()"),
                    "{table}: {policy}"
                );
            }
        }
    }
}

async fn the_lint_is_clean_only_when_every_shard_is_right() {
    let admin = coordinator().connect("postgres").await;
    let lint = LINT;
    assert_eq!(column(&admin, lint).await.unwrap(), Vec::<String>::new());
    // One shard's policy widened by hand on its worker.
    let shard = column(
        &admin,
        "SELECT shard_name(logicalrelid, shardid) || ' ' || nodeport FROM pg_dist_shard JOIN pg_dist_placement USING (shardid)
           JOIN pg_dist_node USING (groupid) WHERE logicalrelid = 'public.notes'::regclass ORDER BY shardid LIMIT 1",
    )
    .await
    .unwrap()
    .remove(0);
    let (shard, port) = shard.split_once(' ').unwrap();
    let worker = citus().nodes.iter().find(|n| n.port.to_string() == port).expect("the worker");
    let on_worker = worker.connect("postgres").await;
    on_worker.batch_execute(&format!("CREATE POLICY wide_open ON {shard} USING (true)")).await.unwrap();
    let found = column(&admin, lint).await.unwrap();
    on_worker.batch_execute(&format!("DROP POLICY wide_open ON {shard}")).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with(&format!("{shard} on 127.0.0.1:{port} | ")), "{found:?}");
    assert!(found[0].contains("differ from those of public.notes"), "{found:?}");
    // A policy protect() did not make, on the distributed table itself: Citus copies it to the
    // shards as permissive, where it would widen every boundary.
    admin
        .batch_execute("CREATE POLICY own_rule ON public.later AS RESTRICTIVE FOR SELECT USING (id > 0)")
        .await
        .unwrap();
    let found = column(&admin, lint).await.unwrap();
    admin.batch_execute("DROP POLICY own_rule ON public.later").await.unwrap();
    assert!(found.contains(&"public.later | policy own_rule was not made by protect(): Citus copies it to the shards as a permissive policy, where it widens what every boundary sees".to_string()), "{found:?}");
    assert_eq!(column(&admin, lint).await.unwrap(), Vec::<String>::new());
}

/// A database whose tables were protected before Citus came: the lint says which, and
/// reprotect() gives them the shape Citus copies correctly.
async fn tables_protected_before_citus_are_reported_until_reprotected() {
    let admin = coordinator().connect("postgres").await;
    admin.batch_execute("CREATE DATABASE before_citus").await.unwrap();
    let db = coordinator().connect_to("postgres", "before_citus").await;
    db.batch_execute(
        "CREATE EXTENSION agent_boundary CASCADE;
         CREATE TABLE public.notes (tenant_id text NOT NULL, id bigint NOT NULL, PRIMARY KEY (tenant_id, id));
         SELECT count(*) FROM boundary.protect('public.notes');
         CREATE EXTENSION citus;",
    )
    .await
    .unwrap();
    let lint = "SELECT object || ' | ' || problem FROM boundary.unprotected_tables() ORDER BY 1";
    assert_eq!(
        column(&db, lint).await.unwrap(),
        [
            format!("{MASTER_RUN_ON_WORKER} | every role (PUBLIC) can run its own SQL on the Citus workers over Citus' connections (so can run_command_on_workers and the other run_command_on_* functions built on it), where it could replay a boundary seen in a worker's log or pg_stat_activity"),
            "public.notes | it was protected before Citus was installed: Citus copies its policies to shards without AS RESTRICTIVE, and there boundary_allow admits every row".to_string(),
        ]
    );
    db.batch_execute(&format!("REVOKE EXECUTE ON FUNCTION {MASTER_RUN_ON_WORKER} FROM PUBLIC"))
        .await
        .unwrap();
    db.batch_execute("SELECT count(*) FROM boundary.reprotect('public.notes')").await.unwrap();
    assert_eq!(column(&db, lint).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        column(&db, "SELECT string_agg(polname || ' ' || polpermissive, ', ' ORDER BY polname) FROM pg_policy WHERE polrelid = 'public.notes'::regclass").await.unwrap(),
        ["boundary_allow true, boundary_delete true, boundary_insert true, boundary_select true, boundary_update true"]
    );
    drop(db);
    admin.batch_execute("DROP DATABASE before_citus WITH (FORCE)").await.unwrap();
}

const LINT: &str = "SELECT object || ' | ' || problem FROM boundary.unprotected_tables() ORDER BY 1";

/// A migration's ALTER TABLE on a protected distributed table: the event trigger re-protects it
/// on the coordinator and Citus replays that on every worker, where the worker's own event
/// triggers stand aside; reprotect() (the lint's fix) works the same way.
async fn schema_changes_on_protected_distributed_tables_keep_every_shard_right() {
    let admin = coordinator().connect("postgres").await;
    admin.batch_execute("ALTER TABLE public.notes ADD COLUMN extra int").await.unwrap();
    assert_eq!(column(&admin, LINT).await.unwrap(), Vec::<String>::new());
    admin.batch_execute("SELECT count(*) FROM boundary.reprotect('public.later')").await.unwrap();
    admin.batch_execute("ALTER TABLE public.notes DROP COLUMN extra").await.unwrap();
    assert_eq!(column(&admin, LINT).await.unwrap(), Vec::<String>::new());
    no_shard_admits_a_row_by_a_bare_true().await;
    without_a_boundary_every_query_fails_on_every_shard().await;
}

/// Auto-protection configured on every node: a new table is protected on the coordinator and
/// distributed (the workers do not protect its shards a second time); reference tables,
/// protected or not, are created.
async fn auto_protected_and_reference_tables_distribute() {
    for node in &citus().nodes {
        node.connect("postgres")
            .await
            .batch_execute(
                "SET citus.enable_ddl_propagation = off;
                 ALTER DATABASE postgres SET agent_boundary.auto_protect_schemas = 'public'",
            )
            .await
            .unwrap();
    }
    let admin = coordinator().connect("postgres").await;
    let created = admin
        .batch_execute(
            "SET citus.enable_unsafe_triggers = on;
             CREATE TABLE public.auto_notes (tenant_id text NOT NULL, id bigint NOT NULL, PRIMARY KEY (tenant_id, id));
             SELECT pg_catalog.create_distributed_table('public.auto_notes', 'tenant_id');
             CREATE TABLE public.plans (code text PRIMARY KEY);
             SELECT pg_catalog.create_reference_table('public.plans');
             CREATE TABLE public.shared_kb (tenant_id text NOT NULL, id bigint NOT NULL, PRIMARY KEY (tenant_id, id));
             SELECT pg_catalog.create_reference_table('public.shared_kb');",
        )
        .await;
    for node in &citus().nodes {
        node.connect("postgres")
            .await
            .batch_execute(
                "SET citus.enable_ddl_propagation = off; ALTER DATABASE postgres RESET agent_boundary.auto_protect_schemas",
            )
            .await
            .unwrap();
    }
    created.unwrap();
    // (A new session: the old one still lists public, where plans has no tenant column.)
    let admin = coordinator().connect("postgres").await;
    assert_eq!(column(&admin, LINT).await.unwrap(), Vec::<String>::new());
    for table in ["public.auto_notes", "public.shared_kb"] {
        for shard in shard_policies(table).await {
            assert!(
                shard.contains("boundary_select true (tenant_id = boundary.tenant_id())"),
                "{table}: {shard}"
            );
        }
    }
    let agent = agent().await;
    admin.batch_execute("GRANT SELECT ON public.auto_notes, public.shared_kb TO agent").await.unwrap();
    for probe in ["SELECT id FROM public.auto_notes", "SELECT id FROM public.shared_kb"] {
        assert_refused(column(&agent, probe).await, "42501", "no agent boundary is set");
    }
}

/// A coordinator that holds shards too, with auto-protection adding the tenant column: a
/// framework's table gets the column, its policies and its shards (some on the coordinator, made
/// in the coordinator's own backend) alike; each tenant writes and reads only its own rows.
async fn auto_protect_add_columns_on_a_coordinator_that_holds_shards() {
    let admin = coordinator().connect("postgres").await;
    admin
        .execute(
            "SELECT pg_catalog.citus_set_node_property('127.0.0.1', $1, 'shouldhaveshards', true)",
            &[&(coordinator().port as i32)],
        )
        .await
        .unwrap();
    let settings = |action: &'static str| async move {
        for node in &citus().nodes {
            node.connect("postgres")
                .await
                .batch_execute(&format!("SET citus.enable_ddl_propagation = off; {action}"))
                .await
                .unwrap();
        }
    };
    settings(
        "ALTER DATABASE postgres SET agent_boundary.auto_protect_schemas = 'public';
         ALTER DATABASE postgres SET agent_boundary.auto_protect_add_columns = 'tenant'",
    )
    .await;
    let created = coordinator()
        .connect("postgres")
        .await
        .batch_execute(
            "SET citus.enable_unsafe_triggers = on;
             CREATE TABLE public.fw_runs (key text PRIMARY KEY, value jsonb);
             SELECT pg_catalog.create_distributed_table('public.fw_runs', 'tenant_id', colocate_with => 'none');
             GRANT SELECT, INSERT ON public.fw_runs TO agent;",
        )
        .await;
    settings(
        "ALTER DATABASE postgres RESET agent_boundary.auto_protect_schemas;
         ALTER DATABASE postgres RESET agent_boundary.auto_protect_add_columns",
    )
    .await;
    created.unwrap();
    assert_ne!(tenant_with_shard_on(coordinator().port).await, "");
    assert_eq!(column(&admin, LINT).await.unwrap(), Vec::<String>::new());
    for (token, tenant) in [(dental_alice(), "northstar-dental"), (design_alice(), "northstar-design")] {
        let agent = agent().await;
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        agent
            .batch_execute("INSERT INTO public.fw_runs (key, value) VALUES ('a', '{}'), ('b', '{}'); COMMIT")
            .await
            .unwrap();
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        assert_eq!(
            column(
                &agent,
                "SELECT string_agg(tenant_id || '/' || key, ',' ORDER BY key) FROM public.fw_runs"
            )
            .await
            .unwrap(),
            [format!("{tenant}/a,{tenant}/b")]
        );
        agent.batch_execute("COMMIT").await.unwrap();
    }
}

/// A tenant id whose shard of public.fw_runs is on the node listening on `port`.
async fn tenant_with_shard_on(port: u16) -> String {
    let admin = coordinator().connect("postgres").await;
    column(
        &admin,
        &format!(
            "SELECT t FROM generate_series(1, 200) g, LATERAL (SELECT 'victim-' || g AS t) v
              WHERE (SELECT nodeport FROM pg_catalog.pg_dist_shard_placement
                      WHERE shardid = pg_catalog.get_shard_id_for_distribution_column('public.fw_runs', t)) = {port}
              ORDER BY g LIMIT 1"
        ),
    )
    .await
    .unwrap()
    .pop()
    .unwrap_or_default()
}

/// COPY and INSERT ... SELECT into a protected Citus table: a node copies those rows into the
/// shards it holds itself past row level security, so without the insert guard a tenant planted
/// rows in another tenant's shard on the coordinator. Into a shard there they are refused by the
/// guard; into one on a worker, Citus' COPY refuses them (row level security).
async fn copied_rows_never_land_in_another_tenants_shard() {
    let local = tenant_with_shard_on(coordinator().port).await;
    let remote = tenant_with_shard_on(citus().nodes[1].port).await;
    for (victim, sqlstate, message) in [
        (&local, "42501", "INSERT on protected table public.fw_runs_"),
        (&remote, "0A000", "COPY FROM not supported with row-level security"),
    ] {
        let agent = agent().await;
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &dental_alice()).await.unwrap();
        let planted = agent
            .batch_execute(&format!(
                "INSERT INTO public.fw_runs (tenant_id, key, value) SELECT '{victim}', 'planted', '{{}}'"
            ))
            .await;
        let refused = assert_refused_starting(planted, sqlstate, message);
        agent.batch_execute("ROLLBACK; BEGIN").await.unwrap();
        enter(&agent, &dental_alice()).await.unwrap();
        let sink = agent.copy_in("COPY public.fw_runs (tenant_id, key, value) FROM STDIN").await.unwrap();
        let copied = {
            use futures_util::SinkExt;
            let mut sink = Box::pin(sink);
            sink.send(bytes::Bytes::from(format!("{victim}\tcopied\t{{}}\n"))).await.unwrap();
            sink.as_mut().finish().await
        };
        assert_refused_starting(copied, sqlstate, message);
        agent.batch_execute("ROLLBACK").await.unwrap();
        drop(refused);
    }
    let admin = coordinator().connect("postgres").await;
    assert_eq!(
        column(
            &admin,
            &format!("SELECT count(*)::text FROM public.fw_runs WHERE tenant_id IN ('{local}', '{remote}')")
        )
        .await
        .unwrap(),
        ["0"]
    );
}

/// COPY out of a protected Citus table inside a boundary: the tenant's rows only, or an error.
async fn copy_out_reads_only_the_tenants_rows_or_fails_closed() {
    let agent = agent().await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    let copy_out = |sql: &'static str| {
        let agent = &agent;
        async move {
            use futures_util::TryStreamExt;
            let stream = agent.copy_out(sql).await?;
            let chunks: Vec<bytes::Bytes> = Box::pin(stream).try_collect().await?;
            Ok::<_, tokio_postgres::Error>(chunks.concat())
        }
    };
    let rows = copy_out("COPY (SELECT tenant_id FROM public.fw_runs ORDER BY key) TO STDOUT").await.unwrap();
    assert_eq!(String::from_utf8(rows).unwrap(), "northstar-dental\nnorthstar-dental\n");
    // Citus reads the table's shards over connections of its own: where the boundary is not
    // carried on them, the shards refuse; where it is, they give the tenant's rows.
    match copy_out("COPY public.fw_runs (tenant_id) TO STDOUT").await {
        Ok(rows) => assert_eq!(String::from_utf8(rows).unwrap(), "northstar-dental\nnorthstar-dental\n"),
        Err(e) => {
            let db = e.as_db_error().expect("a server error");
            assert_eq!((db.code().code(), db.message()), ("42501", "no agent boundary is set"));
        }
    }
    agent.batch_execute("ROLLBACK").await.unwrap();
}

/// Like `assert_refused`, for a message that starts with `prefix` (it names a shard).
/// The key and registry tables are reference tables (the fixture ran
/// boundary.distribute_own_tables()): a key made and a principal registered on the coordinator
/// let a client of a worker enter there, its distributed query carries the boundary to the other
/// nodes, and a revocation or a retired key on the coordinator is seen at once by every node,
/// remembered verdicts included.
async fn every_node_enters_with_the_coordinators_keys_and_registry_and_forgets_what_they_revoke() {
    let admin = coordinator().connect("postgres").await;
    admin
        .batch_execute(
            "SELECT boundary.generate_signing_key('cluster-2026');
             SELECT boundary.register_principal('northstar-dental', 'support', 'carol', 'member')",
        )
        .await
        .unwrap();
    let sign = "SELECT boundary.sign('{\"tenant_id\": \"northstar-dental\", \"workspace_id\": \"support\", \
                \"user_id\": \"carol\", \"role\": \"member\"}', '10 minutes', 'cluster-2026')";
    let carol = column(&admin, sign).await.unwrap().remove(0);
    // One connection per node, kept: the second enter on each is a remembered verdict.
    let mut sessions = Vec::new();
    for node in &citus().nodes {
        sessions.push(node.connect("agent").await);
    }
    let read = "SELECT body FROM public.notes UNION ALL SELECT body FROM public.later ORDER BY 1";
    for session in &sessions {
        session.batch_execute("BEGIN").await.unwrap();
        enter(session, &carol).await.unwrap();
        assert_eq!(column(session, read).await.unwrap(), ["dental: crown follow-up", "dental: x-ray"]);
        session.batch_execute("COMMIT").await.unwrap();
    }
    let refused_everywhere = |sqlstate: &'static str, message: &'static str| {
        let sessions = &sessions;
        let carol = &carol;
        async move {
            for session in sessions {
                session.batch_execute("BEGIN").await.unwrap();
                assert_refused(enter(session, carol).await, sqlstate, message);
                session.batch_execute("ROLLBACK").await.unwrap();
            }
        }
    };
    admin.batch_execute("SELECT boundary.revoke('northstar-dental', 'support', 'carol')").await.unwrap();
    refused_everywhere("42501", "agent boundary refused: the principal has been revoked").await;
    // A TRUNCATE (its statement trigger is on every placement too); the other principals are
    // put back afterwards (the tests run one at a time).
    admin
        .batch_execute("SELECT boundary.register_principal('northstar-dental', 'support', 'carol', 'member')")
        .await
        .unwrap();
    for session in &sessions {
        session.batch_execute("BEGIN").await.unwrap();
        enter(session, &carol).await.unwrap();
        session.batch_execute("COMMIT").await.unwrap();
    }
    admin
        .batch_execute(
            "CREATE TABLE public.kept_principals AS SELECT * FROM boundary.principals WHERE user_id <> 'carol';
             TRUNCATE boundary.principals",
        )
        .await
        .unwrap();
    refused_everywhere(
        "42501",
        "agent boundary refused: no registered principal for tenant_id \"northstar-dental\", workspace_id \"support\", user_id \"carol\"",
    )
    .await;
    admin
        .batch_execute(
            "INSERT INTO boundary.principals SELECT * FROM public.kept_principals; DROP TABLE public.kept_principals",
        )
        .await
        .unwrap();
    admin
        .batch_execute(
            "SELECT boundary.register_principal('northstar-dental', 'support', 'carol', 'member');
             SELECT boundary.retire_signing_key('cluster-2026')",
        )
        .await
        .unwrap();
    refused_everywhere(
        "28000",
        "agent boundary token refused: signed with an unknown or retired key id \"cluster-2026\"",
    )
    .await;
    admin
        .batch_execute("DELETE FROM boundary.principals WHERE user_id = 'carol'; DELETE FROM boundary.signing_keys WHERE kid = 'cluster-2026'")
        .await
        .unwrap();
}

/// boundary.distribute_own_tables() runs on the coordinator only and may run again; the lint
/// reports key and registry tables that are not one copy on every node, and stores and audit log
/// local to each node (in a database of its own: Citus cannot turn a table that belongs to an
/// extension back into a local one).
async fn the_lint_reports_own_tables_local_to_each_node() {
    let worker = citus().nodes[1].connect("postgres").await;
    assert_refused(
        column(&worker, "SELECT boundary.distribute_own_tables()").await,
        "55000",
        "boundary.distribute_own_tables() runs on the Citus coordinator",
    );
    const DATABASE: &str = "own_tables";
    for node in &citus().nodes {
        let admin = node.connect("postgres").await;
        admin.batch_execute(&format!("CREATE DATABASE {DATABASE}")).await.unwrap();
        node.connect_to("postgres", DATABASE).await.batch_execute("CREATE EXTENSION citus").await.unwrap();
    }
    let admin = coordinator().connect_to("postgres", DATABASE).await;
    admin.batch_execute("CREATE EXTENSION agent_boundary CASCADE").await.unwrap();
    let refused = assert_refused(
        column(&admin, "SELECT boundary.distribute_own_tables()").await,
        "55000",
        "the coordinator is not in Citus' metadata, so it would hold no copy of the key and registry tables \
         and its backends would not forget what a change revokes",
    );
    assert_eq!(
        refused.hint(),
        Some(
            "SELECT citus_set_coordinator_host('<coordinator host>', <port>); then call \
             boundary.distribute_own_tables() again."
        )
    );
    admin
        .execute(
            "SELECT pg_catalog.citus_set_coordinator_host('127.0.0.1', $1)",
            &[&(coordinator().port as i32)],
        )
        .await
        .unwrap();
    for worker in &citus().nodes[1..] {
        admin
            .execute("SELECT pg_catalog.citus_add_node('127.0.0.1', $1)", &[&(worker.port as i32)])
            .await
            .unwrap();
    }
    let findings = "SELECT object || ' | ' || problem || ' | ' || fix FROM boundary.unprotected_tables()
                     WHERE object LIKE 'boundary.%' ORDER BY 1";
    let finding = |table: &str| {
        format!(
            "{table} | each node of the Citus cluster has its own copy: boundary.enter on a worker verifies \
             with that node's keys and registry, which no key rotation or revocation here reaches | \
             SELECT boundary.distribute_own_tables(); (on the coordinator: one copy on every node)"
        )
    };
    let local = |table: &str| {
        format!(
            "{table} | each node of the Citus cluster has its own copy: what it holds for a tenant (memories, \
             run state, cache entries, audit trail) is not seen on the other nodes | \
             SELECT boundary.distribute_own_tables(); (on the coordinator: distributed by tenant)"
        )
    };
    assert_eq!(
        column(&admin, findings).await.unwrap(),
        [
            local("boundary.audit_log"),
            local("boundary.cache"),
            local("boundary.memories"),
            finding("boundary.principals"),
            local("boundary.run_state"),
            finding("boundary.signing_keys")
        ]
    );
    assert_eq!(
        column(&admin, "SELECT boundary.distribute_own_tables()").await.unwrap(),
        [
            "boundary.signing_keys is now a reference table: one copy on every node",
            "boundary.principals is now a reference table: one copy on every node",
            "boundary.memories is now distributed by tenant_id",
            "boundary.run_state is now distributed by tenant_id",
            "boundary.cache is now distributed by tenant_id",
            "boundary.audit_log is now distributed by tenant_id",
        ]
    );
    assert_eq!(column(&admin, findings).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        column(&admin, "SELECT boundary.distribute_own_tables()").await.unwrap(),
        [
            "boundary.signing_keys is a reference table already",
            "boundary.principals is a reference table already",
            "boundary.memories is distributed already",
            "boundary.run_state is distributed already",
            "boundary.cache is distributed already",
            "boundary.audit_log is distributed already",
        ]
    );
    drop(admin);
    for node in &citus().nodes {
        let admin = node.connect("postgres").await;
        admin.batch_execute(&format!("DROP DATABASE {DATABASE} WITH (FORCE)")).await.unwrap();
    }
}

/// The stores distributed by tenant (boundary.distribute_own_tables()): lookalike tenants write
/// and read their memories, run state and cache entries through the functions on the
/// coordinator and on a worker, see only their own, promote and delete; plain SQL writes are
/// refused on the shards as on one node.
async fn lookalike_tenants_keep_their_stores_apart_on_every_shard() {
    let admin = coordinator().connect("postgres").await;
    assert_eq!(
        column(
            &admin,
            "SELECT concat_ws(' ', logicalrelid, partmethod) FROM pg_dist_partition
              WHERE logicalrelid::text IN ('boundary.memories', 'boundary.run_state', 'boundary.cache') ORDER BY 1",
        )
        .await
        .unwrap(),
        ["boundary.cache h", "boundary.memories h", "boundary.run_state h"]
    );
    let tenants = [("northstar-dental", "admin", "Dental"), ("northstar-design", "member", "Design")];
    for node in [&citus().nodes[0], &citus().nodes[1]] {
        let agent = node.connect("agent").await;
        for (tenant, role, who) in tenants {
            let token = app_token(tenant, "support", "alice", role, json!({"run_id": "run-stores"}));
            agent.batch_execute("BEGIN").await.unwrap();
            enter(&agent, &token).await.unwrap();
            agent
                .batch_execute(&format!(
                    "SELECT boundary.memory_set('renewal', to_jsonb('{who} renews'::text));
                     SELECT boundary.run_state_set('step', to_jsonb('{who} step'::text));
                     SELECT boundary.cache_put(boundary.cache_key('answers', 'when?', 'v1'), to_jsonb('{who} answer'::text));
                     SELECT boundary.promote('step')"
                ))
                .await
                .unwrap();
            agent.batch_execute("COMMIT").await.unwrap();
        }
        for (tenant, role, who) in tenants {
            let token = app_token(tenant, "support", "alice", role, json!({"run_id": "run-stores"}));
            agent.batch_execute("BEGIN").await.unwrap();
            enter(&agent, &token).await.unwrap();
            assert_eq!(
                column(
                    &agent,
                    "SELECT concat_ws(' | ', boundary.memory_get('renewal') #>> '{}', boundary.memory_get('step') #>> '{}',
                                      boundary.run_state_get('step') #>> '{}',
                                      boundary.cache_get(boundary.cache_key('answers', 'when?', 'v1')) #>> '{}')
                     UNION ALL SELECT string_agg(value #>> '{}', ', ' ORDER BY name) FROM boundary.memories
                     UNION ALL SELECT count(*)::text FROM boundary.run_state
                     UNION ALL SELECT count(*)::text FROM boundary.cache"
                )
                .await
                .unwrap(),
                [
                    format!("{who} renews | {who} step | {who} step | {who} answer"),
                    format!("{who} renews, {who} step"),
                    "1".into(),
                    "1".into()
                ]
            );
            for write in [
                "INSERT INTO boundary.memories (scope, namespace, name, key, value, created_by, updated_by)
                 VALUES ('workspace', boundary.memory_namespace(), 'x', 'x', '1', 'x', 'x')",
                "UPDATE boundary.memories SET value = '\"overwritten\"'",
                "DELETE FROM boundary.cache",
            ] {
                let refused = assert_refused_starting(column(&agent, write).await, "42501", "");
                assert!(
                    refused
                        .message()
                        .contains("is refused: the agent_boundary functions are the only way to change it"),
                    "{write}: {refused:?}"
                );
                agent.batch_execute("ROLLBACK; BEGIN").await.unwrap();
                enter(&agent, &token).await.unwrap();
            }
            assert_eq!(
                column(&agent, "SELECT boundary.memory_delete('step')::text || ' ' || boundary.memory_delete('step')::text")
                    .await
                    .unwrap(),
                ["true false"]
            );
            agent.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert_eq!(
        column(
            &admin,
            "SELECT tenant_id || ' ' || count(*) FROM boundary.memories GROUP BY tenant_id
             UNION ALL SELECT 'purged ' || boundary.purge_expired() ORDER BY 1"
        )
        .await
        .unwrap(),
        ["northstar-dental 1", "northstar-design 1", "purged 0"]
    );
    // Both tenants' run state and cache entries expire; one purge removes them from every shard.
    admin
        .batch_execute(
            "UPDATE boundary.run_state SET expires_at = now() - interval '1 second';
             UPDATE boundary.cache SET expires_at = now() - interval '1 second'",
        )
        .await
        .unwrap();
    assert_eq!(
        column(
            &admin,
            "SELECT boundary.purge_expired()::text;
             SELECT (SELECT count(*) FROM boundary.run_state) || ' ' || (SELECT count(*) FROM boundary.cache)"
        )
        .await
        .unwrap(),
        ["4", "0 0"]
    );
    admin
        .batch_execute(
            "DELETE FROM boundary.memories; DELETE FROM boundary.run_state; DELETE FROM boundary.cache",
        )
        .await
        .unwrap();
}

/// The audit log distributed by tenant (boundary.distribute_own_tables()): boundaries entered on
/// the coordinator and on a worker are written by each node's audit writer into the tenant's
/// shard, and each reader, on a node where nobody entered, reads the whole trail of its tenant
/// (an admin) or of itself (anyone else), never the lookalike tenant's; events of no tenant have
/// tenant_id ''; the trail stays append-only on every shard, and only the purge removes rows.
async fn each_tenant_reads_its_whole_audit_trail_from_any_node() {
    let admin = coordinator().connect("postgres").await;
    assert_eq!(
        column(&admin, "SELECT partmethod::text FROM pg_dist_partition WHERE logicalrelid = 'boundary.audit_log'::regclass")
            .await
            .unwrap(),
        ["h"]
    );
    let principals = [
        ("northstar-dental", "alice", "admin"),
        ("northstar-dental", "bob", "viewer"),
        ("northstar-design", "alice", "member"),
    ];
    let token = |tenant: &str, user: &str, role: &str, trace: &str| {
        app_token(tenant, "support", user, role, json!({"trace_id": trace}))
    };
    for (at, node) in [("coordinator", &citus().nodes[0]), ("worker1", &citus().nodes[1])] {
        let agent = node.connect("agent").await;
        for (tenant, user, role) in principals {
            agent.batch_execute("BEGIN").await.unwrap();
            enter(&agent, &token(tenant, user, role, &format!("trail {at} {tenant} {user}"))).await.unwrap();
            agent.batch_execute("COMMIT").await.unwrap();
        }
        node.connect("postgres").await.batch_execute("SELECT boundary.flush_audit_log()").await.unwrap();
    }
    let trail = "SELECT string_agg(trace_id, ', ' ORDER BY trace_id) FROM boundary.audit_log
                  WHERE event = 'enter' AND trace_id LIKE 'trail %'";
    let reader = citus().nodes[2].connect("agent").await;
    // Until its node's audit writer runs, an enter writes its row itself, as the extension's
    // owner, and Citus refuses that transaction's later read of the audit log (documented).
    let mut warm_up = 0;
    loop {
        reader.batch_execute("BEGIN").await.unwrap();
        enter(&reader, &token("northstar-design", "alice", "member", &format!("warm-up {warm_up}")))
            .await
            .unwrap();
        let read = column(&reader, trail).await;
        reader.batch_execute("ROLLBACK").await.unwrap();
        match read {
            Ok(_) => break,
            Err(refused) => assert_refused::<()>(
                Err(refused),
                "25001",
                "cannot perform query on placements that were modified in this transaction by a different user",
            ),
        };
        warm_up += 1;
        assert!(warm_up < 100, "no audit writer started on the reader's node");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for ((tenant, user, role), expected) in principals.into_iter().zip([
        "trail coordinator northstar-dental alice, trail coordinator northstar-dental bob, \
         trail worker1 northstar-dental alice, trail worker1 northstar-dental bob",
        "trail coordinator northstar-dental bob, trail worker1 northstar-dental bob",
        "trail coordinator northstar-design alice, trail worker1 northstar-design alice",
    ]) {
        reader.batch_execute("BEGIN").await.unwrap();
        enter(&reader, &token(tenant, user, role, "reader")).await.unwrap();
        assert_eq!(column(&reader, trail).await.unwrap(), [expected], "{tenant} {user}");
        reader.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(
        column(
            &admin,
            "SELECT (SELECT count(*) FROM boundary.audit_log WHERE tenant_id IS NULL) || ' '
                 || (SELECT count(*) FROM boundary.audit_log WHERE tenant_id = '' AND event = 'protect' AND resource = 'public.notes')"
        )
        .await
        .unwrap(),
        ["0 1"]
    );
    for change in ["UPDATE boundary.audit_log SET trace_id = 'rewritten'", "DELETE FROM boundary.audit_log"] {
        let refused = assert_refused_starting(
            column(&admin, change).await,
            "42501",
            "boundary.audit_log is append-only: ",
        );
        assert!(refused.message().ends_with(" is refused"), "{refused:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        column(
            &admin,
            "SELECT (boundary.purge_audit_log('1 second') > 0)::text;
             SELECT count(*)::text FROM boundary.audit_log WHERE trace_id LIKE 'trail %';
             SELECT tenant_id || '|' || event FROM boundary.audit_log WHERE event = 'purge'"
        )
        .await
        .unwrap(),
        ["true", "0", "|purge"]
    );
}

fn assert_refused_starting<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    sqlstate: &str,
    prefix: &str,
) -> tokio_postgres::error::DbError {
    let err = result.expect_err("expected the server to refuse");
    let db = err.as_db_error().unwrap_or_else(|| panic!("not a server error: {err}")).clone();
    assert_eq!(db.code().code(), sqlstate, "{db:?}");
    assert!(db.message().starts_with(prefix), "{db:?}");
    db
}

/// Citus' connections are known by application_name, which any session may set. Given when
/// connecting, Citus itself refuses the session's boundary.enter (which reads the key and
/// registry tables, reference tables here, in what Citus takes for a query on a shard); set
/// inside a boundary it leaves no table unprotected (the table is not created), and outside one
/// the table it leaves unprotected is reported by the lint.
async fn a_forged_citus_application_name_changes_nothing_inside_a_boundary() {
    const FORGED: &str = "citus_internal gpid=10000000001";
    let mut config = coordinator().config("postgres");
    config.application_name(FORGED);
    let forged = connect_with(config).await.unwrap();
    forged.batch_execute("BEGIN").await.unwrap();
    assert_refused(
        enter(&forged, &dental_alice()).await,
        "XX000",
        "cannot execute a distributed query from a query on a shard",
    );
    forged.batch_execute("ROLLBACK").await.unwrap();
    let session = coordinator().connect("postgres").await;
    session.batch_execute("SET agent_boundary.auto_protect_schemas = 'public'; BEGIN").await.unwrap();
    enter(&session, &dental_alice()).await.unwrap();
    // Auto-protection protects the table and records that in the audit log, distributed by
    // tenant, which Citus then refuses to write from what it takes for a query on a shard: no
    // table at all.
    assert_refused(
        session
            .batch_execute(&format!(
                "SET LOCAL application_name = '{FORGED}'; CREATE TABLE public.sneaky (tenant_id text NOT NULL, id int)"
            ))
            .await,
        "XX000",
        "cannot execute a distributed query from a query on a shard",
    );
    let policies = "SELECT count(*)::text FROM pg_policy WHERE polrelid = 'public.sneaky'::regclass";
    session
        .batch_execute(&format!(
            "ROLLBACK; SET application_name = '{FORGED}'; CREATE TABLE public.sneaky (tenant_id text NOT NULL, id int)"
        ))
        .await
        .unwrap();
    assert_eq!(column(&session, policies).await.unwrap(), ["0"]);
    let admin = coordinator().connect("postgres").await;
    assert_eq!(
        column(&admin, LINT).await.unwrap(),
        ["public.sneaky | has a tenant_id column but no agent boundary policies"]
    );
    admin.batch_execute("DROP TABLE public.sneaky").await.unwrap();
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = trials![
        without_a_boundary_every_query_fails_on_every_shard,
        inside_dentals_boundary_every_query_sees_and_changes_only_dentals_rows,
        each_lookalike_tenant_reads_and_writes_its_own_rows_on_every_shard,
        the_next_request_on_a_pooled_connection_gets_no_boundary_on_the_workers,
        a_captured_worker_boundary_is_refused_everywhere_else,
        a_query_that_names_no_tenant_runs_on_its_tenants_shard_only,
        a_prepared_query_follows_each_tenant_on_a_pooled_connection,
        vector_search_on_a_distributed_table_returns_k_rows_of_the_tenant,
        no_shard_admits_a_row_by_a_bare_true,
        the_lint_is_clean_only_when_every_shard_is_right,
        tables_protected_before_citus_are_reported_until_reprotected,
        schema_changes_on_protected_distributed_tables_keep_every_shard_right,
        auto_protected_and_reference_tables_distribute,
        a_moved_shard_keeps_its_policies_and_each_tenant_its_rows,
        a_forged_citus_application_name_changes_nothing_inside_a_boundary,
        auto_protect_add_columns_on_a_coordinator_that_holds_shards,
        copied_rows_never_land_in_another_tenants_shard,
        copy_out_reads_only_the_tenants_rows_or_fails_closed,
        every_node_enters_with_the_coordinators_keys_and_registry_and_forgets_what_they_revoke,
        the_lint_reports_own_tables_local_to_each_node,
        lookalike_tenants_keep_their_stores_apart_on_every_shard,
        each_tenant_reads_its_whole_audit_trail_from_any_node,
    ];
    let conclusion = match citus_installed() {
        Err(why) => {
            println!("citus: skipped, not passed: {why}");
            libtest_mimic::run(&args, trials.into_iter().map(|t| t.with_ignored_flag(true)).collect())
        }
        Ok(()) => {
            start_citus();
            let conclusion = libtest_mimic::run(&args, trials);
            for node in &citus().nodes {
                node.stop();
            }
            conclusion
        }
    };
    conclusion.exit();
}
