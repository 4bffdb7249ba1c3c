//! What Citus, when it is installed in the database, says about a table. Its catalogs exist only
//! then, so every statement here runs behind [`installed`].

use crate::error::Result;
use pgrx::prelude::*;

/// Whether Citus' library is loaded in this process (it must be preloaded): a settings lookup,
/// cheaper than [`installed`], which it must precede where it runs per statement.
pub fn loaded() -> bool {
    super::guc::exists(c"citus.propagate_set_commands")
}

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
          WHERE logicalrelid OPERATOR(pg_catalog.=) $1 AND partkey IS NOT NULL",
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
    let name = application_name();
    CITUS_BACKENDS.iter().any(|prefix| name.starts_with(prefix)) && installed()
}

/// This backend's `application_name` (empty when unset).
fn application_name() -> &'static [u8] {
    // SAFETY: application_name is this backend's setting, NULL or a NUL-terminated string that
    // guc.c replaces only between statements; callers use it before their statement ends.
    unsafe {
        let raw = pg_sys::application_name;
        if raw.is_null() {
            return b"";
        }
        std::ffi::CStr::from_ptr(raw).to_bytes()
    }
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

/// The Citus global pid this backend serves, when it is a connection Citus opened for another
/// backend's distributed transaction: `application_name` `citus_internal gpid=N` given when
/// the connection started (source `client`). A session that SETs that name later, or gets it
/// from `ALTER ROLE ... SET`, is not one.
pub fn connection_gpid() -> Option<u64> {
    if super::guc::source(c"application_name") != Some(pg_sys::GucSource::PGC_S_CLIENT) {
        return None;
    }
    std::str::from_utf8(application_name().strip_prefix(b"citus_internal gpid=")?).ok()?.parse().ok()
}

thread_local! {
    /// This backend's global pid, and the application_name it was read under (Citus assigns a
    /// backend's global pid again only when its application_name changes).
    static GPID: std::cell::RefCell<Option<(Vec<u8>, u64)>> = const { std::cell::RefCell::new(None) };
}

/// This backend's Citus global pid (what its connections to other nodes carry).
pub fn backend_gpid() -> Result<u64> {
    let name = application_name();
    if let Some(gpid) = GPID.with(|cell| cell.borrow().as_ref().filter(|(n, _)| n == name).map(|(_, g)| *g)) {
        return Ok(gpid);
    }
    let gpid = Spi::get_one::<i64>("SELECT pg_catalog.citus_backend_gpid()")?.unwrap_or(0) as u64;
    GPID.with(|cell| *cell.borrow_mut() = Some((name.to_vec(), gpid)));
    Ok(gpid)
}

/// `SET LOCAL name = 'value'` here and, through Citus, on every worker connection of this
/// transaction, those open now and those it opens later (Citus propagates `SET LOCAL` while
/// `citus.propagate_set_commands` is `local`, which holds only for this statement).
/// `name` is a constant setting name, not a caller's text.
pub fn set_local_on_every_node(name: &str, value: &str) -> Result<()> {
    let value = super::catalog::quote_literal(value);
    super::guc::with_nest_level(|| {
        super::guc::set(
            c"citus.propagate_set_commands",
            c"local",
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
        Spi::run(&format!("SET LOCAL {name} = {value}"))
    })?;
    Ok(())
}
