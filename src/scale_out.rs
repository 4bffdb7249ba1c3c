//! The extension's own tables on a Citus cluster.
//!
//! Every node has the extension, so every node has its own `boundary.signing_keys` and
//! `boundary.principals`; `boundary.enter` on a worker (Citus syncs metadata to workers, which
//! then take clients' queries too) would read that node's copy, which neither a key rotation nor a
//! revocation on the coordinator reaches. `boundary.distribute_own_tables()` makes both reference
//! tables: one copy on every node, changed on all of them in one distributed transaction. Their
//! row triggers go with them to each node's placement (Citus copies a table's triggers when
//! `citus.enable_unsafe_triggers` is on), so a change makes every node's backends forget the
//! verdicts they remembered (`boundary::verdicts`). The coordinator must be in Citus' metadata,
//! so that it holds a placement too and its own backends forget as well.
//!
//! The stores (memories, run state, the cache) are distributed by tenant, co-located. Their
//! policies carry the stores' own rules (`stores::row_rule`), so Citus' copies on the shards
//! mean the same; their write guard on a shard admits what a store function of the entering
//! backend writes, marked on the boundary Citus carries (`cluster_seal::while_writing_stores`).
//! The audit log is distributed by tenant beside them, so a tenant reads its whole trail on any
//! node, whichever node's audit writer wrote it; its reader rule is part of its policies too
//! (`audit::row_rule`). Citus refuses NULL in the distribution column, so events of no tenant
//! (protect, purge) have the tenant '' there, which no boundary has.

use pgrx::prelude::*;

extension_sql!(
    r#"
CREATE FUNCTION boundary.distribute_own_tables() RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass;
    unsafe_triggers text;
    replication_role text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'boundary.distribute_own_tables() needs Citus, which is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'On one node the extension''s tables are already the only copy.';
    END IF;
    IF (SELECT groupid FROM pg_catalog.pg_dist_local_group) <> 0 THEN
        RAISE EXCEPTION 'boundary.distribute_own_tables() runs on the Citus coordinator'
            USING ERRCODE = '55000';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node WHERE groupid = 0) THEN
        RAISE EXCEPTION 'the coordinator is not in Citus'' metadata, so it would hold no copy of the key and registry tables and its backends would not forget what a change revokes'
            USING ERRCODE = '55000',
                  HINT = 'SELECT citus_set_coordinator_host(''<coordinator host>'', <port>); then call boundary.distribute_own_tables() again.';
    END IF;
    unsafe_triggers := pg_catalog.current_setting('citus.enable_unsafe_triggers');
    -- The tables' row triggers must reach every placement: they make each node forget.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH tbl IN ARRAY ARRAY['boundary.signing_keys', 'boundary.principals']::regclass[] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
                    WHERE d.logicalrelid = tbl AND d.partmethod = 'n' AND d.repmodel = 't') THEN
            RETURN NEXT format('%s is a reference table already', tbl);
        ELSE
            PERFORM pg_catalog.create_reference_table(tbl);
            RETURN NEXT format('%s is now a reference table: one copy on every node', tbl);
        END IF;
    END LOOP;
    -- The stores and the audit log, by tenant and together; protected again first, in the shape
    -- whose copies on the shards mean the same (they were protected before Citus was installed,
    -- maybe).
    FOREACH tbl IN ARRAY ARRAY['boundary.memories', 'boundary.run_state', 'boundary.cache',
                               'boundary.audit_log']::regclass[] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = tbl) THEN
            RETURN NEXT format('%s is distributed already', tbl);
        ELSE
            PERFORM pg_catalog.count(*) FROM boundary.reprotect(tbl);
            IF tbl = 'boundary.audit_log'::regclass THEN
                -- Citus refuses NULL in the distribution column: events of no tenant get the
                -- tenant '', which no boundary has (after reprotect(), whose own event has
                -- none); the append-only trigger stands aside for this one update. Each node's
                -- writer numbers its rows from its own sequence, so the id is unique per node
                -- only and no longer the key (Citus' keys must hold the tenant; shard moves copy
                -- a table without one by its whole row).
                replication_role := pg_catalog.current_setting('session_replication_role');
                PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
                UPDATE boundary.audit_log SET tenant_id = '' WHERE tenant_id IS NULL;
                PERFORM pg_catalog.set_config('session_replication_role', replication_role, true);
                ALTER TABLE boundary.audit_log ALTER COLUMN tenant_id SET NOT NULL,
                    DROP CONSTRAINT audit_log_pkey, REPLICA IDENTITY FULL;
            END IF;
            -- The audit log in a colocation group of its own: its rows are written as the
            -- extension's owner, and Citus refuses a transaction's later access, as another
            -- role, to placements colocated with ones it changed.
            PERFORM pg_catalog.create_distributed_table(tbl, 'tenant_id',
                        colocate_with => CASE tbl WHEN 'boundary.memories'::regclass THEN 'default'
                                                  WHEN 'boundary.audit_log'::regclass THEN 'none'
                                                  ELSE 'boundary.memories' END);
            RETURN NEXT format('%s is now distributed by tenant_id', tbl);
        END IF;
    END LOOP;
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END
$$;
COMMENT ON FUNCTION boundary.distribute_own_tables() IS
  'On a Citus coordinator: makes the key and registry tables reference tables, so boundary.enter on any node verifies with the same keys and registry and a change reaches every node, and distributes memories, run state, the cache and the audit log by tenant.';
REVOKE EXECUTE ON FUNCTION boundary.distribute_own_tables() FROM PUBLIC;
"#,
    name = "distribute_own_tables",
    requires = [
        "signing_keys_table",
        "principals_table",
        "forget_verified_triggers",
        "memory_tables",
        "cache_table",
        "audit_log_table",
        policy::reprotect
    ],
);
