//! agent_boundary: tenant isolation for AI-agent backends, enforced inside PostgreSQL.
//!
//! This file only wires modules together; each capability lives in its own module with its SQL.

// Every #[pg_extern] returns Result<_, ErrorReport> so that pgrx raises the report's own
// SQLSTATE, DETAIL and HINT; the report is large, but it only travels on the error path.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

pgrx::pg_module_magic!(name, version);

mod audit;
mod boundary;
mod error;
mod gucs;
mod pg;
mod policy;
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
