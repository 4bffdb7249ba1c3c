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
//! Memories, the cache, run state and the audit log stay local to the node that writes them.

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
                  HINT = 'On one node the key and registry tables are already the only copy.';
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
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END
$$;
COMMENT ON FUNCTION boundary.distribute_own_tables() IS
  'On a Citus coordinator: makes the key and registry tables reference tables, so boundary.enter on any node verifies with the same keys and registry, and a change reaches every node.';
REVOKE EXECUTE ON FUNCTION boundary.distribute_own_tables() FROM PUBLIC;
"#,
    name = "distribute_own_tables",
    requires = ["signing_keys_table", "principals_table", "forget_verified_triggers"],
);
