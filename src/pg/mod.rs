//! PostgreSQL plumbing, written once: plans kept per backend, the relcache invalidation
//! callback, shared memory for the preloaded library, setting changes from inside the
//! extension, catalog lookups, and what Citus says about a table. Nothing in here knows what a boundary is.

pub mod catalog;
pub mod citus;
pub mod flag;
pub mod guc;
pub mod invalidation;
pub mod shmem;
pub mod spi_plans;

/// Whether the current role (the one row level security checks: a SECURITY DEFINER function's
/// owner inside it) is exempt from row level security.
pub fn current_role_bypasses_rls() -> bool {
    // SAFETY: reads backend-local role state.
    bypasses_rls(unsafe { pgrx::pg_sys::GetUserId() })
}

/// A superuser or a BYPASSRLS role.
fn bypasses_rls(role: pgrx::pg_sys::Oid) -> bool {
    // SAFETY: role syscache lookups; no memory is handed out.
    unsafe { pgrx::pg_sys::superuser_arg(role) || pgrx::pg_sys::has_bypassrls_privilege(role) }
}

/// Whether the session's role (after SET ROLE; not the role a SECURITY DEFINER function or a
/// referential action switched to) is exempt from row level security: a superuser or a
/// BYPASSRLS role, whose maintenance the guards on protected and store tables let through.
pub fn session_role_bypasses_rls() -> bool {
    // SAFETY: reads backend-local role state.
    bypasses_rls(unsafe { pgrx::pg_sys::GetOuterUserId() })
}
