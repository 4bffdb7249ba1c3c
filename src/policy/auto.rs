//! Auto-protection, called by the `boundary_auto_protect` event trigger (policy.sql): new tables
//! with the tenant column in `agent_boundary.auto_protect_schemas` (framework tables get it from
//! `auto_protect_add_columns`, scope_columns.rs), new partitions and children
//! of protected tables, repairs after ALTER TABLE, and `security_invoker` on views over
//! protected tables.

use super::ddl::{self, ColumnChoice, ProtectOptions};
use super::scope_columns;
use super::{audit_table_event, muting_event_trigger, parents, protect_tree, stored_options};
use crate::boundary::claims::Role;
use crate::error::{Result, SqlResult};
use crate::gucs;
use crate::pg::catalog::{column, table};
use pgrx::prelude::*;

fn ancestors_options(oid: pg_sys::Oid) -> Result<Option<ProtectOptions>> {
    for parent in parents(oid)? {
        if let Some(options) = stored_options(parent)?.or(ancestors_options(parent)?) {
            return Ok(Some(options));
        }
    }
    Ok(None)
}

fn is_intact(oid: pg_sys::Oid) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT c.relrowsecurity AND c.relforcerowsecurity
                AND (SELECT count(*) FROM pg_catalog.pg_policy p
                      WHERE p.polrelid = c.oid AND p.polname = ANY ($2)) = 5
           FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[oid.into(), ddl::POLICIES.to_vec().into()],
    )?
    .unwrap_or(false))
}

fn auto_protect_schemas() -> Vec<String> {
    gucs::auto_protect_schemas().split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn auto_protect_table(oid: pg_sys::Oid) -> Result<()> {
    // Citus creates and drops relations within one command (create_reference_table), and a
    // shard it creates on this node gets its table's policies from Citus.
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = $1)",
        &[oid.into()],
    )?
    .unwrap_or(false);
    if !exists || crate::pg::citus::is_shard(oid)? {
        return Ok(());
    }
    let table = table(oid)?;
    if !table.is_table() {
        return Ok(());
    }
    let mut ran = Vec::new();
    if let Some(options) = stored_options(oid)? {
        // Already protected: re-apply (new columns, new partitions), and repair if the
        // ALTER TABLE broke it (e.g. DISABLE or NO FORCE ROW LEVEL SECURITY).
        let was_intact = is_intact(oid)?;
        protect_tree(oid, &options, &mut ran)?;
        if !was_intact {
            pgrx::notice!(
                "agent_boundary re-protected table {}: it is a tenant table; use boundary.unprotect() to stop protecting it",
                table.display
            );
        }
        return Ok(());
    }
    let inherited = ancestors_options(oid)?;
    let in_auto_schema = !table.temporary
        && auto_protect_schemas().contains(&table.schema)
        && !scope_columns::is_shared_table(&table.schema, &table.name);
    let configured = in_auto_schema && column(&table, &gucs::tenant_column())?.is_some();
    if in_auto_schema && !configured && inherited.is_none() {
        scope_columns::refuse_unscoped_new_table(&table)?;
    }
    let options = match (inherited, configured) {
        (Some(options), _) => options,
        (None, true) => ProtectOptions {
            tenant_column: gucs::tenant_column(),
            workspace_column: ColumnChoice::Auto,
            datasource_column: ColumnChoice::Auto,
            user_column: ColumnChoice::Auto,
            write_roles: vec![Role::Owner, Role::Admin, Role::Member],
        },
        (None, false) => return Ok(()),
    };
    protect_tree(oid, &options, &mut ran)?;
    audit_table_event("protect", oid)?;
    pgrx::notice!("agent_boundary protected table {}", table.display);
    Ok(())
}

/// A view reading a protected table must check the querying role's policies, not its owner's.
fn secure_view(oid: pg_sys::Oid) -> Result<()> {
    let needs_fix = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
                SELECT 1 FROM pg_catalog.pg_rewrite r
                  JOIN pg_catalog.pg_depend d
                    ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                  JOIN pg_catalog.pg_policy p ON p.polrelid = d.refobjid AND p.polname = $2
                 WHERE r.ev_class = $1)
            AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c, pg_catalog.pg_options_to_table(c.reloptions) o
                 WHERE c.oid = $1 AND o.option_name = 'security_invoker'
                   AND o.option_value IN ('true', 'on', 'yes', '1'))",
        &[oid.into(), ddl::SELECT_POLICY.into()],
    )?
    .unwrap_or(false);
    if needs_fix {
        let view = table(oid)?;
        if view.relkind == "v" {
            muting_event_trigger(|| {
                Spi::run(&format!("ALTER VIEW {} SET (security_invoker = true)", view.qualified))
            })?;
            pgrx::notice!(
                "agent_boundary set security_invoker = true on view {}: it reads protected tables",
                view.display
            );
        }
    }
    Ok(())
}

/// Whether a superuser is replaying a dump: pg_dump starts every dump (archive or plain SQL)
/// with `SET check_function_bodies = false`, which applications leave on. A dump brings each
/// table's policies, partitions and view options itself; protecting (or repairing) tables as
/// they arrive would make its own CREATE POLICY statements fail. Superusers only, so a table
/// owner cannot turn off the repair of a protected table this way (a superuser bypasses row
/// level security anyway). A table a restore leaves unprotected is reported by the lint.
pub(super) fn restoring_a_dump() -> bool {
    // SAFETY: reads a setting and the session's role of this backend.
    unsafe { !pg_sys::check_function_bodies && pg_sys::superuser() }
}

/// Called by the `boundary_auto_protect` event trigger for each table or view a DDL command
/// created or altered. Protects new tables with the tenant column in the schemas listed in
/// `agent_boundary.auto_protect_schemas`, every new partition or child of a protected table
/// (whatever its schema), re-applies protection after ALTER TABLE, and sets
/// `security_invoker` on views over protected tables.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn auto_protect_object(objid: pg_sys::Oid, object_type: &str) -> SqlResult<()> {
    if super::auto_protection_stands_aside() {
        return Ok(());
    }
    match object_type {
        "table" => auto_protect_table(objid)?,
        "view" => secure_view(objid)?,
        _ => {}
    }
    Ok(())
}
