//! What Citus, when it is installed in the database, says about a table. Its catalogs exist only
//! then, so every statement here runs behind [`installed`].

use crate::error::Result;
use pgrx::prelude::*;

/// Whether the `citus` extension is installed in the current database.
pub fn installed() -> bool {
    // SAFETY: a syscache lookup by name; missing_ok, so an absent extension is InvalidOid.
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid }
}

/// The distribution column of a Citus table (Citus refuses to change its default), if `oid`
/// is one and has one (reference tables do not).
pub fn distribution_column(oid: pg_sys::Oid) -> Result<Option<String>> {
    if !installed() {
        return Ok(None);
    }
    Ok(Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.column_to_column_name(logicalrelid, partkey) FROM pg_catalog.pg_dist_partition
          WHERE logicalrelid = $1 AND partkey IS NOT NULL",
        &[oid.into()],
    )
    .or_else(|e| match e {
        pgrx::spi::SpiError::InvalidPosition => Ok(None),
        e => Err(e),
    })?)
}

/// Whether this backend is Citus applying on a worker what a coordinator decided (shard DDL,
/// metadata sync, shard moves): Citus names those connections by these application_name
/// prefixes, and trusts them itself for its own internal functions.
pub fn applying_coordinator_ddl() -> bool {
    const CITUS_BACKENDS: [&[u8]; 2] = [b"citus_internal gpid=", b"citus_rebalancer gpid="];
    // SAFETY: application_name is this backend's setting, NULL or a NUL-terminated string.
    let name = unsafe {
        let raw = pg_sys::application_name;
        if raw.is_null() {
            return false;
        }
        std::ffi::CStr::from_ptr(raw).to_bytes()
    };
    CITUS_BACKENDS.iter().any(|prefix| name.starts_with(prefix)) && installed()
}

/// Whether `oid` is a shard of a Citus table (on a node that holds placements): it gets its
/// table's policies from Citus, not from auto-protection.
pub fn is_shard(oid: pg_sys::Oid) -> Result<bool> {
    if !installed() {
        return Ok(false);
    }
    Ok(Spi::get_one_with_args::<bool>("SELECT pg_catalog.relation_is_a_known_shard($1)", &[oid.into()])?
        .unwrap_or(false))
}

/// Runs `f` (protect()'s own DDL) with Citus' `enable_unsafe_triggers` on where Citus is
/// installed: Citus refuses triggers on distributed tables because a trigger on a shard runs on
/// a worker and may reach other tables; protect()'s two guards read only the row and the
/// boundary and can only refuse, which is as safe on a shard as on the table.
pub fn with_protection_triggers_allowed<T>(f: impl FnOnce() -> T) -> T {
    if !installed() {
        return f();
    }
    super::guc::with_nest_level(|| {
        super::guc::set(
            c"citus.enable_unsafe_triggers",
            c"on",
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
        f()
    })
}
