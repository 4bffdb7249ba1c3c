//! The stores' write guard: every rule of the stores (who wrote a memory, which run it came
//! from, TTL limits, value sizes, keys) is kept by their functions, so the functions are the
//! only way to change them. On a Citus worker, a shard's guard admits what a store function of
//! the backend that entered the carried boundary writes (`cluster_seal::while_writing_stores`).

use crate::error::BoundaryError;
use pgrx::prelude::*;

thread_local! {
    /// Raised while a store function runs its own SQL: the only writes the stores' guard admits.
    static STORE_FUNCTION_WRITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a store function's write; `guard_store_write` refuses any other INSERT, UPDATE or DELETE.
/// On Citus the write is marked on the boundary carried to the workers, whose shards' guards
/// cannot see this backend's flag.
pub fn store_write<T, E>(write: impl FnOnce() -> std::result::Result<T, E>) -> crate::error::Result<T>
where
    BoundaryError: From<E>,
{
    let guarded = || crate::pg::flag::raised(&STORE_FUNCTION_WRITING, write).map_err(BoundaryError::from);
    match crate::boundary::sealed_guc::current_if_any()? {
        Some(boundary) => crate::boundary::cluster_seal::while_writing_stores(&boundary, guarded)?,
        None => guarded(),
    }
}

/// Row trigger `store_functions_only` on memories, run state and the cache: plain SQL may read
/// them (row level security decides what) but not change them; a superuser's or BYPASSRLS
/// role's maintenance may.
#[pg_trigger]
fn guard_store_write<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    if crate::pg::flag::is_raised(&STORE_FUNCTION_WRITING)
        || crate::pg::session_role_bypasses_rls()
        || crate::boundary::cluster_seal::carried_store_write()
    {
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
