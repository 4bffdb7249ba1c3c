//! agent_boundary: tenant isolation for AI-agent backends, enforced inside PostgreSQL.
//!
//! This file only wires modules together; each capability lives in its own module with its SQL.

use pgrx::prelude::*;

pgrx::pg_module_magic!(name, version);

pub mod audit;
pub mod boundary;
pub mod cache;
pub mod error;
pub mod gucs;
pub mod jobs;
pub mod kept;
pub mod keyspace;
pub mod memory;
pub mod policy;
pub mod registry;
pub mod tools;
pub mod vector;

#[cfg(any(test, feature = "pg_test"))]
mod test_support;

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
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
