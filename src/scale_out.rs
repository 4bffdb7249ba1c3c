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
//! The audit log stays local to the node that writes it.

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
    -- The stores, by tenant and together; protected again first, in the shape whose copies on
    -- the shards mean the same (the stores were protected before Citus was installed, maybe).
    FOREACH tbl IN ARRAY ARRAY['boundary.memories', 'boundary.run_state', 'boundary.cache']::regclass[] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = tbl) THEN
            RETURN NEXT format('%s is distributed already', tbl);
        ELSE
            PERFORM pg_catalog.count(*) FROM boundary.reprotect(tbl);
            PERFORM pg_catalog.create_distributed_table(tbl, 'tenant_id',
                        colocate_with => CASE WHEN tbl = 'boundary.memories'::regclass THEN 'default'
                                              ELSE 'boundary.memories' END);
            RETURN NEXT format('%s is now distributed by tenant_id', tbl);
        END IF;
    END LOOP;
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END
$$;
COMMENT ON FUNCTION boundary.distribute_own_tables() IS
  'On a Citus coordinator: makes the key and registry tables reference tables, so boundary.enter on any node verifies with the same keys and registry and a change reaches every node, and distributes memories, run state and the cache by tenant.';
REVOKE EXECUTE ON FUNCTION boundary.distribute_own_tables() FROM PUBLIC;
"#,
    name = "distribute_own_tables",
    requires = [
        "signing_keys_table",
        "principals_table",
        "forget_verified_triggers",
        "memory_tables",
        "cache_table",
        policy::reprotect
    ],
);
