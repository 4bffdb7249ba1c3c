//! Catalog lookups and SQL identifiers: which table an oid names, what type a column has, how
//! to quote a name. Every statement names `pg_catalog` explicitly.

use crate::error::{BoundaryError, Result};
use pgrx::prelude::*;
use pgrx::PgRelation;

/// PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes; refuse them instead.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// PostgreSQL's quote_literal: single quotes doubled; E'' with doubled backslashes if needed.
pub fn quote_literal(text: &str) -> String {
    let body = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// Identifiers a caller passes in: non-empty and short enough not to be truncated silently.
pub fn validate_identifier(what: &str, ident: &str) -> std::result::Result<(), String> {
    if ident.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if ident.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "{what} is {} bytes long; PostgreSQL identifiers are at most {MAX_IDENTIFIER_BYTES}",
            ident.len()
        ));
    }
    Ok(())
}

/// `InvalidSubTransactionId` (a macro in C, not in pgrx's bindings).
const INVALID_SUBTRANSACTION_ID: pg_sys::SubTransactionId = 0;

/// Whether the relation was created in the running transaction (so it holds no rows but this
/// transaction's).
pub fn created_in_this_transaction(oid: pg_sys::Oid) -> bool {
    // SAFETY: the caller names an existing relation; the lock is kept to the end of the
    // transaction, as any reader's would be.
    unsafe {
        let rel = pg_sys::relation_open(oid, pg_sys::AccessShareLock as _);
        let created = (*rel).rd_createSubid != INVALID_SUBTRANSACTION_ID;
        pg_sys::relation_close(rel, pg_sys::NoLock as _);
        created
    }
}

/// A resolved column: its name and its type as `format_type()` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub sql_type: String,
}

/// A table (or view) as the catalog describes it.
pub struct Table {
    pub oid: pg_sys::Oid,
    /// Schema-qualified and quoted, for SQL.
    pub qualified: String,
    /// `schema.name` unquoted, for messages.
    pub display: String,
    /// The relation's own name, unquoted.
    pub name: String,
    /// `pg_class.relkind`.
    pub relkind: String,
    pub temporary: bool,
    pub schema: String,
}

impl Table {
    pub fn is_table(&self) -> bool {
        matches!(self.relkind.as_str(), "r" | "p")
    }
}

pub fn table(oid: pg_sys::Oid) -> Result<Table> {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text,
                    c.relpersistence::pg_catalog.text
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid OPERATOR(pg_catalog.=) $1",
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

/// The oid of relation `schema.name`, from the catalog caches (no query). None while it does
/// not exist.
pub fn relation_oid(schema: &std::ffi::CStr, name: &std::ffi::CStr) -> Option<pg_sys::Oid> {
    // SAFETY: syscache lookups by name.
    let relid = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

/// The owner of relation `schema.name`, from the catalog caches (no query; for paths that run
/// on every request). None while it does not exist.
pub fn relation_owner(schema: &std::ffi::CStr, name: &std::ffi::CStr) -> Option<pg_sys::Oid> {
    let relid = relation_oid(schema, name)?;
    // SAFETY: a syscache lookup by oid; the tuple is released before returning.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as _, relid.into());
        if tuple.is_null() {
            return None;
        }
        let owner = (*pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_class>()).relowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}

/// The live column `name` of `table`, if it has one.
pub fn column(table: &Table, name: &str) -> Result<Option<Column>> {
    let sql_type = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
        &[table.oid.into(), name.into()],
    );
    match sql_type {
        Ok(Some(sql_type)) => Ok(Some(Column { name: name.to_string(), sql_type })),
        Ok(None) | Err(pgrx::spi::SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Types whose equality is text equality once the value round-trips through text (which the
/// scope predicate checks): text, varchar, char, uuid and the integers, or a domain over one.
const EXACT_TYPES: [u32; 7] = [25, 1043, 1042, 2950, 21, 23, 20];

/// Why `column` of `table` cannot tell apart two ids that differ as text (a type whose equality
/// merges them, like numeric's '1.0' = '1.00' or citext; a nondeterministic collation), or None.
pub fn inexact_comparison(table: &Table, column: &Column) -> Result<Option<String>> {
    let facts = Spi::connect(|client| {
        let rows = client.select(
            "WITH RECURSIVE base(oid, typtype, next, depth) AS (
                 SELECT t.oid, t.typtype, t.typbasetype, 0
                   FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
                  WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2
                 UNION ALL
                 SELECT t.oid, t.typtype, t.typbasetype, b.depth OPERATOR(pg_catalog.+) 1
                   FROM base b JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) b.next
                  WHERE b.typtype OPERATOR(pg_catalog.=) 'd')
             SELECT (SELECT b.oid FROM base b ORDER BY b.depth DESC LIMIT 1),
                    (SELECT c.collisdeterministic FROM pg_catalog.pg_attribute a
                       JOIN pg_catalog.pg_collation c ON c.oid OPERATOR(pg_catalog.=) a.attcollation
                      WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2)",
            Some(1),
            &[table.oid.into(), column.name.as_str().into()],
        )?;
        let row = rows.first();
        Ok::<_, BoundaryError>((row.get::<pg_sys::Oid>(1)?, row.get::<bool>(2)?))
    })?;
    let use_instead = "use text, varchar, char, uuid, smallint, integer or bigint (or a domain over one) \
                       with a deterministic collation";
    let (base_type, deterministic) = facts;
    if !base_type.is_some_and(|oid| EXACT_TYPES.contains(&oid.to_u32())) {
        return Ok(Some(format!(
            "column \"{}\" of table {} has type {}, whose equality can merge ids that differ as text; {use_instead}",
            column.name, table.display, column.sql_type
        )));
    }
    if deterministic == Some(false) {
        return Ok(Some(format!(
            "column \"{}\" of table {} has a nondeterministic collation, whose equality can merge ids that \
             differ as text; {use_instead}",
            column.name, table.display
        )));
    }
    Ok(None)
}

/// The relation's oid, closing the relation pgrx opened for the argument: ALTER TABLE refuses
/// to run while this session still holds it open.
pub fn release(relation: PgRelation) -> pg_sys::Oid {
    let oid = relation.oid();
    drop(relation);
    oid
}

/// The oids a one-column query about `oid` returns.
pub fn oids(sql: &str, oid: pg_sys::Oid) -> Result<Vec<pg_sys::Oid>> {
    Spi::connect(|client| {
        client
            .select(sql, None, &[oid.into()])?
            .map(|row| {
                row.get::<pg_sys::Oid>(1)?
                    .ok_or_else(|| BoundaryError::Internal("an oid column returned NULL".into()))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(validate_identifier("col", "").unwrap_err(), "col must not be empty");
        assert!(validate_identifier("col", &"x".repeat(64)).is_err());
        assert!(validate_identifier("col", &"x".repeat(63)).is_ok());
    }
}
