-- Generated row level security, SQL side: the TRUNCATE guard, the auto-protect event trigger and
-- the unprotected_tables() lint. The Rust side is src/policy/.

-- TRUNCATE skips row level security; on a protected table it is refused for everyone.
CREATE FUNCTION boundary.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = format('TRUNCATE on %I.%I is refused: it would bypass row level security',
                         TG_TABLE_SCHEMA, TG_TABLE_NAME),
        HINT = 'Delete rows inside an agent boundary instead, or run boundary.unprotect() first.';
END
$$;

-- Row level security does not check every way a row changes. The guards on a protected table
-- fire this (their WHEN conditions are in src/policy/ddl.rs): the cascade guard
-- (boundary_refuse_cascade) for a change made below the top level (a referential action, another
-- trigger) to a row outside the boundary; on Citus, the insert guard (boundary_refuse_insert) for
-- a row outside the boundary that a node copies into its own shards (COPY, INSERT ... SELECT).
CREATE FUNCTION boundary.refuse_cross_tenant_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('INSERT on protected table %I.%I wrote a row outside the agent boundary',
                             TG_TABLE_SCHEMA, TG_TABLE_NAME),
            HINT = 'Insert only rows of the boundary''s own scope (leave the tenant column to its default).';
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = format('%s on protected table %I.%I reached a row outside the agent boundary (a cascaded or trigger-made change, which row level security does not check)',
                         TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME),
        HINT = 'Change each tenant''s rows inside its own boundary first, or make the foreign key carry the tenant column.';
END
$$;

-- DDL row level security does not see: inside a boundary nothing may touch a protected table,
-- and the generated policies and guards change only through protect(), reprotect() and
-- unprotect() (src/policy/guard.rs).
CREATE FUNCTION boundary.guard_ddl_event() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM boundary.guard_ddl(TG_EVENT, TG_TAG);
END
$$;

CREATE EVENT TRIGGER boundary_guard_ddl ON ddl_command_end
    EXECUTE FUNCTION boundary.guard_ddl_event();
CREATE EVENT TRIGGER boundary_guard_drop ON sql_drop
    EXECUTE FUNCTION boundary.guard_ddl_event();

-- Auto-protection's on/off switch: off while this table has its row. Extension configuration,
-- so pg_dump keeps the choice (it does not keep an event trigger's disabled state).
CREATE TABLE boundary.auto_protection_off (
    off     boolean PRIMARY KEY DEFAULT true CHECK (off),
    since   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    by_role name NOT NULL DEFAULT CURRENT_USER
);
SELECT pg_catalog.pg_extension_config_dump('boundary.auto_protection_off', '');

-- Whether auto-protection is on: the event trigger runs as whoever runs DDL, and the lint as
-- whoever calls it; neither needs to read the switch's table.
CREATE FUNCTION boundary.auto_protection_enabled() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT NOT EXISTS (SELECT FROM boundary.auto_protection_off) $$;

CREATE FUNCTION boundary.set_auto_protection(enabled boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF enabled THEN
        DELETE FROM boundary.auto_protection_off;
    ELSE
        INSERT INTO boundary.auto_protection_off DEFAULT VALUES ON CONFLICT DO NOTHING;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION boundary.set_auto_protection(boolean) FROM PUBLIC;

CREATE FUNCTION boundary.auto_protect_event() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    command record;
BEGIN
    IF NOT boundary.auto_protection_enabled() THEN
        RETURN;
    END IF;
    FOR command IN
        SELECT DISTINCT objid, object_type FROM pg_catalog.pg_event_trigger_ddl_commands()
         WHERE object_type IN ('table', 'view')
    LOOP
        PERFORM boundary.auto_protect_object(command.objid, command.object_type);
    END LOOP;
END
$$;

-- Turn it off with boundary.set_auto_protection(false) (superuser; kept by pg_dump). Which
-- schemas it protects new tables in is agent_boundary.auto_protect_schemas (empty by default).
CREATE EVENT TRIGGER boundary_auto_protect ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
                 'CREATE VIEW', 'ALTER VIEW')
    EXECUTE FUNCTION boundary.auto_protect_event();

-- The generated policies as PostgreSQL deparses them (commands, roles, expressions), hashed:
-- protect() stores it in the comment of boundary_allow, the lint compares.
CREATE FUNCTION boundary.policies_fingerprint(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT md5(string_agg(format('%s %s %s %s %s %s', polname, polcmd, polpermissive, polroles,
                                 pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)),
                          ';' ORDER BY polname))
      FROM pg_policy
     WHERE polrelid = tbl
       AND polname = ANY ('{boundary_allow,boundary_select,boundary_insert,boundary_update,boundary_delete}')
$$;

-- Everything row level security and the guards do on one relation, comparable across nodes (roles by name):
-- on Citus, each shard and each worker's copy of a table must give the table's own.
CREATE FUNCTION boundary.policy_signature(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT md5(format('%s %s|', c.relrowsecurity, c.relforcerowsecurity)
               || coalesce((SELECT string_agg(format('%s %s %s %s %s %s', q.polname, q.polcmd, q.polpermissive,
                                                     ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END
                                                             FROM unnest(q.polroles) r ORDER BY 1),
                                                     pg_get_expr(q.polqual, q.polrelid),
                                                     pg_get_expr(q.polwithcheck, q.polrelid)),
                                              ';' ORDER BY q.polname)
                              FROM pg_policy q WHERE q.polrelid = tbl), '')
               -- and the row guards (shards' triggers have their own names: compare what they run;
               -- Citus keeps statement-level TRUNCATE triggers on the distributed table only)
               || '|' || coalesce((SELECT string_agg(format('%s %s', t.tgtype, t.tgfoid::regprocedure), ';'
                                                     ORDER BY t.tgtype, t.tgfoid::regprocedure::text)
                                     FROM pg_trigger t JOIN pg_proc f ON f.oid = t.tgfoid
                                    WHERE t.tgrelid = tbl AND f.pronamespace = 'boundary'::regnamespace
                                      AND (t.tgtype::int & 1) = 1), ''))
      FROM pg_class c
     WHERE c.oid = tbl
$$;

-- The lint's view of a Citus cluster (nothing without Citus): every shard placement and every
-- worker's copy of a protected Citus table must have the table's policies. Citus' own functions
-- are reached through EXECUTE, since they exist only where it is installed.
CREATE FUNCTION boundary.citus_policy_findings()
RETURNS TABLE (object text, problem text, fix text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass;
    expected text;
    copy record;
    run_on_worker regprocedure;
    who text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    -- Where boundaries reach the workers (a cluster seal key is set), a role that runs its own
    -- SQL on the workers over Citus' connections could set there a boundary it saw in a
    -- worker's log or pg_stat_activity (cluster_seal.rs).
    run_on_worker := pg_catalog.to_regprocedure('pg_catalog.master_run_on_worker(text[],integer[],text[],boolean)');
    IF pg_catalog.current_setting('agent_boundary.cluster_seal_key_file', true) <> '' AND run_on_worker IS NOT NULL THEN
        who := CASE WHEN pg_catalog.has_function_privilege('public', run_on_worker, 'EXECUTE') THEN 'every role (PUBLIC)'
                    ELSE (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ' ORDER BY r.rolname)
                            FROM pg_catalog.pg_roles r
                           WHERE NOT r.rolsuper AND r.rolname !~ '^pg_'
                             AND pg_catalog.has_function_privilege(r.oid, run_on_worker, 'EXECUTE')) END;
        IF who IS NOT NULL THEN
            object := 'pg_catalog.master_run_on_worker(text[], integer[], text[], boolean)';
            problem := format('%s can run its own SQL on the Citus workers over Citus'' connections (so can run_command_on_workers and the other run_command_on_* functions built on it), where it could replay a boundary seen in a worker''s log or pg_stat_activity', who);
            fix := format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC; on every node (and from each role listed)', object);
            RETURN NEXT;
        END IF;
    END IF;
    -- Keys and registry local to each node: Citus syncs metadata to the workers, which then take
    -- clients' queries, and boundary.enter there would read that node's own copy.
    FOR tbl IN EXECUTE
        'SELECT t FROM pg_catalog.unnest(ARRAY[''boundary.signing_keys'', ''boundary.principals'']::pg_catalog.regclass[]) t
          WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n WHERE n.groupid <> 0)
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
                             WHERE d.logicalrelid = t AND d.partmethod = ''n'' AND d.repmodel = ''t'')'
    LOOP
        object := tbl::text;
        problem := 'each node of the Citus cluster has its own copy: boundary.enter on a worker verifies with that node''s keys and registry, which no key rotation or revocation here reaches';
        fix := 'SELECT boundary.distribute_own_tables(); (on the coordinator: one copy on every node)';
        RETURN NEXT;
    END LOOP;
    -- The stores and the audit log local to each node: what one node wrote for a tenant, its
    -- requests served by another node do not see.
    FOR tbl IN EXECUTE
        'SELECT t FROM pg_catalog.unnest(ARRAY[''boundary.memories'', ''boundary.run_state'', ''boundary.cache'',
                                               ''boundary.audit_log'']::pg_catalog.regclass[]) t
          WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n WHERE n.groupid <> 0)
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = t)'
    LOOP
        object := tbl::text;
        problem := 'each node of the Citus cluster has its own copy: what it holds for a tenant (memories, run state, cache entries, audit trail) is not seen on the other nodes';
        fix := 'SELECT boundary.distribute_own_tables(); (on the coordinator: distributed by tenant)';
        RETURN NEXT;
    END LOOP;
    FOR tbl IN EXECUTE
        'SELECT d.logicalrelid FROM pg_catalog.pg_dist_partition d
          WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_policy q
                         WHERE q.polrelid = d.logicalrelid AND q.polname = ''boundary_select'')
          ORDER BY d.logicalrelid::text'
    LOOP
        -- Restrictive on the coordinator, permissive on every shard (permissive ones are
        -- finding 10 of the lint).
        object := tbl::text;
        FOR problem, fix IN
            SELECT format('policy %I was not made by protect(): Citus copies it to the shards as a permissive policy, where it widens what every boundary sees', q.polname),
                   format('DROP POLICY %I ON %s; (narrow access with protect()''s own scope columns instead)', q.polname, tbl)
              FROM pg_catalog.pg_policy q
             WHERE q.polrelid = tbl AND q.polname NOT LIKE 'boundary\_%' AND NOT q.polpermissive
             ORDER BY q.polname
        LOOP
            RETURN NEXT;
        END LOOP;
        expected := boundary.policy_signature(tbl);
        FOR copy IN EXECUTE
            'SELECT pg_catalog.shard_name($1, p.shardid) || '' on '' || p.nodename || '':'' || p.nodeport AS name,
                    p.success, p.result
               FROM pg_catalog.run_command_on_placements($1,
                      ''SELECT boundary.policy_signature($sig$%s$sig$)'') p
             UNION ALL
             SELECT format(''%s on worker %s:%s'', $1, w.nodename, w.nodeport), w.success, w.result
               FROM pg_catalog.run_command_on_workers(
                      format(''SELECT boundary.policy_signature(%L)'', $1::text)) w
              ORDER BY 1'
            USING tbl
        LOOP
            CONTINUE WHEN copy.success AND copy.result = expected;
            object := copy.name;
            problem := CASE WHEN copy.success
                            THEN format('its row level security and policies differ from those of %s', tbl)
                            ELSE format('its policies could not be read (%s)', copy.result) END;
            fix := format('on that node, make them those of %s (drop policies added there), then SELECT boundary.reprotect(%L);',
                          tbl, tbl::text);
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;

-- The lint: one row per way a tenant's rows could reach another tenant, with the fix.
-- Returns nothing when clean, so CI can run: SELECT count(*) = 0 FROM boundary.unprotected_tables();
CREATE FUNCTION boundary.unprotected_tables(include_advisories boolean DEFAULT false)
RETURNS TABLE (object text, problem text, fix text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $lint$
WITH RECURSIVE settings AS (
    SELECT coalesce(nullif(current_setting('agent_boundary.tenant_column', true), ''), 'tenant_id')
           AS tenant_column,
           ARRAY(SELECT trim(s) FROM unnest(string_to_array(current_setting('agent_boundary.auto_protect_schemas', true), ',')) s
                  WHERE trim(s) <> '') AS auto_protect_schemas,
           ARRAY(SELECT trim(s) FROM unnest(string_to_array(current_setting('agent_boundary.auto_protect_shared_tables', true), ',')) s
                  WHERE trim(s) <> '') AS shared_tables,
           EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus
),
user_tables AS (
    SELECT c.oid, c.oid::regclass::text AS name, n.nspname AS schema, c.relname, c.relispartition, c.relowner,
           c.relrowsecurity, c.relforcerowsecurity
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
),
protected AS (
    SELECT t.*, o.options ->> 'tenant_column' AS tenant_column, a.attnum AS tenant_attnum
      FROM user_tables t
      JOIN pg_policy p ON p.polrelid = t.oid AND p.polname = 'boundary_select'
      JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass
     CROSS JOIN LATERAL (
           SELECT substr(d.description, length('agent_boundary protect options: ') + 1)::jsonb AS options
            WHERE d.description LIKE 'agent\_boundary protect options: %') o
      LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = o.options ->> 'tenant_column'
),
-- Protected tables of the application: the extension's own (memory, cache, audit) are open to
-- every role and guarded row by row, so they say nothing about which roles serve agents.
app_protected AS (
    SELECT p.* FROM protected p JOIN pg_class c ON c.oid = p.oid
     WHERE c.relnamespace <> 'boundary'::regnamespace
),
-- Views and materialized views that read a protected table, directly or through views.
readers (oid, relkind, protected_name) AS (
    SELECT v.oid, v.relkind, p.name
      FROM protected p
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.refobjid = p.oid
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm') AND v.oid <> p.oid
    UNION
    SELECT v.oid, v.relkind, rd.protected_name
      FROM readers rd
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.refobjid = rd.oid
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm') AND v.oid <> rd.oid
     WHERE rd.relkind = 'v'
),
bypass_roles AS (
    SELECT r.oid, r.rolname,
           CASE WHEN r.rolbypassrls THEN 'BYPASSRLS'
                ELSE 'membership in ' || (SELECT string_agg(b.rolname, ', ' ORDER BY b.rolname)
                                            FROM pg_roles b
                                           WHERE b.oid <> r.oid AND (b.rolbypassrls OR b.rolsuper)
                                             AND pg_has_role(r.oid, b.oid, 'MEMBER')) END AS how
      FROM pg_roles r
     WHERE NOT r.rolsuper AND r.rolname !~ '^pg_'
       AND (r.rolbypassrls OR EXISTS (SELECT 1 FROM pg_roles b
                                       WHERE b.oid <> r.oid AND (b.rolbypassrls OR b.rolsuper)
                                         AND pg_has_role(r.oid, b.oid, 'MEMBER')))
),
findings (object, problem, fix) AS (
    -- 1. A table with the tenant column that nobody protected. (The registry,
    -- boundary.principals, is this extension's admin table, readable by no ordinary role.)
    SELECT t.name, format('has a %I column but no agent boundary policies', s.tenant_column),
           format('SELECT boundary.protect(%L);', t.name)
      FROM user_tables t CROSS JOIN settings s
     WHERE t.oid <> 'boundary.principals'::regclass
       AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname LIKE 'boundary\_%')
       AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = s.tenant_column
                      AND a.attnum > 0 AND NOT a.attisdropped)
    UNION ALL
    -- 2. A protected table whose protection was taken apart.
    SELECT t.name, v.problem, format('SELECT boundary.reprotect(%L);', t.name)
      FROM user_tables t
     CROSS JOIN LATERAL (VALUES
           (NOT t.relrowsecurity, 'row level security is disabled'),
           (NOT t.relforcerowsecurity, 'row level security is not forced, so the table owner bypasses it')) v(bad, problem)
     WHERE v.bad AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname LIKE 'boundary\_%')
    UNION ALL
    SELECT t.name, format('policy %s is missing', m.polname), format('SELECT boundary.reprotect(%L);', t.name)
      FROM user_tables t
     CROSS JOIN unnest(ARRAY['boundary_allow', 'boundary_select', 'boundary_insert', 'boundary_update',
                             'boundary_delete']) m(polname)
     WHERE EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname LIKE 'boundary\_%')
       AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname = m.polname)
    UNION ALL
    -- (the insert guard only where protect() made Citus' shape: no restrictive policy)
    SELECT p.name, format('the %s guard (trigger %s) is missing', g.what, g.tgname),
           format('SELECT boundary.reprotect(%L);', p.name)
      FROM protected p
     CROSS JOIN (VALUES ('TRUNCATE', 'boundary_refuse_truncate'), ('cascade', 'boundary_refuse_cascade'),
                        ('insert', 'boundary_refuse_insert')) g(what, tgname)
     WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p.oid AND t.tgname = g.tgname)
       AND (g.what <> 'insert'
            OR NOT EXISTS (SELECT 1 FROM pg_policy q WHERE q.polrelid = p.oid AND q.polname LIKE 'boundary\_%' AND NOT q.polpermissive))
    UNION ALL
    -- Generated policies changed after protect() made them (ALTER POLICY with the DDL guard off,
    -- or a version that did not record them).
    SELECT p.name, 'its generated policies differ from what protect() made (changed by hand, or protected by an older version)',
           format('SELECT boundary.reprotect(%L);', p.name)
      FROM protected p
     WHERE NOT EXISTS (SELECT 1 FROM pg_policy q
                         JOIN pg_description d ON d.objoid = q.oid AND d.classoid = 'pg_policy'::regclass
                        WHERE q.polrelid = p.oid AND q.polname = 'boundary_allow'
                          AND d.description = 'agent_boundary policies fingerprint: ' || boundary.policies_fingerprint(p.oid))
    UNION ALL
    -- A permissive policy that does not depend on the extension outlives DROP EXTENSION ...
    -- CASCADE, and then admits every row (protected by an earlier release).
    SELECT p.name, 'boundary_allow admits rows without depending on the extension: DROP EXTENSION ... CASCADE would leave it admitting every row',
           format('SELECT boundary.reprotect(%L);', p.name)
      FROM protected p
      JOIN pg_policy q ON q.polrelid = p.oid AND q.polname = 'boundary_allow'
     WHERE NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_policy'::regclass AND d.objid = q.oid
                          AND d.refclassid = 'pg_proc'::regclass
                          AND d.refobjid = 'boundary.installed()'::regprocedure)
    UNION ALL
    -- The column protect() scoped by was renamed or dropped: the policies still hold (they name
    -- it by number), but re-protection, and so every later ALTER TABLE, fails.
    SELECT p.name, format('protect() scoped it by column %I, which it no longer has (renamed or dropped); every later ALTER TABLE will fail',
                          p.tenant_column),
           format('rename the column back to %I, or SELECT boundary.unprotect(%L) and protect it again with tenant_column => the new name',
                  p.tenant_column, p.name)
      FROM protected p
     WHERE p.tenant_attnum IS NULL
    UNION ALL
    -- 3. A partition or inheritance child of a protected table, read directly, skips the parent's policies.
    SELECT i.inhrelid::regclass::text, format('is a partition or child of protected table %s but is not protected', p.name),
           format('SELECT boundary.reprotect(%L);', p.name)
      FROM pg_inherits i JOIN protected p ON p.oid = i.inhparent
     WHERE NOT EXISTS (SELECT 1 FROM pg_policy q WHERE q.polrelid = i.inhrelid AND q.polname = 'boundary_select')
    UNION ALL
    -- ... and the other way round: reading an unprotected inheritance parent returns a protected
    -- child's rows under the parent's (absent) policies.
    SELECT i.inhparent::regclass::text,
           format('is an unprotected inheritance parent of protected table %s: reading it returns that table''s rows of every tenant', p.name),
           format('SELECT boundary.protect(%L); or ALTER TABLE %s NO INHERIT %s;', i.inhparent::regclass::text, p.name, i.inhparent::regclass)
      FROM pg_inherits i JOIN protected p ON p.oid = i.inhrelid
     WHERE NOT EXISTS (SELECT 1 FROM pg_policy q WHERE q.polrelid = i.inhparent AND q.polname = 'boundary_select')
    UNION ALL
    -- 4. Views check their owner's policies unless security_invoker; materialized views have none;
    -- at any depth of views.
    SELECT DISTINCT v.oid::regclass::text,
           CASE v.relkind WHEN 'v' THEN format('view reads protected table %s with its owner''s rights (security_invoker is off)', v.protected_name)
                          ELSE format('materialized view holds rows of every tenant of protected table %s; row level security does not apply to it', v.protected_name) END,
           CASE v.relkind WHEN 'v' THEN format('ALTER VIEW %s SET (security_invoker = true);', v.oid::regclass)
                          ELSE format('DROP MATERIALIZED VIEW %s; keep per-tenant results in a protected table', v.oid::regclass) END
      FROM readers v
     WHERE v.relkind = 'm'
        OR NOT EXISTS (SELECT 1 FROM pg_class c CROSS JOIN pg_options_to_table(c.reloptions) o
                        WHERE c.oid = v.oid AND o.option_name = 'security_invoker'
                          AND o.option_value IN ('true', 'on', 'yes', '1'))
    UNION ALL
    -- 5. Roles that can bypass row level security and hold privileges on protected tables.
    SELECT b.rolname::text, format('can bypass row level security (%s) and has privileges on protected table %s', b.how, p.name),
           format('REVOKE ALL ON %s FROM %I; or remove the BYPASSRLS attribute or membership', p.name, b.rolname)
      FROM bypass_roles b CROSS JOIN protected p
     WHERE has_table_privilege(b.oid, p.oid, 'SELECT, INSERT, UPDATE, DELETE')
        OR has_any_column_privilege(b.oid, p.oid, 'SELECT')
    UNION ALL
    -- 6. SECURITY DEFINER functions whose search_path a caller can hijack.
    SELECT f.oid::regprocedure::text, 'SECURITY DEFINER function without a pinned search_path: objects the caller creates can hijack it',
           format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;', f.oid::regprocedure)
      FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
     WHERE f.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND NOT EXISTS (SELECT 1 FROM unnest(f.proconfig) c WHERE c LIKE 'search\_path=%')
    UNION ALL
    -- 7. Foreign keys into a protected table that do not carry the tenant column.
    SELECT c.conrelid::regclass::text,
           format('foreign key %I references protected table %s without its tenant column %I, so it can link rows across tenants',
                  c.conname, p.name, p.tenant_column),
           format('reference %s with a composite key that includes %I', p.name, p.tenant_column)
      FROM pg_constraint c JOIN protected p ON p.oid = c.confrelid
     WHERE c.contype = 'f' AND NOT (p.tenant_attnum = ANY (c.confkey))
    UNION ALL
    -- ... and foreign keys from a protected table to a shared parent whose referential actions
    -- reach every tenant's rows. (A plain reference to a shared catalog is fine.)
    SELECT c.conrelid::regclass::text,
           format('foreign key %I to unprotected table %s has %s: a change to a shared parent row reaches every tenant''s rows (agent_boundary refuses it when it reaches another tenant''s row, so the parent''s change fails)',
                  c.conname, c.confrelid::regclass,
                  concat_ws(', ',
                      CASE c.confdeltype WHEN 'c' THEN 'ON DELETE CASCADE' WHEN 'n' THEN 'ON DELETE SET NULL' WHEN 'd' THEN 'ON DELETE SET DEFAULT' END,
                      CASE c.confupdtype WHEN 'c' THEN 'ON UPDATE CASCADE' WHEN 'n' THEN 'ON UPDATE SET NULL' WHEN 'd' THEN 'ON UPDATE SET DEFAULT' END)),
           format('protect %s and reference it with a key that includes the tenant column, or use ON DELETE NO ACTION and delete each tenant''s rows inside its boundary',
                  c.confrelid::regclass)
      FROM pg_constraint c JOIN protected p ON p.oid = c.conrelid
     WHERE c.contype = 'f' AND (c.confdeltype IN ('c', 'n', 'd') OR c.confupdtype IN ('c', 'n', 'd'))
       AND NOT EXISTS (SELECT 1 FROM pg_policy q WHERE q.polrelid = c.confrelid AND q.polname = 'boundary_select')
    UNION ALL
    -- 8. Unique keys without the tenant column: a duplicate-key error tells one tenant another has the value.
    -- (Only key columns count: a column in INCLUDE takes no part in uniqueness.)
    SELECT p.name, format('unique index %s does not have the tenant column %I among its key columns; a duplicate-key error reveals other tenants'' values',
                          i.indexrelid::regclass, p.tenant_column),
           format('make the key (%I, ...) instead; an application that upserts with ON CONFLICT on the old key must then name the new one, or its upserts fail with 42P10',
                  p.tenant_column)
      FROM pg_index i JOIN protected p ON p.oid = i.indrelid
     WHERE i.indisunique AND NOT (p.tenant_attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
       -- The audit log's key is an identity only the extension writes: no duplicate to provoke.
       AND p.name <> 'boundary.audit_log'
    UNION ALL
    -- Exclusion constraints are the same oracle when they do not compare the tenant column.
    SELECT p.name, format('exclusion constraint %s does not compare the tenant column %I; a conflict error reveals other tenants'' values',
                          c.conname, p.tenant_column),
           format('add %I WITH = to the constraint: EXCLUDE (%I WITH =, ...)', p.tenant_column, p.tenant_column)
      FROM pg_constraint c JOIN protected p ON p.oid = c.conrelid
     WHERE c.contype = 'x' AND NOT (p.tenant_attnum = ANY (c.conkey))
    UNION ALL
    -- 9. Whole-table privileges for roles other than the owner.
    SELECT r.rolname::text, format('has %s on protected table %s', v.privilege, p.name),
           format('REVOKE %s ON %s FROM %I;', v.privilege, p.name, r.rolname)
      FROM protected p CROSS JOIN pg_roles r
     CROSS JOIN (VALUES ('TRUNCATE'), ('TRIGGER'), ('REFERENCES')) v(privilege)
     WHERE NOT r.rolsuper AND r.rolname !~ '^pg_' AND NOT pg_has_role(r.oid, p.relowner, 'MEMBER')
       AND has_table_privilege(r.oid, p.oid, v.privilege)
    UNION ALL
    -- 10. A permissive policy is ORed with boundary_allow (true), so it narrows nothing; next to
    -- the permissive policies protect() makes where Citus is installed, it widens every boundary.
    SELECT p.name,
           CASE WHEN g.polpermissive
                THEN format('policy %I is permissive, like the policies protect() makes in a database with Citus: it widens what every boundary sees', q.polname)
                ELSE format('policy %I is permissive, so it has no effect next to boundary_allow', q.polname) END,
           CASE WHEN g.polpermissive
                THEN format('DROP POLICY %I ON %s; (narrow access with protect()''s own scope columns instead)', q.polname, p.name)
                ELSE format('recreate policy %I AS RESTRICTIVE to narrow access further', q.polname) END
      FROM pg_policy q JOIN protected p ON p.oid = q.polrelid
      JOIN pg_policy g ON g.polrelid = p.oid AND g.polname = 'boundary_select'
     WHERE q.polpermissive AND q.polname NOT LIKE 'boundary\_%'
    UNION ALL
    -- ... and a table protected before Citus came has restrictive policies next to a
    -- boundary_allow that admits every row: copied to shards, they admit every tenant's rows.
    SELECT p.name, 'it was protected before Citus was installed: Citus copies its policies to shards without AS RESTRICTIVE, and there boundary_allow admits every row',
           format('SELECT boundary.reprotect(%L);', p.name)
      FROM app_protected p CROSS JOIN settings s
     WHERE s.citus
       AND EXISTS (SELECT 1 FROM pg_policy q WHERE q.polrelid = p.oid AND q.polname LIKE 'boundary\_%' AND NOT q.polpermissive)
    UNION ALL
    -- Every shard and every worker's copy of a protected Citus table.
    SELECT c.object, c.problem, c.fix FROM boundary.citus_policy_findings() c
    UNION ALL
    -- 11. Logical replication ignores row level security.
    SELECT r.rolname::text, 'has REPLICATION: logical replication streams every tenant''s rows of protected tables',
           format('ALTER ROLE %I NOREPLICATION;', r.rolname)
      FROM pg_roles r
     WHERE r.rolreplication AND NOT r.rolsuper AND EXISTS (SELECT 1 FROM protected)
    UNION ALL
    -- 12. Large objects have no row level security: every session of the role that can read one
    -- reads it, whichever tenant it serves.
    SELECT format('large object %s', m.oid),
           format('is owned by role %I, which has privileges on protected tables: every tenant''s agent running as %I can read it',
                  r.rolname, r.rolname),
           format('SELECT pg_catalog.lo_unlink(%s); keep per-tenant blobs in a bytea column of a protected table', m.oid)
      FROM pg_largeobject_metadata m JOIN pg_roles r ON r.oid = m.lomowner
     WHERE NOT r.rolsuper
       AND EXISTS (SELECT 1 FROM app_protected p WHERE has_table_privilege(r.oid, p.oid, 'SELECT, INSERT, UPDATE, DELETE'))
    UNION ALL
    -- 13. A tenant column whose equality can merge ids that differ as text (numeric, citext, a
    -- nondeterministic collation, ...): protect() refuses these now; tables protected before are
    -- reported.
    SELECT p.name,
           format('tenant column %I has type %s%s, whose equality can merge tenant ids that differ as text',
                  p.tenant_column, pg_catalog.format_type(a.atttypid, a.atttypmod),
                  CASE WHEN NOT coalesce(c.collisdeterministic, true) THEN ' with a nondeterministic collation' ELSE '' END),
           format('ALTER TABLE %s ALTER COLUMN %I TYPE text COLLATE "C" (or varchar, char, uuid, an integer type); then SELECT boundary.reprotect(%L);',
                  p.name, p.tenant_column, p.name)
      FROM protected p
      JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum = p.tenant_attnum
      LEFT JOIN pg_collation c ON c.oid = a.attcollation
     CROSS JOIN LATERAL (
           WITH RECURSIVE base(oid, typtype, next, depth) AS (
               SELECT t.oid, t.typtype, t.typbasetype, 0 FROM pg_type t WHERE t.oid = a.atttypid
               UNION ALL
               SELECT t.oid, t.typtype, t.typbasetype, b.depth + 1
                 FROM base b JOIN pg_type t ON t.oid = b.next WHERE b.typtype = 'd')
           SELECT oid FROM base ORDER BY depth DESC LIMIT 1) bt
     WHERE bt.oid NOT IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'uuid'::regtype,
                          'int2'::regtype, 'int4'::regtype, 'int8'::regtype)
        OR NOT coalesce(c.collisdeterministic, true)
    UNION ALL
    -- 14. A table auto-protection skipped: it is in auto_protect_schemas but has no tenant column.
    SELECT t.name, format('is in agent_boundary.auto_protect_schemas but has no %I column, so it is not protected', s.tenant_column),
           format('add a %I column and SELECT boundary.protect(%L); or move the table out of schema %I; or, if every tenant shares it, name it in agent_boundary.auto_protect_shared_tables',
                  s.tenant_column, t.name, t.schema)
      FROM user_tables t CROSS JOIN settings s
     WHERE t.schema = ANY (s.auto_protect_schemas) AND NOT t.relispartition
       AND NOT ARRAY[t.relname::text, t.schema || '.' || t.relname] && s.shared_tables
       AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname = 'boundary_select')
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = s.tenant_column
                          AND a.attnum > 0 AND NOT a.attisdropped)
    UNION ALL
    -- 15. Agents connected as a table's owner can take its protection apart (PostgreSQL lets an
    -- owner do anything to its table outside a boundary). Seen where the catalog shows it: no
    -- other role can use the table, or a login role is a member of the owner.
    SELECT p.name,
           format('no role but its owner %I can read or write it, so agents must be connecting as the owner, who can take its protection apart',
                  r.rolname),
           format('CREATE ROLE agent LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO agent; connect agents as that role, never as %I',
                  p.name, r.rolname)
      FROM app_protected p JOIN pg_roles r ON r.oid = p.relowner
     WHERE NOT r.rolsuper
       AND NOT EXISTS (SELECT 1 FROM pg_roles o
                        WHERE NOT o.rolsuper AND o.rolname !~ '^pg_' AND NOT pg_has_role(o.oid, p.relowner, 'MEMBER')
                          AND has_table_privilege(o.oid, p.oid, 'SELECT, INSERT, UPDATE, DELETE'))
    UNION ALL
    SELECT m.rolname::text,
           format('can log in and is a member of %I, which owns protected table %s: its sessions take on the owner''s rights and can take the table''s protection apart',
                  r.rolname, min(p.name)),
           format('REVOKE %I FROM %I; grant it SELECT, INSERT, UPDATE, DELETE on the tables instead', r.rolname, m.rolname)
      FROM app_protected p JOIN pg_roles r ON r.oid = p.relowner
      JOIN pg_roles m ON m.oid <> r.oid AND m.rolcanlogin AND NOT m.rolsuper AND pg_has_role(m.oid, r.oid, 'MEMBER')
     WHERE NOT r.rolsuper
     GROUP BY m.rolname, r.rolname
    UNION ALL
    -- 16. An agent framework's table (LangGraph, langchain-postgres, LlamaIndex, mem0), known by
    -- its name or columns, with no tenant column: every tenant's agent reads every row.
    SELECT t.name, format('looks like %s''s table and has no %I column: every tenant''s agent reads and overwrites every row', f.framework, s.tenant_column),
           format('list schema %I in agent_boundary.auto_protect_schemas, set agent_boundary.auto_protect_add_columns = ''tenant'' and let the framework create the table again (it is born scoped); or, if every tenant shares it, name it in agent_boundary.auto_protect_shared_tables',
                  t.schema)
      FROM user_tables t CROSS JOIN settings s
      CROSS JOIN LATERAL (
          SELECT CASE
              WHEN t.relname IN ('store', 'store_vectors') AND cols @> ARRAY['prefix', 'key'] THEN 'LangGraph (PostgresStore)'
              WHEN cols @> ARRAY['thread_id', 'checkpoint_ns'] THEN 'LangGraph (PostgresSaver)'
              WHEN t.relname LIKE 'langchain\_pg\_%' THEN 'langchain-postgres (PGVector)'
              WHEN cols @> ARRAY['langchain_id', 'content', 'embedding'] THEN 'langchain-postgres (PGVectorStore)'
              WHEN cols @> ARRAY['node_id', 'metadata_', 'embedding'] THEN 'LlamaIndex (PGVectorStore)'
              WHEN cols @> ARRAY['id', 'vector', 'payload'] THEN 'mem0 (pgvector)'
          END AS framework
            FROM (SELECT array_agg(a.attname::text) AS cols FROM pg_attribute a
                   WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped) c
      ) f
     WHERE f.framework IS NOT NULL AND NOT t.relispartition
       AND NOT ARRAY[t.relname::text, t.schema || '.' || t.relname] && s.shared_tables
       AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname = 'boundary_select')
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = s.tenant_column
                          AND a.attnum > 0 AND NOT a.attisdropped)
       -- Finding 14 already names tables in auto_protect_schemas.
       AND NOT t.schema = ANY (s.auto_protect_schemas)
    UNION ALL
    -- Advisories: what PostgreSQL scopes by role or cannot close, listed only on request.
    -- TEMPORARY: boundary.enter() refuses a session holding temporary objects made before it, so
    -- they cannot answer another boundary; a connection left holding some fails its next request.
    SELECT r.rolname::text,
           format('advisory: can create temporary objects (TEMPORARY on database %I) and reaches protected table %s; boundary.enter() refuses a session that holds them, so a pooled connection left with some fails its next request',
                  current_database(), min(p.name)),
           format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC; GRANT TEMPORARY ON DATABASE %I TO the roles that need it; behind pgbouncer set server_reset_query = ''DISCARD ALL'' and server_reset_query_always = 1',
                  current_database(), current_database())
      FROM pg_roles r CROSS JOIN app_protected p
     WHERE include_advisories AND NOT r.rolsuper AND r.rolname !~ '^pg_'
       AND has_database_privilege(r.oid, current_database(), 'TEMPORARY')
       AND has_table_privilege(r.oid, p.oid, 'SELECT, INSERT, UPDATE, DELETE')
     GROUP BY r.rolname
    UNION ALL
    SELECT r.rolname::text,
           'advisory: sessions of one role share what PostgreSQL scopes by role, not by row: pg_stat_activity query text, pg_cancel_backend and pg_terminate_backend, LISTEN/NOTIFY channels and large objects; tenants whose agents run as one role can see or disturb each other there',
           'bind tokens and tenant data as parameters so query text holds neither; give tenants that must not see each other''s sessions their own roles'
      FROM pg_roles r
     WHERE include_advisories AND NOT r.rolsuper AND r.rolname !~ '^pg_'
       AND EXISTS (SELECT 1 FROM app_protected p WHERE has_table_privilege(r.oid, p.oid, 'SELECT, INSERT, UPDATE, DELETE'))
    UNION ALL
    SELECT r.rolname::text,
           format('advisory: can LOCK protected table %s IN ACCESS EXCLUSIVE MODE (it holds UPDATE or DELETE, as every role does on boundary.memories, run_state and cache) and stall every tenant until its transaction ends; PostgreSQL has no finer lock privilege',
                  min(p.name)),
           -- transaction_timeout is PostgreSQL 17's; before it, a statement and an idle limit.
           CASE WHEN current_setting('server_version_num')::int >= 170000
                THEN format('ALTER ROLE %I SET transaction_timeout = ''30s''; ALTER ROLE %I SET idle_in_transaction_session_timeout = ''10s''; give other sessions a lock_timeout',
                            r.rolname, r.rolname)
                ELSE format('ALTER ROLE %I SET statement_timeout = ''30s''; ALTER ROLE %I SET idle_in_transaction_session_timeout = ''10s''; give other sessions a lock_timeout',
                            r.rolname, r.rolname)
           END
      FROM pg_roles r CROSS JOIN app_protected p
     WHERE include_advisories AND NOT r.rolsuper AND r.rolname !~ '^pg_'
       AND has_table_privilege(r.oid, p.oid, 'UPDATE, DELETE')
       AND NOT EXISTS (SELECT 1 FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
                        WHERE s.setrole = r.oid
                          AND (c LIKE 'transaction\_timeout=%'
                               OR (current_setting('server_version_num')::int < 170000
                                   AND c LIKE 'statement\_timeout=%'
                                   AND 'idle_in_transaction_session_timeout' = ANY (SELECT split_part(o, '=', 1) FROM unnest(s.setconfig) o))))
     GROUP BY r.rolname
    UNION ALL
    -- An event trigger's disabled state is not dumped: the restored database protects again.
    SELECT 'event trigger boundary_auto_protect',
           'advisory: auto-protection is disabled with ALTER EVENT TRIGGER, which pg_dump does not keep: a restored database protects new tables again',
           'ALTER EVENT TRIGGER boundary_auto_protect ENABLE; SELECT boundary.set_auto_protection(false);'
      FROM pg_event_trigger e
     WHERE include_advisories AND e.evtname = 'boundary_auto_protect' AND e.evtenabled = 'D'
       AND boundary.auto_protection_enabled()
    UNION ALL
    SELECT p.name, 'advisory: pg_class.reltuples, EXPLAIN estimates and EXPLAIN ANALYZE of a sequential scan ("Rows Removed by Filter") reveal how many rows all tenants hold',
           'show agents no EXPLAIN output; lead indexes with the tenant column so plans never visit other tenants'' rows'
      FROM protected p
     WHERE include_advisories
)
SELECT object, problem, fix FROM findings ORDER BY object, problem
$lint$;
