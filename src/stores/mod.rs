//! What agents keep between steps, each store a table guarded by generated row level security:
//! durable memory and run state (`memory`), cached results (`cache`), and the injective key
//! encoding both use (`keyspace`).

pub mod cache;
mod guard;
pub mod keyspace;
pub mod memory;

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    include!("tests.rs");
}

use crate::boundary::claims::{truncate_for_message, validate_text};
use crate::error::{BoundaryError, Result, SqlResult};
pub(crate) use guard::store_write;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;

/// The stores' own rules on top of tenant and workspace, which `protect()` puts into each of
/// their policies: user memory belongs to its owner; run state to its run, until it expires;
/// a cache entry to the boundary whose role and datasources made its key, until it expires.
/// `table` is `schema.name`, unquoted.
pub fn row_rule(table: &str) -> Option<crate::policy::RowRule> {
    use crate::policy::RowRule;
    match table {
        "boundary.memories" => Some(RowRule {
            visible: "({row}scope = 'workspace' OR {row}namespace = boundary.memory_namespace())",
            writable: "({row}scope = 'workspace' OR {row}namespace = boundary.memory_namespace())",
        }),
        "boundary.run_state" => Some(RowRule {
            visible: "{row}run_id = boundary.run_id() AND {row}expires_at > statement_timestamp()",
            writable: "{row}run_id = boundary.run_id()",
        }),
        "boundary.cache" => Some(RowRule {
            visible:
                "starts_with({row}key, boundary.cache_prefix()) AND {row}expires_at > statement_timestamp()",
            writable: "starts_with({row}key, boundary.cache_prefix())",
        }),
        _ => None,
    }
}

/// Longest memory or run-state name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Largest stored value (its JSON text), in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// `boundary.compose_key(VARIADIC parts)`: the injective key encoding, for app-side stores and
/// CHECK constraints. Pure, so IMMUTABLE (unlike the accessors, it reads no boundary).
#[pg_extern(immutable, parallel_safe, strict)]
fn compose_key(parts: pgrx::VariadicArray<&str>) -> SqlResult<String> {
    // The parts are borrowed from PostgreSQL's memory; measure them before building anything.
    let input: usize = parts.iter().map(|p| p.map_or(0, str::len)).sum();
    refuse_large_key_input("compose_key", input)?;
    Ok(keyspace::compose(parts.iter().map(|p| p.unwrap_or_default())))
}

/// One escaped key part (`%` → `%25`, `:` → `%3A`).
#[pg_extern(immutable, parallel_safe, strict)]
fn key_part(part: &str) -> SqlResult<String> {
    refuse_large_key_input("key_part", part.len())?;
    Ok(keyspace::part(part))
}

/// Keys are made of ids and names; escaping can triple them, so longer input is refused before
/// anything is allocated for it.
pub const MAX_KEY_INPUT_BYTES: usize = 64 * 1024;

fn refuse_large_key_input(function: &str, bytes: usize) -> Result<()> {
    if bytes > MAX_KEY_INPUT_BYTES {
        return Err(BoundaryError::ValueTooLarge(format!(
            "boundary.{function}() input is {bytes} bytes; the limit is {MAX_KEY_INPUT_BYTES}"
        )));
    }
    Ok(())
}

/// Largest jsonb argument (its stored size) turned into Rust values at all: any value within
/// `MAX_VALUE_BYTES` of JSON text fits (jsonb of small numbers is up to about six times its
/// text); anything larger is refused before Rust allocates for it.
const MAX_JSONB_ARGUMENT_BYTES: usize = 8 * MAX_VALUE_BYTES;

/// A stored value passed as a jsonb argument: its size checked first, then read and validated.
pub fn bounded_value(value: &pgrx::AnyElement) -> Result<JsonB> {
    // SAFETY: the SQL signature makes this argument a jsonb varlena of the current call; its
    // size comes from the varlena header or TOAST pointer, without detoasting it.
    let stored = unsafe { pg_sys::toast_raw_datum_size(value.datum()) };
    if stored > MAX_JSONB_ARGUMENT_BYTES {
        return Err(BoundaryError::ValueTooLarge(format!(
            "value is {stored} bytes of jsonb; the limit is {MAX_VALUE_BYTES} bytes of JSON"
        )));
    }
    // SAFETY: as above; not NULL (the functions are STRICT).
    let json = unsafe { JsonB::from_polymorphic_datum(value.datum(), false, value.oid()) }
        .ok_or_else(|| BoundaryError::NullArgument("value must not be NULL".into()))?;
    validate_value(&json)?;
    Ok(json)
}

/// Memory and run-state names: 1..=200 bytes, no control characters, no `:` (the separator).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    validate_text(what, name, MAX_NAME_BYTES).map_err(BoundaryError::InvalidArgument)?;
    if name.contains(':') {
        return Err(BoundaryError::InvalidArgument(format!(
            "{what} {:?} contains ':', the key separator; use another character",
            truncate_for_message(name)
        )));
    }
    Ok(())
}

/// Values are JSON (PostgreSQL already refused anything else) of at most 1 MiB.
pub fn validate_value(value: &JsonB) -> Result<()> {
    let size = value.0.to_string().len();
    if size > MAX_VALUE_BYTES {
        return Err(BoundaryError::ValueTooLarge(format!(
            "value is {size} bytes of JSON; the limit is {MAX_VALUE_BYTES}"
        )));
    }
    Ok(())
}

/// The jsonb `value` of the row `sql` finds by its one text argument, through a kept plan
/// (lookups run on every agent step; the policies' accessors still run at execution). The stored
/// datum itself is returned, detoasted and copied out of SPI's memory: turning it into Rust
/// values and back would cost more than the lookup, and grow with the value.
pub(crate) fn lookup_value(sql: &'static str, argument: String) -> Result<Option<pgrx::AnyElement>> {
    Spi::connect(|client| {
        let rows = crate::pg::spi_plans::select(client, sql, &[argument.into()])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let Some(datum) = rows.first().get_datum_by_ordinal(1)? else { return Ok(None) };
        // SAFETY: a jsonb varlena of the row SPI just returned; detoasted (into a copy when it
        // was toasted or compressed), then copied into the memory context the function was
        // called in, which outlives SPI's. `from_polymorphic_datum` only wraps it.
        unsafe {
            let detoasted = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let copied = pg_sys::SPI_datumTransfer(pg_sys::Datum::from(detoasted), false, -1);
            Ok(pgrx::AnyElement::from_polymorphic_datum(copied, false, pg_sys::JSONBOID))
        }
    })
}

/// Runs an upsert that ends in `RETURNING expires_at`.
pub(crate) fn upsert_returning_expiry(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Result<TimestampWithTimeZone> {
    store_write(|| Spi::get_one_with_args::<TimestampWithTimeZone>(sql, args))?
        .ok_or_else(|| BoundaryError::Internal("the upsert returned no expiry".into()))
}
