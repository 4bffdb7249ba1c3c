//! Day-two operations against a real server: a database that uses the extension is dumped with
//! pg_dump and restored with pg_restore, and keeps working as it did — tokens enter, each tenant
//! reads exactly its rows, the audit trail and the refusal counter continue.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const FIXTURE: &str = r#"
CREATE ROLE agent LOGIN NOBYPASSRLS;
CREATE TABLE public.tickets (tenant_id text NOT NULL, workspace_id text NOT NULL, id bigint NOT NULL,
                             subject text NOT NULL, PRIMARY KEY (tenant_id, id));
SELECT boundary.protect('public.tickets');
GRANT SELECT, INSERT ON public.tickets TO agent;
INSERT INTO public.tickets VALUES
    ('northstar-dental', 'support', 1, 'Crown fitting follow-up'),
    ('northstar-design', 'support', 1, 'Logo refresh for spring');
"#;

/// What the dumped database holds beyond the tickets, so a restore is checked on every
/// capability: a view over a protected table (the event trigger makes it security_invoker), a
/// vector table with its b-tree and HNSW indexes where Design's 300 rows lie nearer the query
/// than Dental's 3, and one durable memory per tenant written inside its boundary.
fn every_capability_fixture() -> String {
    let memory = |token: String, note: &str| {
        format!(
            "BEGIN; SELECT boundary.enter('{token}'); SELECT boundary.memory_set('renewal', to_jsonb('{note}'::text)); COMMIT;"
        )
    };
    format!(
        r#"
CREATE VIEW public.ticket_subjects AS SELECT tenant_id, subject FROM public.tickets;
GRANT SELECT ON public.ticket_subjects TO agent;
CREATE TABLE public.kb (tenant_id text NOT NULL, workspace_id text NOT NULL, id bigint NOT NULL,
                        embedding vector(3) NOT NULL, PRIMARY KEY (tenant_id, id));
SELECT count(*) FROM boundary.protect('public.kb');
INSERT INTO public.kb SELECT 'northstar-dental', 'support', g, ('[1,' || (0.2 * g) || ',0]')::vector
  FROM generate_series(1, 3) g;
INSERT INTO public.kb SELECT 'northstar-design', 'support', g, ('[1,' || (0.0001 * g) || ',0]')::vector
  FROM generate_series(101, 400) g;
SELECT count(*) FROM boundary.vector_index('public.kb');
ANALYZE public.kb;
GRANT SELECT ON public.kb TO agent;
SET ROLE agent;
{}
{}
RESET ROLE;
"#,
        memory(dental_alice(), "dental memory"),
        memory(design_alice(), "design memory")
    )
}

/// Every capability of a (restored) database answers each lookalike tenant with its own rows
/// only: the protected table, the view over it, vector search (exactly min(k, visible)), durable
/// memory; and the lint is clean.
async fn every_capability_answers(agent: &Client, admin: &Client) {
    for (token, ticket, vector_ids, memory) in [
        (dental_alice(), "northstar-dental Crown fitting follow-up", vec!["1", "2", "3"], "dental memory"),
        (
            design_alice(),
            "northstar-design Logo refresh for spring",
            vec!["101", "102", "103", "104", "105"],
            "design memory",
        ),
    ] {
        assert_eq!(read_tickets(agent, &token).await, [ticket]);
        agent.batch_execute("BEGIN").await.unwrap();
        enter(agent, &token).await.unwrap();
        let view =
            column(agent, "SELECT tenant_id || ' ' || subject FROM public.ticket_subjects").await.unwrap();
        let mut nearest =
            column(agent, "SELECT id FROM boundary.vector_search('public.kb', '[1,0,0]'::vector, 5)")
                .await
                .unwrap();
        nearest.sort_by_key(|id| id.parse::<i64>().unwrap());
        let remembered = column(agent, "SELECT boundary.memory_get('renewal') #>> '{}'").await.unwrap();
        agent.batch_execute("COMMIT").await.unwrap();
        assert_eq!(view, [ticket], "the view reads with the caller's policies");
        assert_eq!(nearest, vector_ids, "vector search ranks only the boundary's rows");
        assert_eq!(remembered, [memory]);
    }
    assert_eq!(
        column(admin, "SELECT count(*) FROM boundary.unprotected_tables()").await.unwrap(),
        ["0"],
        "the lint is clean"
    );
}

fn client_program(name: &str, database: &str) -> Command {
    client_program_as(name, "postgres", database)
}

fn client_program_as(name: &str, user: &str, database: &str) -> Command {
    client_program_on(cluster(), name, user, database)
}

fn client_program_on(server: &Cluster, name: &str, user: &str, database: &str) -> Command {
    let mut command = Command::new(pg_bin_dir().join(name));
    command.args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-U", user, "-d", database]);
    command
}

fn run_ok(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    assert!(!stderr.to_lowercase().contains("error"), "{what} reported errors:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One request of `token` on `client`: what it reads from tickets, committed.
async fn read_tickets(client: &Client, token: &str) -> Vec<String> {
    client.batch_execute("BEGIN").await.unwrap();
    enter(client, token).await.unwrap();
    let rows =
        column(client, "SELECT tenant_id || ' ' || subject FROM public.tickets ORDER BY id").await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    rows
}

async fn counters(admin: &Client) -> (i64, i64) {
    let row = admin
        .query_one("SELECT (SELECT max(id) FROM boundary.audit_log), boundary.blocked_events_total()", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `pg_dump -Fc` of `database`, the database dropped, then `pg_restore -C`, which brings it back
/// with its `ALTER DATABASE ... SET` settings first.
async fn dump_drop_and_restore_with_create(admin: &Client, database: &str) {
    let dump = PathBuf::from(&cluster().dir).join(format!("{database}.dump"));
    run_ok(client_program("pg_dump", database).args(["-Fc", "-f"]).arg(&dump), "pg_dump");
    admin.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.unwrap();
    run_ok(
        client_program("pg_restore", "postgres").args(["-C", "--exit-on-error"]).arg(&dump),
        "pg_restore -C",
    );
}

// pg_dump -Fc of a database with a protected table, keys, principals, audit rows and a refusal,
// pg_restore into a new database: old tokens enter there, each tenant reads exactly its rows,
// and the audit log's ids and the refusal counter go on from where they were (before, the first
// enter failed on audit_log_pkey and the counter started again from zero).
async fn a_restored_database_keeps_tokens_rows_and_counters() {
    let admin = cluster().connect("postgres").await;
    let agent = cluster().connect("agent").await;
    assert_eq!(read_tickets(&agent, &dental_alice()).await, ["northstar-dental Crown fitting follow-up"]);
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &app_token("northstar-dental", "support", "bob", "viewer", json!({}))).await.unwrap();
    assert_refused(
        column(&agent, "SELECT boundary.assert_tool('crm')").await,
        "42501",
        "tool crm is outside current boundary",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    let (last_audit_id, blocked) = counters(&admin).await;
    assert!(blocked >= 1);

    let dump = PathBuf::from(&cluster().dir).join("operations.dump");
    run_ok(client_program("pg_dump", "postgres").args(["-Fc", "-f"]).arg(&dump), "pg_dump");
    admin.batch_execute("CREATE DATABASE restored").await.unwrap();
    run_ok(client_program("pg_restore", "restored").args(["--exit-on-error"]).arg(&dump), "pg_restore");

    let restored_admin = cluster().connect_to("postgres", "restored").await;
    let restored_agent = cluster().connect_to("agent", "restored").await;
    every_capability_answers(&restored_agent, &restored_admin).await;
    let (restored_audit_id, restored_blocked) = counters(&restored_admin).await;
    assert!(
        restored_audit_id > last_audit_id,
        "the audit log goes on: {restored_audit_id} after {last_audit_id}"
    );
    assert_eq!(restored_blocked, blocked, "the refusal counter goes on");
    drop((restored_admin, restored_agent));
    admin.batch_execute("DROP DATABASE restored WITH (FORCE)").await.unwrap();
}

// A database whose settings turn auto-protection on, with a partitioned protected table, dumped
// and brought back with `pg_restore -C` (which restores those settings first): auto-protection
// stands aside while the dump replays its own policies, so the restore has no error, and
// afterwards it protects new tables again.
async fn pg_restore_create_with_auto_protection_on_replays_the_dump_without_errors() {
    let admin = cluster().connect("postgres").await;
    admin.batch_execute("CREATE DATABASE agents").await.unwrap();
    let source = cluster().connect_to("postgres", "agents").await;
    source
        .batch_execute(&format!(
            "{BASE_FIXTURE}
             ALTER DATABASE agents SET agent_boundary.auto_protect_schemas = 'public';
             CREATE TABLE public.events (tenant_id text NOT NULL, workspace_id text NOT NULL, id bigint NOT NULL,
                                         body text NOT NULL) PARTITION BY LIST (tenant_id);
             SELECT count(*) FROM boundary.protect('public.events');
             CREATE TABLE public.events_dental PARTITION OF public.events FOR VALUES IN ('northstar-dental');
             CREATE TABLE public.events_design PARTITION OF public.events FOR VALUES IN ('northstar-design');
             GRANT SELECT ON public.events TO agent;
             INSERT INTO public.events VALUES ('northstar-dental', 'support', 1, 'dental event'),
                                              ('northstar-design', 'support', 1, 'design event');"
        ))
        .await
        .unwrap();
    drop(source);
    dump_drop_and_restore_with_create(&admin, "agents").await;

    let restored = cluster().connect_to("postgres", "agents").await;
    let agent = cluster().connect_to("agent", "agents").await;
    for (token, row) in [(dental_alice(), "dental event"), (design_alice(), "design event")] {
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        assert_eq!(column(&agent, "SELECT body FROM public.events").await.unwrap(), [row]);
        agent.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(column(&restored, "SELECT count(*) FROM boundary.unprotected_tables()").await.unwrap(), ["0"]);
    // The restored setting is in force for new sessions: a new table is protected as it is made.
    let fresh = cluster().connect_to("postgres", "agents").await;
    fresh.batch_execute("CREATE TABLE public.notes (tenant_id text NOT NULL, body text)").await.unwrap();
    assert_eq!(
        column(&fresh, "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.notes'::regclass")
            .await
            .unwrap(),
        ["5"]
    );
    drop((restored, agent, fresh));
    admin.batch_execute("DROP DATABASE agents WITH (FORCE)").await.unwrap();
}

// Auto-protection turned off with boundary.set_auto_protection(false) stays off through
// pg_dump and pg_restore -C (an event trigger's disabled state is not dumped: before, the
// documented ALTER EVENT TRIGGER ... DISABLE came back enabled and new tables were protected).
async fn auto_protection_turned_off_stays_off_after_a_restore() {
    let admin = cluster().connect("postgres").await;
    admin.batch_execute("CREATE DATABASE quiet").await.unwrap();
    let source = cluster().connect_to("postgres", "quiet").await;
    source
        .batch_execute(&format!(
            "{BASE_FIXTURE}
             ALTER DATABASE quiet SET agent_boundary.auto_protect_schemas = 'public';
             SELECT boundary.set_auto_protection(false);"
        ))
        .await
        .unwrap();
    drop(source);
    let policies = |table: &'static str| {
        format!("SELECT count(*) FROM pg_catalog.pg_policy WHERE polrelid = 'public.{table}'::regclass")
    };
    dump_drop_and_restore_with_create(&admin, "quiet").await;

    let restored = cluster().connect_to("postgres", "quiet").await;
    restored.batch_execute("CREATE TABLE public.drafts (tenant_id text NOT NULL, body text)").await.unwrap();
    assert_eq!(column(&restored, &policies("drafts")).await.unwrap(), ["0"], "still off after the restore");
    restored.batch_execute("SELECT boundary.set_auto_protection(true)").await.unwrap();
    restored.batch_execute("CREATE TABLE public.notes (tenant_id text NOT NULL, body text)").await.unwrap();
    assert_eq!(column(&restored, &policies("notes")).await.unwrap(), ["5"], "and on again when turned on");
    drop(restored);
    admin.batch_execute("DROP DATABASE quiet WITH (FORCE)").await.unwrap();
}

// Restored by another superuser, owners kept (pg_restore's default): the extension's schema
// arrives first, empty and owned by the original superuser, and CREATE EXTENSION adopts it;
// every protected table then comes back with its rows (before, CREATE EXTENSION refused the
// schema and every table whose defaults call the boundary was lost with its data).
async fn another_superuser_restores_with_owners_kept() {
    let admin = cluster().connect("postgres").await;
    admin.batch_execute("CREATE ROLE restorer LOGIN SUPERUSER").await.unwrap();
    admin.batch_execute("CREATE DATABASE handed_over OWNER restorer").await.unwrap();
    let dump = PathBuf::from(&cluster().dir).join("handover.dump");
    run_ok(client_program("pg_dump", "postgres").args(["-Fc", "-f"]).arg(&dump), "pg_dump");
    run_ok(
        client_program_as("pg_restore", "restorer", "handed_over").args(["--exit-on-error"]).arg(&dump),
        "pg_restore as another superuser",
    );
    let agent = cluster().connect_to("agent", "handed_over").await;
    let restorer = cluster().connect_to("restorer", "handed_over").await;
    every_capability_answers(&agent, &restorer).await;
    drop((agent, restorer));
    admin.batch_execute("DROP DATABASE handed_over WITH (FORCE)").await.unwrap();
    admin.batch_execute("DROP ROLE restorer").await.unwrap();
}

// A plain SQL dump replayed with psql (stopping at the first error) into a fresh cluster, whose
// roles come first from `pg_dumpall --roles-only` as an operator would bring them: the same
// rows for the same tokens, and a clean lint.
async fn a_plain_sql_dump_replays_into_a_fresh_cluster() {
    let dir = PathBuf::from(&cluster().dir);
    let (plain, roles) = (dir.join("plain.sql"), dir.join("roles.sql"));
    run_ok(client_program("pg_dump", "postgres").args(["-Fp", "-f"]).arg(&plain), "pg_dump -Fp");
    run_ok(
        client_program("pg_dumpall", "dbname=postgres").args(["--roles-only", "-f"]).arg(&roles),
        "pg_dumpall --roles-only",
    );
    let fresh = Cluster::start("operations-fresh", &[]);
    // The fresh cluster has its own postgres role already, so that one statement fails: ignored.
    client_program_on(&fresh, "psql", "postgres", "postgres")
        .args(["-X", "-q", "-f"])
        .arg(&roles)
        .output()
        .unwrap();
    run_ok(
        client_program_on(&fresh, "psql", "postgres", "postgres")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&plain),
        "psql -f plain.sql",
    );
    let agent = fresh.connect("agent").await;
    let admin = fresh.connect("postgres").await;
    every_capability_answers(&agent, &admin).await;
    drop((agent, admin));
    fresh.stop();
}

/// Every object of the extension as text, for comparing two installs: functions with their
/// definitions and privileges, relations, columns, constraints, indexes, policies, triggers,
/// event triggers, comments, configuration-dump marks and the schema's privileges. Columns are
/// listed by name (an upgrade adds a column at the end, a fresh install where the script says).
const EXTENSION_CATALOG: &str = r#"
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_catalog.pg_extension WHERE extname = 'agent_boundary'),
members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
rels AS (SELECT objid AS oid FROM members WHERE classid = 'pg_catalog.pg_class'::regclass)
SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' ' || pg_catalog.pg_get_functiondef(p.oid)
       || ' acl ' || coalesce(p.proacl::text, 'default')
  FROM pg_catalog.pg_proc p JOIN members m ON m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' acl ' || coalesce(c.relacl::text, 'default')
       || ' rls ' || c.relrowsecurity || ' forced ' || c.relforcerowsecurity
  FROM pg_catalog.pg_class c JOIN rels USING (oid)
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
       || ' not null ' || a.attnotnull || ' identity ' || a.attidentity::text
       || ' default ' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
       || ' acl ' || coalesce(a.attacl::text, 'default')
  FROM pg_catalog.pg_attribute a JOIN rels ON rels.oid = a.attrelid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_catalog.pg_get_constraintdef(oid)
  FROM pg_catalog.pg_constraint WHERE conrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'index ' || pg_catalog.pg_get_indexdef(indexrelid) FROM pg_catalog.pg_index WHERE indrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'policy ' || polrelid::regclass || ' ' || polname || ' ' || polcmd::text || ' ' || polpermissive
       || ' ' || polroles::regrole[]::text || ' ' || coalesce(pg_catalog.pg_get_expr(polqual, polrelid), '')
       || ' ' || coalesce(pg_catalog.pg_get_expr(polwithcheck, polrelid), '')
  FROM pg_catalog.pg_policy WHERE polrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(oid) || ' enabled ' || tgenabled::text
  FROM pg_catalog.pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regproc || ' ' || evtenabled::text
       || ' ' || coalesce(evttags::text, '')
  FROM pg_catalog.pg_event_trigger e JOIN members m ON m.classid = 'pg_catalog.pg_event_trigger'::regclass AND m.objid = e.oid
UNION ALL
SELECT 'comment ' || pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || d.description
  FROM pg_catalog.pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
UNION ALL
SELECT 'configuration ' || c.rel::regclass || ' ' || coalesce(c.cond, '')
  FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(rel, cond)
UNION ALL
SELECT 'schema boundary acl ' || coalesce(nspacl::text, 'default') FROM pg_catalog.pg_namespace WHERE nspname = 'boundary'
ORDER BY 1
"#;

/// The released versions' install scripts, committed under sql/install/, oldest first.
fn released_versions() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/install");
    let mut versions: Vec<Vec<u32>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let version = name.strip_prefix("agent_boundary--")?.strip_suffix(".sql")?.to_string();
            Some(version.split('.').map(|n| n.parse().unwrap()).collect())
        })
        .collect();
    versions.sort();
    versions.iter().map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")).collect()
}

/// Where the previous release comes from in an upgrade test.
enum Previous {
    /// Its committed install script, served by this build's library.
    Script,
    /// Its own build (scripts/previous_release.sh) in the PostgreSQL installation whose binaries
    /// are in this directory; this build's files replace it under the running server.
    Build(PathBuf),
}

/// The previous release's build, installed by scripts/previous_release.sh (scripts/test.sh sets
/// AGENT_BOUNDARY_PREVIOUS_PGBIN), or why it is not there.
fn previous_build() -> Result<PathBuf, String> {
    let bin = std::env::var_os("AGENT_BOUNDARY_PREVIOUS_PGBIN").ok_or(
        "AGENT_BOUNDARY_PREVIOUS_PGBIN is not set (scripts/previous_release.sh builds the previous release)",
    )?;
    let bin = PathBuf::from(bin);
    match bin.join("pg_ctl").exists() {
        true => Ok(bin),
        false => Err(format!("no PostgreSQL in {} (AGENT_BOUNDARY_PREVIOUS_PGBIN)", bin.display())),
    }
}

fn pg_config(bin: &Path, what: &str) -> PathBuf {
    PathBuf::from(run_ok(Command::new(bin.join("pg_config")).arg(what), "pg_config").trim())
}

/// This build's library, control file and scripts copied over `previous`'s installation, the
/// way a package upgrade replaces them: each file renamed into place, so a backend starting
/// meanwhile loads the old library or the new one, never half of one.
fn replace_with_this_build(previous: &Path) {
    let (this, previous) = (pg_bin_dir(), previous);
    let mut files = vec![(
        pg_config(&this, "--pkglibdir"),
        pg_config(previous, "--pkglibdir"),
        "agent_boundary.so".into(),
    )];
    let (from, to) = (
        pg_config(&this, "--sharedir").join("extension"),
        pg_config(previous, "--sharedir").join("extension"),
    );
    for entry in std::fs::read_dir(&from).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("agent_boundary") {
            files.push((from.clone(), to.clone(), name));
        }
    }
    for (from, to, name) in files {
        let staged = to.join(format!(".{name}.new"));
        std::fs::copy(from.join(&name), &staged).unwrap();
        std::fs::rename(&staged, to.join(&name)).unwrap();
    }
}

/// The agent_boundary library this backend has loaded, as pg_get_loaded_modules() names it
/// ("name version"); nothing before PostgreSQL 18, which added that function.
async fn loaded_library(client: &Client) -> Vec<String> {
    let version = column(client, "SELECT pg_catalog.current_setting('server_version_num')").await.unwrap();
    if version[0].parse::<u32>().unwrap() < 180000 {
        return vec![];
    }
    column(
        client,
        "SELECT coalesce((SELECT concat_ws(' ', module_name, version) FROM pg_catalog.pg_get_loaded_modules() \
                           WHERE file_name = 'agent_boundary.so'), 'none')",
    )
    .await
    .unwrap()
}

/// The previous release with protected rows, tokens and audit rows; then ALTER EXTENSION ...
/// UPDATE: the catalog equals a fresh install's, and the data, tokens and the new version's
/// functions work. `previous` says where the old release comes from.
async fn update_from_the_previous_release(previous: Previous) {
    let versions = released_versions();
    let [.., previous_version, current] = versions.as_slice() else {
        panic!("need the previous release's install script in sql/install, found {versions:?}")
    };
    assert_eq!(current.as_str(), env!("CARGO_PKG_VERSION"), "the newest snapshot is this build's version");
    let own_server;
    let (server, fixture) = match &previous {
        Previous::Script => {
            let script = format!("agent_boundary--{previous_version}.sql");
            std::fs::copy(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/install").join(&script),
                pg_config(&pg_bin_dir(), "--sharedir").join("extension").join(&script),
            )
            .unwrap();
            // The shared cluster has the roles already.
            (cluster(), FIXTURE.replace("CREATE ROLE agent LOGIN NOBYPASSRLS;", ""))
        }
        Previous::Build(bin) => {
            own_server = Cluster::start_from(bin, "previous-build", &[]);
            (&own_server, FIXTURE.to_string())
        }
    };

    let admin = server.connect("postgres").await;
    for database in ["upgraded", "fresh"] {
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
    }
    let old = server.connect_to("postgres", "upgraded").await;
    let base = BASE_FIXTURE.replace(
        "CREATE EXTENSION agent_boundary CASCADE;",
        &format!("CREATE EXTENSION agent_boundary VERSION '{previous_version}' CASCADE;"),
    );
    old.batch_execute(&format!("{base}\n{fixture}")).await.unwrap();
    const INSTALLED: &str = "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'agent_boundary'";
    assert_eq!(column(&old, INSTALLED).await.unwrap(), std::slice::from_ref(previous_version));
    let agent = server.connect_to("agent", "upgraded").await;
    assert_eq!(read_tickets(&agent, &dental_alice()).await, ["northstar-dental Crown fitting follow-up"]);
    assert_eq!(read_tickets(&agent, &design_alice()).await, ["northstar-design Logo refresh for spring"]);
    let this_library = format!("agent_boundary {current}");
    let loaded = loaded_library(&agent).await;
    if let Previous::Build(bin) = &previous {
        // The previous build's library (0.2.0 reports its version as its name).
        assert!(
            loaded.iter().all(|l| l.contains(previous_version.as_str())),
            "not the previous build: {loaded:?}"
        );
        replace_with_this_build(bin);
    } else {
        assert!(loaded.iter().all(|l| *l == this_library), "not {this_library}: {loaded:?}");
    }
    // This build's library, in new backends, serves the previous version's SQL.
    let (old, agent) =
        (server.connect_to("postgres", "upgraded").await, server.connect_to("agent", "upgraded").await);
    assert_eq!(read_tickets(&agent, &dental_alice()).await, ["northstar-dental Crown fitting follow-up"]);
    assert_eq!(read_tickets(&agent, &design_alice()).await, ["northstar-design Logo refresh for spring"]);
    let loaded = loaded_library(&agent).await;
    assert!(loaded.iter().all(|l| *l == this_library), "new backends should load {this_library}: {loaded:?}");
    let (audit_before, _) = counters(&old).await;

    old.batch_execute("ALTER EXTENSION agent_boundary UPDATE").await.unwrap();
    assert_eq!(column(&old, INSTALLED).await.unwrap(), std::slice::from_ref(current));
    let new = server.connect_to("postgres", "fresh").await;
    new.batch_execute("CREATE EXTENSION agent_boundary CASCADE").await.unwrap();
    let (updated, fresh) =
        (column(&old, EXTENSION_CATALOG).await.unwrap(), column(&new, EXTENSION_CATALOG).await.unwrap());
    let only = |a: &[String], b: &[String]| a.iter().filter(|x| !b.contains(x)).cloned().collect::<Vec<_>>();
    assert!(
        updated == fresh,
        "the updated extension differs from a fresh install\nonly after the update:\n{}\nonly in a fresh install:\n{}",
        only(&updated, &fresh).join("\n"),
        only(&fresh, &updated).join("\n")
    );

    // Data, tokens, the audit trail and the lint carry on; the new version's functions work.
    let agent = server.connect_to("agent", "upgraded").await;
    assert_eq!(read_tickets(&agent, &dental_alice()).await, ["northstar-dental Crown fitting follow-up"]);
    assert_eq!(read_tickets(&agent, &design_alice()).await, ["northstar-design Logo refresh for spring"]);
    let (audit_after, _) = counters(&old).await;
    assert!(audit_after > audit_before, "the trail goes on: {audit_before} -> {audit_after}");
    assert_eq!(column(&old, "SELECT count(*) FROM boundary.unprotected_tables()").await.unwrap(), ["0"]);
    old.batch_execute(
        "SELECT boundary.set_auto_protection(false); SELECT boundary.set_auto_protection(true)",
    )
    .await
    .unwrap();
    drop((old, new, agent));
    for database in ["upgraded", "fresh"] {
        admin.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.unwrap();
    }
}

/// The previous release's SQL from its committed script, served by this build's library (as
/// after a library replaced under a database not yet updated), then updated.
async fn the_previous_release_serves_and_updates_to_a_fresh_install() {
    update_from_the_previous_release(Previous::Script).await;
}

/// The previous release's own build serves a database; this build's files replace it under the
/// running server, serve the old SQL in new backends, and ALTER EXTENSION ... UPDATE gives a
/// fresh install's catalog.
async fn the_previous_build_is_replaced_in_place_and_updates_to_a_fresh_install() {
    let bin = previous_build().expect("checked in main");
    update_from_the_previous_release(Previous::Build(bin)).await;
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    start_shared_cluster("operations", &format!("{FIXTURE}{}", every_capability_fixture()));
    let trials = trials![
        a_restored_database_keeps_tokens_rows_and_counters,
        pg_restore_create_with_auto_protection_on_replays_the_dump_without_errors,
        auto_protection_turned_off_stays_off_after_a_restore,
        another_superuser_restores_with_owners_kept,
        a_plain_sql_dump_replays_into_a_fresh_cluster,
        the_previous_release_serves_and_updates_to_a_fresh_install,
    ];
    let mut upgrade = trials![the_previous_build_is_replaced_in_place_and_updates_to_a_fresh_install];
    if let Err(why) = previous_build() {
        println!("operations: skipped, not passed: the upgrade from the previous build: {why}");
        upgrade = upgrade.into_iter().map(|t| t.with_ignored_flag(true)).collect();
    }
    let conclusion = libtest_mimic::run(&args, trials.into_iter().chain(upgrade).collect());
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
