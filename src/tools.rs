//! Tool-argument checks: before a tool acts on an id, a tool name or a datasource the model
//! produced, ask the database whether the boundary covers it.
//!
//! `assert_in` runs its lookup as the caller, so row level security decides; an id that belongs
//! to another tenant, does not exist, or is not even a valid id gets the same error (SQLSTATE
//! 42501 `resource <table>:<id> is outside current boundary`), so the check is no existence
//! oracle. Every refusal is recorded where a rollback cannot undo it (see `audit`).

use crate::audit;
use crate::boundary::claims::{truncate_for_message, Boundary};
use crate::boundary::sealed_guc;
use crate::error::{BoundaryError, Result, SqlResult};
use crate::pg::catalog::{self, quote_ident};
use crate::policy;
use pgrx::prelude::*;
use pgrx::PgRelation;

fn refuse(boundary: &Boundary, what: String) -> BoundaryError {
    audit::refused("blocked", Some(boundary.into()), Some(&what), "outside current boundary");
    BoundaryError::OutsideBoundary(what)
}

/// The row's id as text when `id` names a row of `tbl` the boundary may see.
fn find_in(oid: pg_sys::Oid, id: &str, id_column: &str) -> Result<String> {
    let boundary = sealed_guc::current()?;
    catalog::validate_identifier("id_column", id_column).map_err(BoundaryError::InvalidArgument)?;
    let (table, _) = policy::protected(oid, "assert_in checks only tables protected by boundary.protect()")?;
    let column = catalog::column(&table, id_column)?.ok_or_else(|| {
        BoundaryError::UndefinedColumn(format!(
            "table {} has no column \"{id_column}\"; pass id_column => '<column>'",
            table.display
        ))
    })?;
    let resource = format!("resource {}:{}", table.display, truncate_for_message(id));
    let valid = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_input_is_valid($1, $2)",
        &[id.into(), column.sql_type.as_str().into()],
    )?
    .unwrap_or(false);
    if !valid {
        return Err(refuse(&boundary, resource));
    }
    let found = Spi::connect(|client| {
        let sql = format!(
            "SELECT {c}::text FROM {t} WHERE {c} = $1::text::{ty} LIMIT 1",
            c = quote_ident(&column.name),
            t = table.qualified,
            ty = column.sql_type
        );
        let rows = client.select(&sql, Some(1), &[id.into()])?;
        rows.into_iter().next().map(|row| row.get::<String>(1)).transpose().map(Option::flatten)
    })?;
    found.ok_or_else(|| refuse(&boundary, resource))
}

/// Returns the row's id (as text, in its canonical form) when `id` is a row of `tbl` inside the
/// boundary; otherwise raises 42501 `resource <table>:<id> is outside current boundary`, the
/// same whether the row belongs to another tenant, does not exist, or `id` is malformed.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn assert_in(tbl: PgRelation, id: &str, id_column: default!(&str, "'id'")) -> SqlResult<String> {
    let oid = catalog::release(tbl);
    Ok(find_in(oid, id, id_column)?)
}

// The id types tools pass as parameters: an integer or uuid from a driver would otherwise find
// no function (42883). Each is the text form, checked by the one function above; an untyped
// literal still resolves to text.
extension_sql!(
    r#"
CREATE FUNCTION boundary.assert_in(tbl regclass, id bigint, id_column text DEFAULT 'id') RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT boundary.assert_in(tbl, id::pg_catalog.text, id_column) $$;
CREATE FUNCTION boundary.assert_in(tbl regclass, id uuid, id_column text DEFAULT 'id') RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT boundary.assert_in(tbl, id::pg_catalog.text, id_column) $$;
"#,
    name = "assert_in_typed_ids",
    requires = [assert_in],
);

fn assert_listed(kind: &str, id: &str, allowed: fn(&Boundary) -> &Vec<String>) -> Result<String> {
    let boundary = sealed_guc::current()?;
    if allowed(&boundary).iter().any(|a| a == id) {
        return Ok(id.to_string());
    }
    Err(refuse(&boundary, format!("{kind} {}", truncate_for_message(id))))
}

/// Returns `tool_id` when the boundary allows that tool; otherwise raises 42501
/// `tool <id> is outside current boundary`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn assert_tool(tool_id: &str) -> SqlResult<String> {
    Ok(assert_listed("tool", tool_id, |b| &b.tool_ids)?)
}

/// Returns `datasource_id` when the boundary allows that datasource; otherwise raises 42501
/// `datasource <id> is outside current boundary`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn assert_datasource(datasource_id: &str) -> SqlResult<String> {
    Ok(assert_listed("datasource", datasource_id, |b| &b.datasource_ids)?)
}
