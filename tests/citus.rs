//! agent_boundary on a real Citus cluster: a coordinator and two workers started from the
//! PostgreSQL the tests use, when Citus is installed there. Without Citus every test here is
//! reported as ignored, with one line saying why, and never counted as passed.
//!
//! What is checked is the first promise on Citus: it fails closed. Citus copies policies to
//! shards without their RESTRICTIVE flag, so protect() gives Citus databases permissive policies
//! that each carry the whole predicate; no shard admits a row by a bare `true`, every query
//! without a boundary fails, and the lint compares every shard's policies with the table's.
//! Then Citus DDL on protected tables: ALTER TABLE, reprotect(), auto-protection configured on
//! every node, reference tables, and a forged Citus application_name.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
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

const NODE_CONF: &[&str] = &[
    "shared_preload_libraries = 'citus'",
    "max_prepared_transactions = 20",
    "citus.log_remote_commands = off",
];

fn start_citus() {
    let nodes: Vec<Cluster> = ["citus-coordinator", "citus-worker1", "citus-worker2"]
        .iter()
        .map(|n| Cluster::start(n, NODE_CONF))
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
        admin.batch_execute(FIXTURE).await.expect("fixture");
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

async fn inside_another_tenants_boundary_no_query_reaches_designs_rows() {
    // Until the boundary reaches the workers, a boundary entered on the coordinator is not
    // there when a shard's policies ask for it: every query fails rather than answer.
    for probe in PROBES {
        let agent = agent().await;
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &dental_alice()).await.unwrap();
        match column(&agent, probe).await {
            Ok(rows) => panic!("{probe} answered inside Dental's boundary: {rows:?}"),
            Err(e) => {
                let db = e.as_db_error().expect("a server error");
                assert_eq!(
                    (db.code().code(), db.message()),
                    ("42501", "no agent boundary is set"),
                    "{probe}"
                );
            }
        }
    }
    assert_eq!(design_bodies().await, ["design: logo refresh", "design: palette"]);
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
        ["public.notes | it was protected before Citus was installed: Citus copies its policies to shards without AS RESTRICTIVE, and there boundary_allow admits every row"]
    );
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

/// Citus' connections are known by application_name, which any session may set: inside a
/// boundary a forged one changes nothing, and outside one the table it leaves unprotected is
/// reported by the lint.
async fn a_forged_citus_application_name_changes_nothing_inside_a_boundary() {
    let mut config = coordinator().config("postgres");
    config.application_name("citus_internal gpid=10000000001");
    let forged = connect_with(config).await.unwrap();
    forged.batch_execute("SET agent_boundary.auto_protect_schemas = 'public'; BEGIN").await.unwrap();
    enter(&forged, &dental_alice()).await.unwrap();
    forged.batch_execute("CREATE TABLE public.sneaky (tenant_id text NOT NULL, id int)").await.unwrap();
    let policies = "SELECT count(*)::text FROM pg_policy WHERE polrelid = 'public.sneaky'::regclass";
    assert_eq!(column(&forged, policies).await.unwrap(), ["5"]);
    forged
        .batch_execute("ROLLBACK; CREATE TABLE public.sneaky (tenant_id text NOT NULL, id int)")
        .await
        .unwrap();
    assert_eq!(column(&forged, policies).await.unwrap(), ["0"]);
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
        inside_another_tenants_boundary_no_query_reaches_designs_rows,
        no_shard_admits_a_row_by_a_bare_true,
        the_lint_is_clean_only_when_every_shard_is_right,
        tables_protected_before_citus_are_reported_until_reprotected,
        schema_changes_on_protected_distributed_tables_keep_every_shard_right,
        auto_protected_and_reference_tables_distribute,
        a_forged_citus_application_name_changes_nothing_inside_a_boundary,
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
