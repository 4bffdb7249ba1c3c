//! agent_boundary: tenant isolation for AI-agent backends, enforced inside PostgreSQL.
//!
//! This file only wires modules together; each capability lives in its own module with its SQL.

// Every #[pg_extern] returns Result<_, ErrorReport> so that pgrx raises the report's own
// SQLSTATE, DETAIL and HINT; the report is large, but it only travels on the error path.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

// pgrx 0.18's bare `version` key stores the version as the module's name, so both are spelled
// out: pg_get_loaded_modules() (PostgreSQL 18) then tells which build a backend has loaded.
pgrx::pg_module_magic!(name = c"agent_boundary", version = LIBRARY_VERSION);

const LIBRARY_VERSION: &std::ffi::CStr =
    match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("CARGO_PKG_VERSION has a NUL byte"),
    };

mod audit;
mod boundary;
mod error;
mod gucs;
mod pg;
mod policy;
mod scale_out;
mod stores;
mod tools;
mod vector;

#[cfg(any(test, feature = "pg_test"))]
mod test_support;

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    boundary::sealed_guc::init();
    gucs::init();
    boundary::verdicts::init();
    vector::init();
    policy::init();
    audit::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
