//! Generated row-level security: `boundary.protect(table)`, `boundary.unprotect(table)`, the
//! auto-protect event trigger, and the `boundary.unprotected_tables()` lint (sql/policy.sql).
//!
//! protect() runs as the caller (only a table's owner can change its policies) and returns the
//! DDL it ran. Its settings live in the comment of the table's `boundary_select` policy, so
//! partitions, children and later ALTER TABLEs are protected the same way without a side table.

pub mod spec;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

use crate::boundary::claims::Role;
use crate::error::{BoundaryError, OrRaise, Result};
use crate::gucs;
use pgrx::prelude::*;
use pgrx::PgRelation;
use spec::{quote_ident, Column, ColumnChoice, Existing, ProtectOptions, ProtectPlan};
use std::cell::Cell;

extension_sql_file!("../../sql/policy.sql", name = "policy_sql", requires = [auto_protect_object]);

thread_local! {
    /// Set while protect()/unprotect() run their own DDL, so the event trigger ignores it.
    static RUNNING_OWN_DDL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the event trigger muted; restores the flag even when `f` raises.
fn muting_event_trigger<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUNNING_OWN_DDL.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(RUNNING_OWN_DDL.with(|c| c.replace(true)));
    f()
}

pub(crate) struct Table {
    oid: pg_sys::Oid,
    /// Schema-qualified and quoted, for SQL.
    pub(crate) qualified: String,
    /// `schema.name` unquoted, for messages.
    pub(crate) display: String,
    /// The relation's own name, unquoted.
    pub(crate) name: String,
    relkind: String,
    temporary: bool,
    pub(crate) schema: String,
}

pub(crate) fn table(oid: pg_sys::Oid) -> Result<Table> {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1",
            Some(1),
            &[oid.into()],
        )?;
        rows.into_iter()
            .next()
            .map(|row| {
                let text = |i| Ok::<_, BoundaryError>(row.get::<String>(i)?.unwrap_or_default());
                Ok::<_, BoundaryError>((text(1)?, text(2)?, text(3)?, text(4)?))
            })
            .transpose()
    })?;
    let Some((schema, name, relkind, persistence)) = found else {
        return Err(BoundaryError::UndefinedObject(format!(
            "relation with oid {} does not exist",
            oid.to_u32()
        )));
    };
    Ok(Table {
        oid,
        qualified: format!("{}.{}", quote_ident(&schema), quote_ident(&name)),
        display: format!("{schema}.{name}"),
        name,
        relkind,
        temporary: persistence == "t",
        schema,
    })
}

pub(crate) fn column(table: &Table, name: &str) -> Result<Option<Column>> {
    let sql_type = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
        &[table.oid.into(), name.into()],
    );
    match sql_type {
        Ok(Some(sql_type)) => Ok(Some(Column { name: name.to_string(), sql_type })),
        Ok(None) | Err(pgrx::spi::SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
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
    if !matches!(table.relkind.as_str(), "r" | "p") {
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
    Ok(ProtectPlan {
        table: table.qualified.clone(),
        tenant,
        workspace: resolve(
            table,
            &options.workspace_column,
            spec::AUTO_WORKSPACE_COLUMN,
            "workspace_column",
        )?,
        datasource: resolve(
            table,
            &options.datasource_column,
            spec::AUTO_DATASOURCE_COLUMN,
            "datasource_column",
        )?,
        user: resolve(table, &options.user_column, spec::AUTO_USER_COLUMN, "user_column")?,
        options: options.clone(),
    })
}

/// The oids a one-column query about `oid` returns.
fn oids(sql: &str, oid: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>> {
    Spi::connect(|client| {
        client
            .select(sql, None, &[oid.into()])?
            .map(|row| Ok(row.get::<pg_sys::Oid>(1)?.expect("oid column is not null")))
            .collect()
    })
}

/// Partitions and inheritance children of `oid`.
fn children(oid: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>> {
    oids("SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1 ORDER BY inhrelid", oid)
}

/// The relation's oid, closing the relation pgrx opened for the argument: ALTER TABLE refuses
/// to run while this session still holds it open.
pub(crate) fn release(relation: PgRelation) -> pg_sys::Oid {
    let oid = relation.oid();
    drop(relation);
    oid
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
        spec::AUTO_WORKSPACE_COLUMN.to_string(),
        spec::AUTO_USER_COLUMN.to_string(),
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
        Ok(Existing {
            policies: names(
                "SELECT polname::text FROM pg_catalog.pg_policy WHERE polrelid = $1 AND polname = ANY ($2)",
                &[oid.into(), spec::POLICIES.to_vec().into()],
            )?,
            truncate_trigger: !names(
                "SELECT tgname::text FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
                &[oid.into(), spec::TRUNCATE_TRIGGER.into()],
            )?
            .is_empty(),
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
    let statements = plan(&table, options)?.statements(&existing(oid)?);
    muting_event_trigger(|| run_all(&statements))?;
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
        &[oid.into(), spec::SELECT_POLICY.into()],
    );
    match comment {
        Ok(Some(text)) => Ok(ProtectOptions::from_comment(&text)),
        Ok(None) | Err(pgrx::spi::SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn parse_write_roles(roles: Vec<Option<String>>) -> Result<Vec<Role>> {
    let mut parsed = roles
        .into_iter()
        .map(|r| {
            let r =
                r.ok_or_else(|| BoundaryError::InvalidArgument("write_roles must not contain NULL".into()))?;
            Role::parse(&r).map_err(|e| BoundaryError::InvalidArgument(format!("write_roles: {e}")))
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

/// Turns a table into a tenant table: ENABLE and FORCE row level security; a restrictive
/// policy per command on the tenant column (and the workspace, datasource and user columns
/// when the table has `workspace_id`, `datasource_id`, `user_id`, or the caller names them;
/// '' turns one off); defaults that fill those columns from the boundary; only `write_roles`
/// may write; TRUNCATE refused. Partitions and inheritance children are protected too.
/// Idempotent. Returns the DDL it ran.
#[pg_extern(volatile, parallel_unsafe)]
fn protect(
    tbl: PgRelation,
    tenant_column: default!(&str, "'tenant_id'"),
    workspace_column: default!(Option<&str>, "NULL"),
    datasource_column: default!(Option<&str>, "NULL"),
    user_column: default!(Option<&str>, "NULL"),
    write_roles: default!(Vec<Option<String>>, "'{owner,admin,member}'"),
) -> SetOfIterator<'static, String> {
    let oid = release(tbl);
    let protect = || -> Result<Vec<String>> {
        spec::validate_identifier("tenant_column", tenant_column).map_err(BoundaryError::InvalidArgument)?;
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
        Ok(ran)
    };
    SetOfIterator::new(protect().or_raise())
}

/// Re-applies protect() with the options the table was protected with (after the lint reports
/// that its protection was taken apart, or to pick up new columns or partitions).
#[pg_extern(volatile, parallel_unsafe)]
fn reprotect(tbl: PgRelation) -> SetOfIterator<'static, String> {
    let oid = release(tbl);
    let reprotect = || -> Result<Vec<String>> {
        let options = stored_options(oid)?.ok_or_else(|| {
            BoundaryError::InvalidArgument(format!(
                "table {} is not protected; use boundary.protect() first",
                table(oid).map(|t| t.display).unwrap_or_default()
            ))
        })?;
        let mut ran = Vec::new();
        protect_tree(oid, &options, &mut ran)?;
        audit_table_event("protect", oid)?;
        Ok(ran)
    };
    SetOfIterator::new(reprotect().or_raise())
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
    let statements = spec::unprotect_statements(&table.qualified, &existing(oid)?, other_policies);
    muting_event_trigger(|| run_all(&statements))?;
    ran.extend(statements);
    Ok(())
}

/// Undoes protect() on a table and its partitions/children: drops the boundary policies, the
/// defaults and the TRUNCATE guard, NO FORCE, and disables row level security unless other
/// policies remain. Returns the DDL it ran (nothing when the table was not protected).
#[pg_extern(volatile, parallel_unsafe)]
fn unprotect(tbl: PgRelation) -> SetOfIterator<'static, String> {
    let oid = release(tbl);
    let mut ran = Vec::new();
    unprotect_tree(oid, &mut ran).or_raise();
    if !ran.is_empty() {
        audit_table_event("unprotect", oid).or_raise();
    }
    SetOfIterator::new(ran)
}

fn ancestors_options(oid: pg_sys::Oid) -> Result<Option<ProtectOptions>> {
    for parent in oids("SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid = $1", oid)? {
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
        &[oid.into(), spec::POLICIES.to_vec().into()],
    )?
    .unwrap_or(false))
}

fn auto_protect_schemas() -> Vec<String> {
    gucs::auto_protect_schemas().split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn auto_protect_table(oid: pg_sys::Oid) -> Result<()> {
    let table = table(oid)?;
    if !matches!(table.relkind.as_str(), "r" | "p") {
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
    let configured = !table.temporary
        && auto_protect_schemas().contains(&table.schema)
        && column(&table, &gucs::tenant_column())?.is_some();
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
        &[oid.into(), spec::SELECT_POLICY.into()],
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

/// Called by the `boundary_auto_protect` event trigger for each table or view a DDL command
/// created or altered. Protects new tables with the tenant column in the schemas listed in
/// `agent_boundary.auto_protect_schemas`, every new partition or child of a protected table
/// (whatever its schema), re-applies protection after ALTER TABLE, and sets
/// `security_invoker` on views over protected tables.
#[pg_extern(volatile, parallel_unsafe)]
fn auto_protect_object(objid: pg_sys::Oid, object_type: &str) {
    if RUNNING_OWN_DDL.with(Cell::get) {
        return;
    }
    let result = match object_type {
        "table" => auto_protect_table(objid),
        "view" => secure_view(objid),
        _ => Ok(()),
    };
    result.or_raise()
}
