//! One relcache invalidation callback per backend, fanned out to every module that keeps
//! catalog-derived state per backend (remembered verdicts, vector search targets).
//!
//! PostgreSQL offers each process a handful of callback slots; taking one for the whole
//! extension leaves the rest to others and gives every cache the same delivery rules.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;

/// Called with the invalidated relation's oid, or `InvalidOid` for every relation. It runs
/// inside PostgreSQL's invalidation processing, possibly while a plan executes, so it must only
/// note what changed and leave the work to the cache's next use.
pub type Subscriber = fn(pg_sys::Oid);

thread_local! {
    static SUBSCRIBERS: RefCell<Vec<Subscriber>> = const { RefCell::new(Vec::new()) };
}

/// Calls `subscriber` on every relcache invalidation this process takes. Called from `_PG_init`
/// (in the postmaster when the library is preloaded; forked backends inherit the registration).
pub fn subscribe(subscriber: Subscriber) {
    SUBSCRIBERS.with(|subscribers| {
        let mut subscribers = subscribers.borrow_mut();
        if subscribers.is_empty() {
            // SAFETY: registered once per process; the callback only reads SUBSCRIBERS.
            unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(fan_out), pg_sys::Datum::from(0)) };
        }
        subscribers.push(subscriber);
    });
}

/// # Safety
/// Called by PostgreSQL's invalidation processing only, as a relcache callback.
#[pg_guard]
unsafe extern "C-unwind" fn fan_out(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    SUBSCRIBERS.with(|subscribers| {
        if let Ok(subscribers) = subscribers.try_borrow() {
            for subscriber in subscribers.iter() {
                subscriber(relid);
            }
        }
    });
}

/// Takes the invalidation messages that other backends' commits have queued for this one
/// (cheap when there are none), so every subscriber has seen them before the caller looks.
pub fn take_pending() {
    // SAFETY: processes this backend's shared invalidation queue; callable in any transaction.
    unsafe { pg_sys::AcceptInvalidationMessages() };
}

/// Queues a relcache invalidation of `relid`: delivered to every backend when the current
/// transaction commits, and replayed in this one at its next command or on rollback.
pub fn invalidate(relid: pg_sys::Oid) {
    // SAFETY: queues a message for an existing relation; PostgreSQL owns delivery.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
}
