//! Generated row-level security: `boundary.protect(table)`, `boundary.unprotect(table)`, the
//! auto-protect event trigger, and the `boundary.unprotected_tables()` lint (policy.sql, beside this file).
//!
//! protect() runs as the caller (only a table's owner can change its policies) and returns the
//! DDL it ran. Its settings live in the comment of the table's `boundary_select` policy, so
//! partitions, children and later ALTER TABLEs are protected the same way without a side table.

mod auto;
pub mod ddl;
mod guard;
pub mod scope;
mod scope_columns;
pub mod tenant_routing;

pub use ddl::RowRule;

/// Installs the hooks that give framework tables their scope columns (scope_columns.rs) and
/// route protected queries to the tenant's Citus shard (tenant_routing.rs).
pub fn init() {
    scope_columns::init();
    tenant_routing::init();
}

/// Whether an open relation carries protect()'s policies, read from its relcache entry (no
/// query, so planner and parser hooks can ask).
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn has_boundary_policies(rel: pg_sys::Relation) -> bool {
    // SAFETY: the caller holds `rel` open; rd_rsdesc is null or the cached policy list.
    unsafe {
        !(*rel).rd_rsdesc.is_null()
            && pgrx::PgList::<pg_sys::RowSecurityPolicy>::from_pg((*(*rel).rd_rsdesc).policies)
                .iter_ptr()
                .any(|p| {
                    !(*p).policy_name.is_null()
                        && std::ffi::CStr::from_ptr((*p).policy_name).to_bytes()
                            == ddl::SELECT_POLICY.as_bytes()
                })
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    include!("tests.rs");
}

use crate::boundary::claims::Role;
use crate::error::{BoundaryError, Result};
use crate::gucs;
use crate::pg::catalog::{self, column, oids, release, table, validate_identifier, Column, Table};
use ddl::{ColumnChoice, Existing, Guard, ProtectOptions, ProtectPlan};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgRelation;
use scope::Scope;
use std::cell::Cell;

extension_sql_file!(
    "policy.sql",
    name = "policy_sql",
    requires = [
        auto::auto_protect_object,
        guard::guard_ddl,
        guard::outer_role_bypasses_rls,
        guard::current_role_bypasses_rls,
        boundary::is_active,
        installed
    ]
);

thread_local! {
    /// Set while protect()/unprotect() run their own DDL, so the event trigger ignores it.
    static RUNNING_OWN_DDL: Cell<bool> = const { Cell::new(false) };
}

/// Whether auto-protection and the scope-column hooks leave DDL alone: protect()'s own DDL, a
/// dump being replayed (auto::restoring_a_dump), or Citus applying on a worker what the
/// coordinator's protection already decided (reacting there would protect shards twice).
pub(crate) fn auto_protection_stands_aside() -> bool {
    crate::pg::flag::is_raised(&RUNNING_OWN_DDL) || auto::restoring_a_dump() || citus_replaying()
}

/// Citus applying a coordinator's DDL on this worker, outside any boundary. Citus knows its
/// connections by application_name, which any session may set: inside a boundary (where a
/// model's SQL runs) nothing stands aside for it.
fn citus_replaying() -> bool {
    crate::pg::citus::applying_coordinator_ddl()
        && matches!(crate::boundary::sealed_guc::current_if_any(), Ok(None))
}

/// Runs `f` with the event trigger muted; restores the flag even when `f` raises.
fn muting_event_trigger<T>(f: impl FnOnce() -> T) -> T {
    crate::pg::flag::raised(&RUNNING_OWN_DDL, f)
}

fn resolve(table: &Table, choice: &ColumnChoice, auto_name: &str, what: &str) -> Result<Option<Column>> {
    match choice {
        ColumnChoice::Off => Ok(None),
        ColumnChoice::Auto => column(table, auto_name),
        ColumnChoice::Named(name) => column(table, name)?.map(Some).ok_or_else(|| {
            BoundaryError::UndefinedColumn(format!(
                "table {} has no column \"{name}\" (given as {what})",
                table.display
            ))
        }),
    }
}

pub(crate) fn plan(table: &Table, options: &ProtectOptions) -> Result<ProtectPlan> {
    if !table.is_table() {
        return Err(BoundaryError::InvalidArgument(format!(
            "{} is not a table; only tables and partitioned tables can be protected \
             (a view over protected tables needs security_invoker = true)",
            table.display
        )));
    }
    let tenant = column(table, &options.tenant_column)?.ok_or_else(|| {
        BoundaryError::UndefinedColumn(format!(
            "table {} has no tenant column \"{}\"; add one or pass tenant_column => '<column>'",
            table.display, options.tenant_column
        ))
    })?;
    let scope = Scope {
        tenant,
        workspace: resolve(table, &options.workspace_column, ddl::AUTO_WORKSPACE_COLUMN, "workspace_column")?,
        datasource: resolve(
            table,
            &options.datasource_column,
            ddl::AUTO_DATASOURCE_COLUMN,
            "datasource_column",
        )?,
        user: resolve(table, &options.user_column, ddl::AUTO_USER_COLUMN, "user_column")?,
    };
    // Two ids that differ as text must never see each other's rows (ATTACKS row 30).
    for (column, _) in scope.columns() {
        if let Some(why) = catalog::inexact_comparison(table, column)? {
            return Err(BoundaryError::WrongType(why));
        }
    }
    // Citus may be installed after a table is protected and may distribute it later, so the
    // shape follows the database, not the table.
    let shape =
        if crate::pg::citus::installed() { ddl::Shape::Distributable } else { ddl::Shape::Restrictive };
    Ok(ProtectPlan {
        table: table.qualified.clone(),
        scope,
        options: options.clone(),
        shape,
        fixed_default: crate::pg::citus::distribution_column(table.oid)?,
        row_rule: crate::stores::row_rule(&table.display).or_else(|| crate::audit::row_rule(&table.display)),
    })
}

/// Partitions and inheritance children of `oid`.
fn children(oid: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>> {
    oids("SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1 ORDER BY inhrelid", oid)
}

/// The tables `oid` is a partition or inheritance child of.
fn parents(oid: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>> {
    oids("SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid = $1", oid)
}

fn run_all(statements: &[String]) -> Result<()> {
    for statement in statements {
        Spi::run(statement)?;
    }
    Ok(())
}

/// What an earlier protect() left on the table: our policies, the TRUNCATE guard, and the
/// columns whose default is one of our accessors.
fn existing(oid: pg_sys::Oid) -> Result<Existing> {
    // Only columns a protection scopes (or scoped, by its stored options) have "our" defaults;
    // any other column's `DEFAULT boundary.user_id()` (say, requested_by) is the user's own.
    let mut scoped = vec![
        gucs::tenant_column(),
        ddl::AUTO_WORKSPACE_COLUMN.to_string(),
        ddl::AUTO_USER_COLUMN.to_string(),
    ];
    if let Some(previous) = stored_options(oid)? {
        scoped.push(previous.tenant_column.clone());
        for choice in [&previous.workspace_column, &previous.user_column] {
            if let ColumnChoice::Named(name) = choice {
                scoped.push(name.clone());
            }
        }
    }
    Spi::connect(|client| {
        let names = |sql: &str, args: &[pgrx::datum::DatumWithOid]| -> Result<Vec<String>> {
            client.select(sql, None, args)?.map(|row| Ok(row.get::<String>(1)?.unwrap_or_default())).collect()
        };
        // A row trigger of that name, if any: a partition's clone of its parent's is Inherited.
        let guard = |name: &str| -> Result<Option<Guard>> {
            client
                .select(
                    "SELECT tgparentid <> 0 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
                    None,
                    &[oid.into(), name.into()],
                )?
                .next()
                .map(|row| {
                    Ok(if row.get::<bool>(1)?.unwrap_or(false) { Guard::Inherited } else { Guard::Own })
                })
                .transpose()
        };
        Ok(Existing {
            policies: names(
                "SELECT polname::text FROM pg_catalog.pg_policy WHERE polrelid = $1 AND polname = ANY ($2)",
                &[oid.into(), ddl::POLICIES.to_vec().into()],
            )?,
            truncate_trigger: !names(
                "SELECT tgname::text FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
                &[oid.into(), ddl::TRUNCATE_TRIGGER.into()],
            )?
            .is_empty(),
            cascade_trigger: guard(ddl::CASCADE_TRIGGER)?,
            insert_trigger: guard(ddl::INSERT_TRIGGER)?,
            accessor_defaults: names(
                "SELECT a.attname::text FROM pg_catalog.pg_attrdef d
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                  WHERE d.adrelid = $1 AND a.attname = ANY ($2)
                    AND pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                        ~ '^\\(?boundary\\.(tenant_id|workspace_id|user_id)\\(\\)'
                  ORDER BY a.attnum",
                &[oid.into(), scoped.into()],
            )?,
        })
    })
}

/// Protects `oid` and, recursively, its partitions and inheritance children (whose direct
/// reads the parent's policies would not cover). Appends every statement run to `ran`.
fn protect_tree(oid: pg_sys::Oid, options: &ProtectOptions, ran: &mut Vec<String>) -> Result<()> {
    let table = table(oid)?;
    // Reading an unprotected parent returns this table's rows under the parent's (absent)
    // policies.
    for parent in parents(oid)? {
        if stored_options(parent)?.is_none() {
            let parent = catalog::table(parent)?;
            return Err(BoundaryError::NotPrepared(format!(
                "table {} inherits from unprotected table {}, whose reads would return its rows of every \
                 tenant; protect {} (which protects its children too), or detach it first",
                table.display, parent.display, parent.display
            )));
        }
    }
    let mut statements = plan(&table, options)?.statements(&existing(oid)?);
    muting_event_trigger(|| -> Result<()> {
        crate::pg::citus::with_protection_triggers_allowed(|| run_all(&statements))?;
        // What the policies are now, so the lint sees any later change to them.
        let fingerprint =
            Spi::get_one_with_args::<String>("SELECT boundary.policies_fingerprint($1)", &[oid.into()])?
                .unwrap_or_default();
        let comment = ddl::fingerprint_comment(&table.qualified, &fingerprint);
        Spi::run(&comment)?;
        statements.push(comment);
        Ok(())
    })?;
    ran.extend(statements);
    for child in children(oid)? {
        protect_tree(child, options, ran)?;
    }
    Ok(())
}

/// The options a protected table was protected with, if it is protected.
pub(crate) fn stored_options(oid: pg_sys::Oid) -> Result<Option<ProtectOptions>> {
    let comment = Spi::get_one_with_args::<String>(
        "SELECT d.description FROM pg_catalog.pg_policy p
           JOIN pg_catalog.pg_description d
             ON d.objoid = p.oid AND d.classoid = 'pg_catalog.pg_policy'::pg_catalog.regclass
          WHERE p.polrelid = $1 AND p.polname = $2",
        &[oid.into(), ddl::SELECT_POLICY.into()],
    );
    match comment {
        Ok(Some(text)) => Ok(ProtectOptions::from_comment(&text)),
        Ok(None) | Err(pgrx::spi::SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The table and the options it was protected with, or SQLSTATE 55000 naming what needs it:
/// every capability that reads only protected tables (reprotect, assert_in, vector_search,
/// vector_index) refuses an unprotected one the same way.
pub(crate) fn protected(oid: pg_sys::Oid, needed_by: &str) -> Result<(Table, ProtectOptions)> {
    let table = table(oid)?;
    match stored_options(oid)? {
        Some(options) => Ok((table, options)),
        None => {
            Err(BoundaryError::NotPrepared(format!("table {} is not protected; {needed_by}", table.display)))
        }
    }
}

fn parse_write_roles(roles: pgrx::Array<&str>) -> Result<Vec<Role>> {
    // Borrowed from PostgreSQL's memory; a list longer than the roles there are is refused
    // before anything is built from it.
    if roles.len() > 4 {
        return Err(BoundaryError::InvalidArgument(format!(
            "write_roles has {} entries; there are four roles (owner, admin, member, viewer)",
            roles.len()
        )));
    }
    let mut parsed = roles
        .iter()
        .map(|r| {
            let r =
                r.ok_or_else(|| BoundaryError::InvalidArgument("write_roles must not contain NULL".into()))?;
            Role::parse(r).map_err(|e| BoundaryError::InvalidArgument(format!("write_roles: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    parsed.sort_by(|a, b| b.cmp(a));
    parsed.dedup();
    Ok(parsed)
}

/// An administrative audit row (no tenant: tenants do not see it) naming the table.
fn audit_table_event(event: &str, oid: pg_sys::Oid) -> Result<()> {
    let display = table(oid)?.display;
    crate::audit::record(event, None, crate::audit::Event { resource: Some(&display), ..Default::default() })
}

/// True. The permissive policy protect() makes admits rows through this function rather than
/// through a bare `true`, so the policy depends on the extension: `DROP EXTENSION agent_boundary
/// CASCADE` drops it with the restrictive ones, and the table, its row level security still on
/// and forced, then admits no row instead of every row (in the distributable shape the policy
/// admits through `NOT installed()`: nothing). IMMUTABLE, so the planner folds it away.
#[pg_extern(immutable, parallel_safe)]
fn installed() -> bool {
    true
}

/// Turns a table into a tenant table: ENABLE and FORCE row level security; a restrictive
/// policy per command (permissive, each carrying the whole predicate, where Citus is installed:
/// ddl::Shape) on the tenant column (and the workspace, datasource and user columns
/// when the table has `workspace_id`, `datasource_id`, `user_id`, or the caller names them;
/// '' turns one off); defaults that fill those columns from the boundary; only `write_roles`
/// may write; TRUNCATE refused. Partitions and inheritance children are protected too.
/// Idempotent. Returns the DDL it ran.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn protect(
    tbl: PgRelation,
    tenant_column: default!(&str, "'tenant_id'"),
    workspace_column: default!(Option<&str>, "NULL"),
    datasource_column: default!(Option<&str>, "NULL"),
    user_column: default!(Option<&str>, "NULL"),
    write_roles: default!(pgrx::Array<&str>, "'{owner,admin,member}'"),
) -> std::result::Result<SetOfIterator<'static, String>, ErrorReport> {
    let oid = release(tbl);
    validate_identifier("tenant_column", tenant_column).map_err(BoundaryError::InvalidArgument)?;
    let invalid = BoundaryError::InvalidArgument;
    let options = ProtectOptions {
        tenant_column: tenant_column.to_string(),
        workspace_column: ColumnChoice::from_argument("workspace_column", workspace_column)
            .map_err(invalid)?,
        datasource_column: ColumnChoice::from_argument("datasource_column", datasource_column)
            .map_err(invalid)?,
        user_column: ColumnChoice::from_argument("user_column", user_column).map_err(invalid)?,
        write_roles: parse_write_roles(write_roles)?,
    };
    let mut ran = Vec::new();
    protect_tree(oid, &options, &mut ran)?;
    audit_table_event("protect", oid)?;
    Ok(SetOfIterator::new(ran))
}

/// Re-applies protect() with the options the table was protected with (after the lint reports
/// that its protection was taken apart, or to pick up new columns or partitions).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn reprotect(tbl: PgRelation) -> std::result::Result<SetOfIterator<'static, String>, ErrorReport> {
    let oid = release(tbl);
    let (_, options) = protected(oid, "use boundary.protect() first")?;
    let mut ran = Vec::new();
    protect_tree(oid, &options, &mut ran)?;
    audit_table_event("protect", oid)?;
    Ok(SetOfIterator::new(ran))
}

fn unprotect_tree(oid: pg_sys::Oid, ran: &mut Vec<String>) -> Result<()> {
    for child in children(oid)? {
        unprotect_tree(child, ran)?;
    }
    if stored_options(oid)?.is_none() {
        return Ok(());
    }
    let table = table(oid)?;
    let other_policies = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_policy WHERE polrelid = $1 AND polname NOT LIKE 'boundary\\_%'",
        &[oid.into()],
    )?
    .unwrap_or(0)
        > 0;
    let statements = ddl::unprotect_statements(&table.qualified, &existing(oid)?, other_policies);
    muting_event_trigger(|| run_all(&statements))?;
    ran.extend(statements);
    Ok(())
}

/// Undoes protect() on a table and its partitions/children: drops the boundary policies, the
/// defaults and the TRUNCATE guard, NO FORCE, and disables row level security unless other
/// policies remain. Returns the DDL it ran (nothing when the table was not protected).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn unprotect(tbl: PgRelation) -> std::result::Result<SetOfIterator<'static, String>, ErrorReport> {
    let oid = release(tbl);
    let mut ran = Vec::new();
    unprotect_tree(oid, &mut ran)?;
    if !ran.is_empty() {
        audit_table_event("unprotect", oid)?;
    }
    Ok(SetOfIterator::new(ran))
}
