//! The stores' write guard: every rule of the stores (who wrote a memory, which run it came
//! from, TTL limits, value sizes, keys) is kept by their functions, so the functions are the
//! only way to change them.

use crate::error::BoundaryError;
use pgrx::prelude::*;

thread_local! {
    /// Raised while a store function runs its own SQL: the only writes the stores' guard admits.
    static STORE_FUNCTION_WRITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a store function's write; `guard_store_write` refuses any other INSERT, UPDATE or DELETE.
pub fn store_write<T>(f: impl FnOnce() -> T) -> T {
    crate::pg::flag::raised(&STORE_FUNCTION_WRITING, f)
}

/// Row trigger `store_functions_only` on memories, run state and the cache: plain SQL may read
/// them (row level security decides what) but not change them; a superuser's or BYPASSRLS
/// role's maintenance may.
#[pg_trigger]
fn guard_store_write<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    if crate::pg::flag::is_raised(&STORE_FUNCTION_WRITING) || crate::pg::session_role_bypasses_rls() {
        return Ok(trigger.new().or_else(|| trigger.old()));
    }
    let command = match trigger.op()? {
        pgrx::PgTriggerOperation::Insert => "INSERT",
        pgrx::PgTriggerOperation::Update => "UPDATE",
        pgrx::PgTriggerOperation::Delete => "DELETE",
        pgrx::PgTriggerOperation::Truncate => "TRUNCATE",
    };
    BoundaryError::NotAllowed {
        what: format!(
            "{command} on boundary.{} is refused: the agent_boundary functions are the only way to change it",
            trigger.table_name()?
        ),
        hint: "Use boundary.memory_set(), memory_delete(), run_state_set(), promote() and cache_put(); \
               boundary.purge_expired() removes what has expired."
            .into(),
    }
    .raise()
}
