// `#[pg_test]` units for generated row level security. Reads are checked as the ordinary role
// `agent_tester` (the test runner is a superuser and would bypass every policy).
//
// Included into a `#[pg_schema] mod tests` by the parent module: the attribute cannot
// be put on a module that lives in its own file, and pgrx runs these in schema "tests".

use crate::test_support::*;
use pgrx::prelude::*;
use serde_json::json;

/// public.tickets with two rows per lookalike tenant, protected, writable by agent_tester.
fn protected_tickets() -> Vec<String> {
    fixture();
    Spi::run(
        "CREATE TABLE public.tickets (tenant_id text NOT NULL, id bigint NOT NULL, note text,
                                      PRIMARY KEY (tenant_id, id));
         INSERT INTO public.tickets VALUES ('northstar-dental', 1, 'crown'), ('northstar-dental', 2, 'renewal'),
                                           ('northstar-design', 1, 'logo'), ('northstar-design', 2, 'renewal');
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.tickets TO agent_tester",
    )
    .unwrap();
    column("SELECT boundary.protect('public.tickets')")
}

fn column(sql: &str) -> Vec<String> {
    Spi::connect(|c| {
        c.select(sql, None, &[])
            .unwrap()
            .map(|row| row.get::<String>(1).unwrap().unwrap_or_default())
            .collect()
    })
}

fn notes() -> String {
    one::<String>("SELECT coalesce(string_agg(tenant_id || '/' || id || '/' || note, ',' ORDER BY tenant_id, id), '') FROM public.tickets")
        .unwrap()
}

#[pg_test]
fn protect_returns_its_ddl_and_is_idempotent() {
    let first = protected_tickets();
    assert_eq!(first[0], "ALTER TABLE \"public\".\"tickets\" ENABLE ROW LEVEL SECURITY");
    assert!(first.contains(
        &"CREATE POLICY boundary_select ON \"public\".\"tickets\" AS RESTRICTIVE FOR SELECT USING (\"tenant_id\" = boundary.tenant_id())"
            .to_string()
    ));
    let second = column("SELECT boundary.protect('public.tickets')");
    let (drops, rest): (Vec<String>, Vec<String>) =
        second.into_iter().partition(|s| s.starts_with("DROP POLICY"));
    assert_eq!(drops.len(), 5, "a re-run replaces the five policies");
    assert_eq!(first, rest, "and otherwise runs the same DDL");
    assert_eq!(
        one::<String>(
            "SELECT relrowsecurity || '/' || relforcerowsecurity || '/' ||
                    (SELECT string_agg(polname || ':' || polpermissive || ':' || polcmd::text, ',' ORDER BY polname)
                       FROM pg_policy WHERE polrelid = 'public.tickets'::regclass)
               FROM pg_class WHERE oid = 'public.tickets'::regclass"
        )
        .unwrap(),
        "true/true/boundary_allow:true:*,boundary_delete:false:d,boundary_insert:false:a,boundary_select:false:r,boundary_update:false:w"
    );
    assert_eq!(
        one::<String>("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'public.tickets'::regclass").unwrap(),
        "boundary.tenant_id()"
    );
}

#[pg_test]
fn protected_reads_writes_and_defaults_follow_the_boundary() {
    protected_tickets();
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(try_sql("SELECT count(*) FROM public.tickets"), "42501: no agent boundary is set");
    as_agent("northstar-design", "alice", "admin", json!({}));
    assert_eq!(notes(), "northstar-design/1/logo,northstar-design/2/renewal");
    // A row inserted without tenant_id gets the boundary's.
    Spi::run("INSERT INTO public.tickets (id, note) VALUES (3, 'brand guide')").unwrap();
    assert_eq!(
        try_sql("INSERT INTO public.tickets VALUES ('northstar-dental', 9, 'planted')"),
        "42501: new row violates row-level security policy \"boundary_insert\" for table \"tickets\""
    );
    // The tenant id cannot be changed.
    assert_eq!(
        try_sql("UPDATE public.tickets SET tenant_id = 'northstar-dental' WHERE id = 3"),
        "42501: new row violates row-level security policy \"boundary_update\" for table \"tickets\""
    );
    // Another tenant's rows cannot be updated or deleted: they are not there.
    assert_eq!(one::<i64>("WITH u AS (UPDATE public.tickets SET note = 'x' WHERE id = 1 RETURNING 1) SELECT count(*) FROM u"), Some(1));
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(
        one::<String>("SELECT string_agg(tenant_id || '/' || id || '/' || note, ',' ORDER BY tenant_id, id) FROM public.tickets").unwrap(),
        "northstar-dental/1/crown,northstar-dental/2/renewal,northstar-design/1/x,northstar-design/2/renewal,northstar-design/3/brand guide"
    );
}

#[pg_test]
fn the_viewer_role_cannot_write_and_write_roles_is_a_parameter() {
    protected_tickets();
    Spi::run("SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'viewer', 'pro', 'us')").unwrap();
    as_agent("northstar-dental", "alice", "viewer", json!({}));
    assert_eq!(notes(), "northstar-dental/1/crown,northstar-dental/2/renewal", "a viewer reads");
    assert_eq!(
        try_sql("INSERT INTO public.tickets (id, note) VALUES (5, 'x')"),
        "42501: new row violates row-level security policy \"boundary_insert\" for table \"tickets\""
    );
    assert_eq!(
        try_sql("UPDATE public.tickets SET note = 'x'"),
        "42501: new row violates row-level security policy \"boundary_update\" for table \"tickets\""
    );
    assert_eq!(
        one::<i64>("WITH d AS (DELETE FROM public.tickets RETURNING 1) SELECT count(*) FROM d"),
        Some(0)
    );
    // Only owners may write once write_roles says so.
    Spi::run("RESET ROLE; SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us')").unwrap();
    Spi::run("SELECT boundary.protect('public.tickets', write_roles => '{owner}')").unwrap();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    assert_eq!(
        try_sql("INSERT INTO public.tickets (id, note) VALUES (5, 'x')"),
        "42501: new row violates row-level security policy \"boundary_insert\" for table \"tickets\""
    );
    assert_eq!(
        try_sql("SELECT boundary.protect('public.tickets', write_roles => '{root}')"),
        "22023: write_roles: role must be one of viewer, member, admin, owner, not \"root\""
    );
}

#[pg_test]
fn uuid_tenant_columns_are_compared_without_casting_the_column() {
    typed_tenant_tables();
    assert_eq!(
        one::<String>("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'public.by_uuid'::regclass AND polname = 'boundary_select'").unwrap(),
        "((tenant_id = (boundary.tenant_id())::uuid) AND (((boundary.tenant_id())::uuid)::text = boundary.tenant_id()))"
    );
    as_agent("7f1c0e9a-0000-4000-8000-000000000001", "alice", "member", json!({}));
    Spi::run("INSERT INTO public.by_uuid (id) VALUES (2)").unwrap();
    assert_eq!(
        one::<String>("SELECT string_agg(tenant_id || '/' || id, ',' ORDER BY id) FROM public.by_uuid")
            .unwrap(),
        "7f1c0e9a-0000-4000-8000-000000000001/1,7f1c0e9a-0000-4000-8000-000000000001/2"
    );
}

// One transaction serves one principal: the bigint tenant is its own test.
#[pg_test]
fn bigint_tenant_columns_are_compared_without_casting_the_column() {
    typed_tenant_tables();
    as_agent("42", "alice", "member", json!({}));
    assert_eq!(
        one::<String>("SELECT string_agg(tenant_id || '/' || id, ',') FROM public.by_bigint").unwrap(),
        "42/1"
    );
    assert_eq!(
        one::<String>("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'public.by_bigint'::regclass AND polname = 'boundary_select'").unwrap(),
        "((tenant_id = (boundary.tenant_id())::bigint) AND (((boundary.tenant_id())::bigint)::text = boundary.tenant_id()))"
    );
}

/// Tables whose tenant column is uuid and bigint, protected, with a row of two tenants each.
fn typed_tenant_tables() {
    fixture();
    Spi::run(
        "SELECT boundary.register_principal('7f1c0e9a-0000-4000-8000-000000000001', 'support', 'alice', 'member');
         SELECT boundary.register_principal('42', 'support', 'alice', 'member');
         CREATE TABLE public.by_uuid (tenant_id uuid NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
         CREATE TABLE public.by_bigint (tenant_id bigint NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
         INSERT INTO public.by_uuid VALUES ('7f1c0e9a-0000-4000-8000-000000000001', 1), ('7f1c0e9a-0000-4000-8000-000000000002', 1);
         INSERT INTO public.by_bigint VALUES (42, 1), (43, 1);
         SELECT boundary.protect('public.by_uuid'); SELECT boundary.protect('public.by_bigint');
         GRANT SELECT, INSERT ON public.by_uuid, public.by_bigint TO agent_tester",
    )
    .unwrap();
}

#[pg_test]
fn a_point_lookup_uses_the_tenant_predicate_as_an_index_condition() {
    fixture();
    Spi::run(
        "CREATE TABLE public.big (tenant_id text NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));
         INSERT INTO public.big SELECT CASE WHEN g % 100 = 0 THEN 'northstar-design' ELSE 'tenant-' || (g % 100) END, g, 'x'
           FROM generate_series(1, 20000) g;
         ANALYZE public.big;
         SELECT boundary.protect('public.big');
         GRANT SELECT ON public.big TO agent_tester",
    )
    .unwrap();
    as_agent("northstar-design", "alice", "member", json!({}));
    let plan_text = explain("SELECT * FROM public.big WHERE id = 500");
    assert!(plan_text.starts_with("Index Scan using big_pkey on big"), "{plan_text}");
    assert!(
        plan_text.contains("Index Cond: ((tenant_id = boundary.tenant_id()) AND (id = 500))"),
        "{plan_text}"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM public.big WHERE id = 500"), Some(1));
    assert_eq!(
        one::<i64>("SELECT count(*) FROM public.big WHERE id = 501"),
        Some(0),
        "another tenant's id"
    );
}

#[pg_test]
fn scope_columns_are_found_named_or_turned_off() {
    fixture();
    Spi::run(
        "CREATE TABLE public.notes (tenant_id text NOT NULL, workspace_id text NOT NULL, user_id text NOT NULL,
                                    source text NOT NULL, id int);
         INSERT INTO public.notes VALUES ('northstar-dental', 'support', 'alice', 'kb', 1),
                                         ('northstar-dental', 'billing', 'alice', 'kb', 2),
                                         ('northstar-dental', 'support', 'bob', 'kb', 3),
                                         ('northstar-dental', 'support', 'alice', 'crm', 4);
         GRANT SELECT ON public.notes TO agent_tester",
    )
    .unwrap();
    Spi::run("SELECT boundary.protect('public.notes', datasource_column => 'source')").unwrap();
    assert_eq!(
        one::<String>("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'public.notes'::regclass AND polname = 'boundary_select'").unwrap(),
        "((tenant_id = boundary.tenant_id()) AND (workspace_id = boundary.workspace_id()) AND (source = ANY (boundary.datasource_ids())) AND (user_id = boundary.user_id()))"
    );
    as_agent("northstar-dental", "alice", "admin", json!({})); // datasources: tickets, kb
    assert_eq!(
        one::<String>("SELECT string_agg(id::text, ',' ORDER BY id) FROM public.notes").unwrap(),
        "1"
    );
    Spi::run(
        "RESET ROLE; SELECT boundary.protect('public.notes', user_column => '', datasource_column => '')",
    )
    .unwrap();
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(
        one::<String>("SELECT string_agg(id::text, ',' ORDER BY id) FROM public.notes").unwrap(),
        "1,3,4"
    );
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(
        try_sql("SELECT boundary.protect('public.notes', workspace_column => 'team')"),
        "42703: table public.notes has no column \"team\" (given as workspace_column)"
    );
}

#[pg_test]
fn protect_refuses_what_it_cannot_protect() {
    fixture();
    Spi::run("CREATE TABLE public.plain (id int); CREATE VIEW public.v AS SELECT 1 AS tenant_id")
        .unwrap();
    assert_eq!(
        try_sql("SELECT boundary.protect('public.plain')"),
        "42703: table public.plain has no tenant column \"tenant_id\"; add one or pass tenant_column => '<column>'"
    );
    assert_eq!(
        try_sql("SELECT boundary.protect('public.v')"),
        "22023: public.v is not a table; only tables and partitioned tables can be protected (a view over protected tables needs security_invoker = true)"
    );
    assert_eq!(
        try_sql("SELECT boundary.protect('public.nope')"),
        "42P01: relation \"public.nope\" does not exist"
    );
    assert_eq!(
        try_sql(&format!(
            "SELECT boundary.protect('public.plain', tenant_column => '{}')",
            "t".repeat(64)
        )),
        "22023: tenant_column is 64 bytes long; PostgreSQL identifiers are at most 63"
    );
    assert_eq!(
        try_sql("SELECT boundary.protect('public.plain', tenant_column => 'id\"; DROP TABLE public.plain; --')"),
        "42703: table public.plain has no tenant column \"id\"; DROP TABLE public.plain; --\"; add one or pass tenant_column => '<column>'"
    );
    assert_eq!(one::<bool>("SELECT to_regclass('public.plain') IS NOT NULL"), Some(true));
    assert_eq!(
        try_sql("SELECT boundary.reprotect('public.plain')"),
        "55000: table public.plain is not protected; use boundary.protect() first"
    );
    // A table that is not its caller's cannot be protected by it.
    Spi::run("CREATE TABLE public.mine (tenant_id text)").unwrap();
    Spi::run("SET ROLE agent_tester").unwrap();
    assert_eq!(try_sql("SELECT boundary.protect('public.mine')"), "42501: must be owner of table mine");
}

#[pg_test]
fn odd_identifiers_are_quoted() {
    fixture();
    Spi::run(
        "CREATE SCHEMA \"Odd Schema\";
         CREATE TABLE \"Odd Schema\".\"Tickets; DROP TABLE x\" (\"Tenant \"\"Id\"\"\" text NOT NULL, id int);
         GRANT USAGE ON SCHEMA \"Odd Schema\" TO agent_tester;
         GRANT SELECT ON \"Odd Schema\".\"Tickets; DROP TABLE x\" TO agent_tester",
    )
    .unwrap();
    let ddl = column("SELECT boundary.protect('\"Odd Schema\".\"Tickets; DROP TABLE x\"', tenant_column => 'Tenant \"Id\"')");
    assert_eq!(ddl[0], "ALTER TABLE \"Odd Schema\".\"Tickets; DROP TABLE x\" ENABLE ROW LEVEL SECURITY");
    Spi::run("INSERT INTO \"Odd Schema\".\"Tickets; DROP TABLE x\" VALUES ('northstar-dental', 1), ('northstar-design', 2)").unwrap();
    as_agent("northstar-design", "alice", "member", json!({}));
    assert_eq!(one::<i32>("SELECT id FROM \"Odd Schema\".\"Tickets; DROP TABLE x\""), Some(2));
}

#[pg_test]
fn unprotect_undoes_protect() {
    protected_tickets();
    let ddl = column("SELECT boundary.unprotect('public.tickets')");
    assert_eq!(ddl.last().unwrap(), "ALTER TABLE \"public\".\"tickets\" DISABLE ROW LEVEL SECURITY");
    assert_eq!(
        one::<String>(
            "SELECT relrowsecurity || '/' || relforcerowsecurity || '/' ||
                    (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid) || '/' ||
                    (SELECT count(*) FROM pg_attrdef WHERE adrelid = c.oid) || '/' ||
                    (SELECT count(*) FROM pg_trigger WHERE tgrelid = c.oid)
               FROM pg_class c WHERE oid = 'public.tickets'::regclass"
        )
        .unwrap(),
        "false/false/0/0/0"
    );
    assert!(column("SELECT boundary.unprotect('public.tickets')").is_empty(), "nothing left to undo");
}

#[pg_test]
fn truncate_is_refused_on_protected_tables() {
    protected_tickets();
    Spi::run("GRANT TRUNCATE ON public.tickets TO agent_tester").unwrap();
    assert_eq!(
        try_sql("TRUNCATE public.tickets"),
        "42501: TRUNCATE on public.tickets is refused: it would bypass row level security"
    );
    as_agent("northstar-design", "alice", "owner", json!({}));
    assert_eq!(
        try_sql("TRUNCATE public.tickets"),
        "42501: TRUNCATE on public.tickets is refused: it would bypass row level security"
    );
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM public.tickets"), Some(4));
}

#[pg_test]
fn partitions_and_children_are_protected_with_their_parent() {
    fixture();
    Spi::run(
        "CREATE TABLE public.events (tenant_id text NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id))
             PARTITION BY LIST (tenant_id);
         CREATE TABLE public.events_dental PARTITION OF public.events FOR VALUES IN ('northstar-dental');
         CREATE TABLE public.events_rest PARTITION OF public.events DEFAULT;
         INSERT INTO public.events VALUES ('northstar-dental', 1), ('northstar-design', 2);
         SELECT boundary.protect('public.events');
         CREATE SCHEMA elsewhere;
         CREATE TABLE elsewhere.events_later PARTITION OF public.events FOR VALUES IN ('tenant-3');
         CREATE TABLE public.base (tenant_id text NOT NULL, id int);
         SELECT boundary.protect('public.base');
         CREATE TABLE elsewhere.derived (extra int) INHERITS (public.base);
         INSERT INTO elsewhere.derived VALUES ('northstar-dental', 1, 0), ('northstar-design', 2, 0);
         GRANT USAGE ON SCHEMA elsewhere TO agent_tester;
         GRANT SELECT ON public.events, public.events_dental, public.events_rest, elsewhere.events_later,
                         public.base, elsewhere.derived TO agent_tester",
    )
    .unwrap();
    assert_eq!(
        one::<String>(
            "SELECT string_agg(c.relname || ':' || c.relforcerowsecurity, ',' ORDER BY c.relname) FROM pg_class c
              WHERE c.relname IN ('events_dental', 'events_rest', 'events_later', 'derived')
                AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'boundary_select')"
        )
        .unwrap(),
        "derived:true,events_dental:true,events_later:true,events_rest:true"
    );
    as_agent("northstar-design", "alice", "member", json!({}));
    assert_eq!(one::<i64>("SELECT count(*) FROM public.events_dental"), Some(0), "direct partition read");
    assert_eq!(one::<i32>("SELECT id FROM public.events_rest"), Some(2));
    assert_eq!(one::<i32>("SELECT id FROM elsewhere.derived"), Some(2), "direct child read");
}

#[pg_test]
fn auto_protect_follows_the_configured_schemas() {
    fixture();
    Spi::run("SET LOCAL agent_boundary.auto_protect_schemas = 'public, app'; CREATE SCHEMA app; CREATE SCHEMA scratch").unwrap();
    Spi::run(
        "CREATE TABLE app.memories (tenant_id text NOT NULL, id int);
         CREATE TABLE app.lookup (code text);
         CREATE TABLE scratch.other (tenant_id text NOT NULL);
         CREATE TABLE app.later (id int);
         ALTER TABLE app.later ADD COLUMN tenant_id text;
         CREATE TABLE app.copied AS SELECT 'northstar-dental'::text AS tenant_id",
    )
    .unwrap();
    assert_eq!(
        one::<String>(
            "SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid::regclass::text) FROM pg_class c
              WHERE c.relnamespace = 'app'::regnamespace
                AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'boundary_select')"
        )
        .unwrap(),
        "app.copied,app.later,app.memories"
    );
    // Taking protection apart with ALTER TABLE is undone at once.
    Spi::run("ALTER TABLE app.memories NO FORCE ROW LEVEL SECURITY").unwrap();
    assert_eq!(
        one::<bool>("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'app.memories'::regclass"),
        Some(true)
    );
    // With the setting empty, new tables are left alone.
    Spi::run(
        "SET LOCAL agent_boundary.auto_protect_schemas = ''; CREATE TABLE app.unmanaged (tenant_id text)",
    )
    .unwrap();
    assert_eq!(
        one::<i64>("SELECT count(*) FROM pg_policy WHERE polrelid = 'app.unmanaged'::regclass"),
        Some(0)
    );
    // Views over protected tables get security_invoker.
    Spi::run("CREATE VIEW scratch.memories_view AS SELECT * FROM app.memories").unwrap();
    assert_eq!(
        one::<String>("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'scratch.memories_view'::regclass").unwrap(),
        "security_invoker=true"
    );
    Spi::run("ALTER VIEW scratch.memories_view SET (security_invoker = false)").unwrap();
    assert_eq!(
        one::<String>("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'scratch.memories_view'::regclass").unwrap(),
        "security_invoker=true"
    );
}

#[pg_test]
fn the_lint_is_empty_when_clean_and_names_every_problem_with_a_fix() {
    protected_tickets();
    assert_eq!(
        column("SELECT object || ' | ' || problem FROM boundary.unprotected_tables()"),
        Vec::<String>::new()
    );
    Spi::run(
        "CREATE TABLE public.forgotten (tenant_id text, id int);
         SET LOCAL agent_boundary.auto_protect_schemas = '';
         CREATE VIEW public.leaky_view AS SELECT * FROM public.tickets;
         CREATE MATERIALIZED VIEW public.leaky_matview AS SELECT * FROM public.tickets;
         CREATE ROLE sneaky NOLOGIN BYPASSRLS; GRANT SELECT ON public.tickets TO sneaky;
         CREATE ROLE via_membership NOLOGIN; GRANT sneaky TO via_membership;
         GRANT SELECT ON public.tickets TO via_membership;
         CREATE FUNCTION public.unsafe_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
         CREATE TABLE public.accounts (tenant_id text NOT NULL, id bigint NOT NULL);
         CREATE UNIQUE INDEX accounts_id_alone ON public.accounts (id);
         SELECT boundary.protect('public.accounts');
         CREATE TABLE public.child_rows (tenant_id text, account_id bigint REFERENCES public.accounts (id));
         GRANT TRIGGER ON public.tickets TO agent_tester;
         CREATE POLICY wide_open ON public.tickets FOR SELECT USING (true);
         CREATE ROLE replicator NOLOGIN REPLICATION;
         ALTER TABLE public.tickets NO FORCE ROW LEVEL SECURITY",
    )
    .unwrap();
    // The ALTER TABLE above was repaired by the event trigger; break it where it cannot see.
    Spi::run("ALTER EVENT TRIGGER boundary_auto_protect DISABLE; ALTER TABLE public.tickets NO FORCE ROW LEVEL SECURITY; ALTER VIEW public.leaky_view SET (security_invoker = false)").unwrap();
    let findings =
        column("SELECT object || ' | ' || problem FROM boundary.unprotected_tables()").join("\n");
    let expected = [
        "agent_tester | has TRIGGER on protected table public.tickets",
        "public.accounts | unique index public.accounts_id_alone does not have the tenant column tenant_id among its key columns; a duplicate-key error reveals other tenants' values",
        "public.child_rows | foreign key child_rows_account_id_fkey references protected table public.accounts without its tenant column tenant_id, so it can link rows across tenants",
        "public.child_rows | has a tenant_id column but no agent boundary policies",
        "public.forgotten | has a tenant_id column but no agent boundary policies",
        "public.leaky_matview | materialized view holds rows of every tenant of protected table public.tickets; row level security does not apply to it",
        "public.leaky_view | view reads protected table public.tickets with its owner's rights (security_invoker is off)",
        "public.tickets | policy wide_open is permissive, so it has no effect next to boundary_allow",
        "public.tickets | row level security is not forced, so the table owner bypasses it",
        "public.unsafe_definer() | SECURITY DEFINER function without a pinned search_path: objects the caller creates can hijack it",
        "replicator | has REPLICATION: logical replication streams every tenant's rows of protected tables",
        // The agent tables are granted to PUBLIC, so a BYPASSRLS role reads every tenant's memory.
        "sneaky | can bypass row level security (BYPASSRLS) and has privileges on protected table boundary.audit_log",
        "sneaky | can bypass row level security (BYPASSRLS) and has privileges on protected table boundary.cache",
        "sneaky | can bypass row level security (BYPASSRLS) and has privileges on protected table boundary.memories",
        "sneaky | can bypass row level security (BYPASSRLS) and has privileges on protected table boundary.run_state",
        "sneaky | can bypass row level security (BYPASSRLS) and has privileges on protected table public.tickets",
        "via_membership | can bypass row level security (membership in sneaky) and has privileges on protected table boundary.audit_log",
        "via_membership | can bypass row level security (membership in sneaky) and has privileges on protected table boundary.cache",
        "via_membership | can bypass row level security (membership in sneaky) and has privileges on protected table boundary.memories",
        "via_membership | can bypass row level security (membership in sneaky) and has privileges on protected table boundary.run_state",
        "via_membership | can bypass row level security (membership in sneaky) and has privileges on protected table public.tickets",
    ]
    .join("\n");
    assert_eq!(findings, expected);
    let fixes = column("SELECT fix FROM boundary.unprotected_tables() WHERE object = 'public.tickets' AND problem LIKE 'row level%'");
    assert_eq!(fixes, ["SELECT boundary.reprotect('public.tickets');"]);
    Spi::run(&fixes[0]).unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM boundary.unprotected_tables() WHERE object = 'public.tickets' AND problem LIKE 'row level%'"), Some(0));
    assert_eq!(
        one::<i64>("SELECT count(*) FROM boundary.unprotected_tables(include_advisories => true) WHERE problem LIKE 'advisory:%' AND object LIKE 'public.%'"),
        Some(2)
    );
}
