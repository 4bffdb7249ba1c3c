//! PostgreSQL plumbing, written once: plans kept per backend, the relcache invalidation
//! callback, setting changes from inside the extension, and catalog lookups. Nothing in here
//! knows what a boundary is.

pub mod catalog;
pub mod guc;
pub mod invalidation;
pub mod spi_plans;
