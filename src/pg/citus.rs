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
