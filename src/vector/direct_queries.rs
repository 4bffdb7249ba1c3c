//! A framework's own similarity search on a protected table (`ORDER BY embedding <=> $1 LIMIT k`,
//! never `vector_search`) must return min(k, visible) of the boundary's nearest rows. An
//! approximate index (HNSW, IVFFlat) ranks a beam of the whole table before row level security
//! filters it, so a small tenant gets fewer rows or none. So the planner is not offered those
//! indexes on protected tables: it ranks the boundary's rows exactly, through the tenant index
//! that row level security's predicate uses. `vector_search` plans its own approximate
//! statement with them (it counts first and falls back to exact ranking when short), and
//! `agent_boundary.approximate_direct_vector_queries = on` offers them to every query.
//!
//! The choice depends only on the table and the setting, never on the boundary, so a cached
//! plan is right for every tenant that reuses it.

use crate::gucs;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::Cell;
use std::ffi::CStr;

/// Index access methods that rank approximately (pgvector, pgvectorscale, VectorChord).
const APPROXIMATE_METHODS: [&str; 5] = ["hnsw", "ivfflat", "diskann", "vchordrq", "vchordg"];

thread_local! {
    /// Raised while vector_search plans its approximate statement.
    static RANKING_FOR_VECTOR_SEARCH: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (vector_search's approximate statement) with the approximate indexes on offer.
pub fn with_approximate_indexes<T>(f: impl FnOnce() -> T) -> T {
    crate::pg::flag::raised(&RANKING_FOR_VECTOR_SEARCH, f)
}

unsafe extern "C-unwind" {
    /// catalog/partition.h, not in pgrx's bindings: the partition's ancestors, nearest first.
    #[link_name = "get_partition_ancestors"]
    fn get_partition_ancestors_unguarded(relid: pg_sys::Oid) -> *mut pg_sys::List;
}

/// get_partition_ancestors behind pgrx's error trap, as pgrx's own bindings are.
unsafe fn get_partition_ancestors(relid: pg_sys::Oid) -> *mut pg_sys::List {
    // SAFETY: an error raised inside becomes a Rust panic here and an ERROR again at the
    // #[pg_guard] boundary above us.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| get_partition_ancestors_unguarded(relid)) }
}

static mut PREVIOUS_RELATION_INFO_HOOK: pg_sys::get_relation_info_hook_type = None;

pub fn init() {
    // SAFETY: _PG_init runs once per backend before any query is planned; the hook calls the
    // one it replaced.
    unsafe {
        PREVIOUS_RELATION_INFO_HOOK = pg_sys::get_relation_info_hook;
        pg_sys::get_relation_info_hook = Some(relation_info_hook);
    }
}

// Not #[pg_guard], as in policy/scope_columns.rs: an error from a previous hook passes through as
// raised; this frame holds nothing to drop; the Rust work is in the guarded function it calls.
unsafe extern "C-unwind" fn relation_info_hook(
    root: *mut pg_sys::PlannerInfo,
    relation: pg_sys::Oid,
    inhparent: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: PostgreSQL passes the relation being planned and its RelOptInfo.
    unsafe {
        if let Some(previous) = PREVIOUS_RELATION_INFO_HOOK {
            previous(root, relation, inhparent, rel);
        }
        withhold_approximate_indexes(relation, rel);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn withhold_approximate_indexes(
    relation: pg_sys::Oid,
    rel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: the planner holds a lock on `relation` and owns `rel`, whose index list it has just
    // built; the list is replaced by a copy without the withheld entries.
    unsafe {
        if (*rel).indexlist.is_null() {
            return;
        }
        let indexes = PgList::<pg_sys::IndexOptInfo>::from_pg((*rel).indexlist);
        // Cheap first look: only indexes that can order by an operator may be approximate.
        if !indexes.iter_ptr().any(|index| (*index).amcanorderbyop) {
            return;
        }
        if gucs::approximate_direct_vector_queries()
            || crate::pg::flag::is_raised(&RANKING_FOR_VECTOR_SEARCH)
            || !protected_or_partition_of_protected(relation)
        {
            return;
        }
        let mut kept = PgList::<pg_sys::IndexOptInfo>::new();
        let mut withheld = false;
        for index in indexes.iter_ptr() {
            if (*index).amcanorderbyop && is_approximate((*index).relam) {
                withheld = true;
            } else {
                kept.push(index);
            }
        }
        if withheld {
            (*rel).indexlist = kept.into_pg();
        }
    }
}

fn is_approximate(method: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup of an access method the planner just saw; null if gone.
    let name = unsafe { pg_sys::get_am_name(method) };
    if name.is_null() {
        return false;
    }
    // SAFETY: get_am_name returns a palloc'd NUL-terminated copy.
    let name = unsafe { CStr::from_ptr(name) };
    APPROXIMATE_METHODS.iter().any(|m| m.as_bytes() == name.to_bytes())
}

/// A protected table, or a partition of one (scanned through its parent, whose policies apply).
fn protected_or_partition_of_protected(relation: pg_sys::Oid) -> bool {
    // SAFETY: the planner holds a lock on `relation`; a partition queried directly has
    // unlocked ancestors, so they are locked as any reader would (kept to the transaction's end).
    unsafe {
        let open = |oid: pg_sys::Oid| {
            let lock = if oid == relation { pg_sys::NoLock } else { pg_sys::AccessShareLock };
            let rel = pg_sys::relation_open(oid, lock as _);
            let protected = crate::policy::has_boundary_policies(rel);
            let partition = (*(*rel).rd_rel).relispartition;
            pg_sys::relation_close(rel, pg_sys::NoLock as _);
            (protected, partition)
        };
        let (protected, partition) = open(relation);
        if protected || !partition {
            return protected;
        }
        PgList::<std::ffi::c_void>::from_pg(get_partition_ancestors(relation))
            .iter_oid()
            .any(|ancestor| open(ancestor).0)
    }
}
