//! The background audit writer, when the library is preloaded: `enter` and `exit` put their row
//! into a queue in shared memory (one per database) and return; a background worker per database
//! writes the queue in one transaction every `agent_boundary.audit_flush_interval`. A read-only
//! request then stays read-only (no transaction id, no WAL, no commit record), and a thousand
//! rows cost one commit instead of a thousand.
//!
//! What can be lost, and when: rows still queued when the server crashes (or is stopped in
//! `immediate` mode), at most one flush interval's worth. A clean shutdown writes the queue
//! first. A row the queue cannot take (full, more databases than slots, no worker can start) is
//! written inline by the entering transaction instead, as without preloading. A batch the
//! worker cannot write (the table is gone, an ERROR) goes to the server log, a JSON line per row.

use super::queue::{RingState, Row};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Databases that can have a queue at once; rows of any other are written inline.
const DATABASES: usize = 8;
/// A worker that has had nothing to write for this long exits, so it does not hold its database
/// (DROP DATABASE, CREATE DATABASE ... TEMPLATE) longer than needed.
const IDLE_EXIT_MS: i64 = 10_000;
/// A worker asked for but not attached after this long is asked for again.
const START_TIMEOUT_MS: i64 = 10_000;
/// How long `flush_audit_log` waits for the worker.
const FLUSH_TIMEOUT_MS: i64 = 30_000;
const WORKER_FUNCTION: &CStr = c"agent_boundary_audit_writer";

#[repr(C)]
struct Slot {
    /// The database whose rows this slot queues; InvalidOid when free.
    database: pg_sys::Oid,
    /// The attached worker (0: none); only an attached worker's slot takes rows.
    worker_pid: i32,
    worker_latch: *mut pg_sys::Latch,
    /// When a backend last asked the postmaster for a worker (0: not asked).
    requested_at: pg_sys::TimestampTz,
    ring: RingState,
    /// Rows ever queued, and ever written (or logged when they could not be).
    queued: u64,
    written: u64,
    /// The end of the batch a worker is writing (0: none): a worker that finds one set took
    /// over from a worker that died writing it, and logs it instead of trying it again.
    in_flight_end: u64,
}

#[repr(C)]
struct Header {
    slots: [Slot; DATABASES],
}

/// Bytes of shared memory to reserve for `ring_bytes` per database.
fn block_size(ring_bytes: usize) -> usize {
    std::mem::size_of::<Header>() + DATABASES * ring_bytes
}

fn ring_bytes() -> usize {
    crate::gucs::audit_queue_bytes()
}

/// Reserves the queue (call from `_PG_init`): only while the library is preloaded.
pub fn init() {
    crate::pg::shmem::reserve(block_size(ring_bytes()));
}

/// Runs `f` on the slot of `database` (claiming a free one when `claim`) and its ring, under
/// the queue's lock. None without a queue or a slot.
fn with_slot<T>(database: pg_sys::Oid, claim: bool, f: impl FnOnce(&mut Slot, &mut [u8]) -> T) -> Option<T> {
    let (_, size) = crate::pg::shmem::attached()?;
    let ring = ring_bytes();
    if size != block_size(ring) {
        return None;
    }
    crate::pg::shmem::locked(|block| {
        // SAFETY: the block is `block_size(ring)` bytes, zeroed at server start (a valid Header:
        // every slot free) and only touched under this lock; rings follow the header.
        let header = unsafe { &mut *block.cast::<Header>() };
        let index = header.slots.iter().position(|s| s.database == database).or_else(|| {
            claim.then(|| header.slots.iter().position(|s| s.database == pg_sys::InvalidOid)).flatten()
        })?;
        let slot = &mut header.slots[index];
        slot.database = database;
        // SAFETY: ring `index` lies inside the block, after the header.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(block.add(std::mem::size_of::<Header>() + index * ring), ring)
        };
        Some(f(slot, buf))
    })
    .flatten()
}

fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Whether rows go to the queue: preloaded, chosen, and not on a standby (nothing writes there).
pub fn queueing() -> bool {
    // SAFETY: reads backend-local recovery state.
    crate::pg::shmem::attached().is_some()
        && crate::gucs::audit_writer_background()
        && !unsafe { pg_sys::RecoveryInProgress() }
}

enum Queued {
    Yes,
    /// No worker is attached (one is asked for when nobody asked lately).
    NoWorker,
    Full,
}

/// Queues `row` for this database's writer; false when it must be written inline.
pub fn queue(row: &Row) -> bool {
    // SAFETY: MyDatabaseId is set for the life of a backend connected to a database.
    let database = unsafe { pg_sys::MyDatabaseId };
    let record = row.encode();
    let outcome = with_slot(database, true, |slot, buf| {
        if slot.worker_pid == 0 {
            return (Queued::NoWorker, std::ptr::null_mut());
        }
        if !slot.ring.push(buf, &record) {
            return (Queued::Full, slot.worker_latch);
        }
        slot.queued += 1;
        let half_full = slot.ring.used() > buf.len() / 2;
        (Queued::Yes, if half_full { slot.worker_latch } else { std::ptr::null_mut() })
    });
    let Some((outcome, wake)) = outcome else { return false };
    if !wake.is_null() {
        // SAFETY: the latch of a live process (its own PGPROC's, in shared memory).
        unsafe { pg_sys::SetLatch(wake) };
    }
    match outcome {
        Queued::Yes => true,
        Queued::Full => false,
        Queued::NoWorker => {
            ask_for_worker(database);
            false
        }
    }
}

/// Asks the postmaster for this database's writer unless one is attached or was asked for
/// lately; gives the slot back when that fails and nothing is queued in it.
fn ask_for_worker(database: pg_sys::Oid) {
    let ask = with_slot(database, false, |slot, _| {
        let ask = slot.worker_pid == 0
            && (slot.requested_at == 0 || now() - slot.requested_at > START_TIMEOUT_MS * 1000);
        if ask {
            slot.requested_at = now();
        }
        ask
    });
    if ask == Some(true) && !start_worker(database) {
        with_slot(database, false, |slot, _| {
            slot.requested_at = 0;
            free_if_unused(slot);
        });
    }
}

/// Frees a slot no worker serves and nothing is queued in.
fn free_if_unused(slot: &mut Slot) {
    if slot.worker_pid == 0 && slot.ring.used() == 0 && slot.requested_at == 0 {
        slot.database = pg_sys::InvalidOid;
    }
}

/// Asks the postmaster for this database's writer.
fn start_worker(database: pg_sys::Oid) -> bool {
    // SAFETY: a zeroed BackgroundWorker is valid; every field the postmaster reads is set.
    unsafe {
        let mut worker: pg_sys::BackgroundWorker = std::mem::zeroed();
        copy_name(&mut worker.bgw_name, "agent_boundary audit writer");
        copy_name(&mut worker.bgw_type, "agent_boundary audit writer");
        copy_name(&mut worker.bgw_library_name, "agent_boundary");
        copy_name(&mut worker.bgw_function_name, WORKER_FUNCTION.to_str().unwrap_or_default());
        worker.bgw_flags =
            (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION) as i32;
        worker.bgw_start_time = pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished;
        worker.bgw_restart_time = pg_sys::BGW_NEVER_RESTART;
        worker.bgw_main_arg = pg_sys::Datum::from(database.to_u32());
        pg_sys::RegisterDynamicBackgroundWorker(&mut worker, std::ptr::null_mut())
    }
}

fn copy_name<const N: usize>(field: &mut [std::ffi::c_char; N], name: &str) {
    for (to, from) in field.iter_mut().zip(name.bytes().take(N - 1)) {
        *to = from as std::ffi::c_char;
    }
}

/// Waits until every row this database queued before the call is written (or logged).
pub fn flush() -> crate::error::Result<()> {
    // SAFETY: as in `queue`.
    let database = unsafe { pg_sys::MyDatabaseId };
    let Some((target, _)) = with_slot(database, false, |slot, _| (slot.queued, ())) else {
        return Ok(());
    };
    let deadline = now() + FLUSH_TIMEOUT_MS * 1000;
    loop {
        let state = with_slot(database, false, |slot, _| {
            (slot.written >= target || slot.queued < target, slot.worker_latch, slot.ring.used())
        });
        let Some((done, latch, pending)) = state else { return Ok(()) };
        if done {
            return Ok(());
        }
        if latch.is_null() {
            ask_for_worker(database);
        }
        if now() > deadline {
            return Err(crate::error::BoundaryError::NotPrepared(format!(
                "the audit writer has not written {pending} queued bytes in {}s",
                FLUSH_TIMEOUT_MS / 1000
            )));
        }
        // SAFETY: wakes the worker (a live process's latch, or none), then sleeps on this
        // backend's own latch for 10 ms; interrupts (cancel, terminate) are served.
        unsafe {
            if !latch.is_null() {
                pg_sys::SetLatch(latch);
            }
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                10,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}

/// The writer's main function (a dynamic background worker, one per database with a queue).
///
/// # Safety
/// Called by the postmaster's background worker machinery only.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn agent_boundary_audit_writer(arg: pg_sys::Datum) {
    let database = pg_sys::Oid::from(arg.value() as u32);
    // SAFETY: the handlers set a flag and the latch; the worker acts on them in its loop.
    unsafe {
        // The backend's signal installer: pqsignal before PostgreSQL 17, pqsignal_be since.
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        use pg_sys::pqsignal as install_handler;
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        use pg_sys::pqsignal_be as install_handler;
        install_handler(pg_sys::SIGHUP as i32, Some(on_sighup));
        install_handler(pg_sys::SIGTERM as i32, Some(on_sigterm));
        pg_sys::BackgroundWorkerUnblockSignals();
        pg_sys::BackgroundWorkerInitializeConnectionByOid(database, pg_sys::InvalidOid, 0);
    }
    // SAFETY: this process's own pid and latch.
    let (pid, latch) = unsafe { (pg_sys::MyProcPid, pg_sys::MyLatch) };
    let took_over = with_slot(database, false, |slot, _| {
        if slot.worker_pid != 0 {
            return None;
        }
        slot.worker_pid = pid;
        slot.worker_latch = latch;
        slot.requested_at = 0;
        Some(std::mem::take(&mut slot.in_flight_end))
    })
    .flatten();
    let Some(abandoned) = took_over else { return }; // another writer is attached, or no slot
                                                     // SAFETY: registered once; runs at exit (also after an ERROR made this worker exit).
    unsafe { pg_sys::before_shmem_exit(Some(detach), pg_sys::Datum::from(database.to_u32())) };
    if abandoned != 0 {
        log_batch(database, abandoned, "the previous audit writer exited while writing it");
    }
    let mut idle_since = now();
    loop {
        if SHUTDOWN_REQUESTED.load(Ordering::Relaxed) {
            // New rows go inline from here on; then the last batch.
            with_slot(database, false, |slot, _| {
                slot.worker_pid = 0;
                slot.worker_latch = std::ptr::null_mut();
            });
            write_batch(database);
            return;
        }
        if RELOAD_REQUESTED.swap(false, Ordering::Relaxed) {
            // SAFETY: rereads the configuration files, as the reload asked.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if write_batch(database) > 0 {
            idle_since = now();
        } else if now() - idle_since > IDLE_EXIT_MS * 1000 && detach_if_idle(database) {
            return;
        }
        // SAFETY: sleeps on this process's latch; exits if the postmaster dies.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                i64::from(crate::gucs::audit_flush_interval_ms()),
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}

static RELOAD_REQUESTED: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);

unsafe extern "C-unwind" fn on_sighup(_signal: std::ffi::c_int) {
    RELOAD_REQUESTED.store(true, Ordering::Relaxed);
    // SAFETY: SetLatch is async-signal-safe; MyLatch is this process's latch.
    unsafe { pg_sys::SetLatch(pg_sys::MyLatch) };
}

unsafe extern "C-unwind" fn on_sigterm(_signal: std::ffi::c_int) {
    SHUTDOWN_REQUESTED.store(true, Ordering::Relaxed);
    // SAFETY: as in on_sighup.
    unsafe { pg_sys::SetLatch(pg_sys::MyLatch) };
}

/// Leaves the slot, freeing it when nothing is queued (a backend queuing at the same moment
/// either got in before, and the worker stays, or sees no worker and writes inline).
fn detach_if_idle(database: pg_sys::Oid) -> bool {
    with_slot(database, false, |slot, _| {
        if slot.ring.used() > 0 {
            return false;
        }
        slot.worker_pid = 0;
        slot.worker_latch = std::ptr::null_mut();
        free_if_unused(slot);
        true
    })
    .unwrap_or(true)
}

/// # Safety
/// A `before_shmem_exit` callback of the writer.
#[pg_guard]
unsafe extern "C-unwind" fn detach(_code: i32, arg: pg_sys::Datum) {
    // SAFETY: this process's own pid.
    let pid = unsafe { pg_sys::MyProcPid };
    with_slot(pg_sys::Oid::from(arg.value() as u32), false, |slot, _| {
        // 0: this worker let go itself on its way out (shutdown).
        if slot.worker_pid == pid || slot.worker_pid == 0 {
            slot.worker_pid = 0;
            slot.worker_latch = std::ptr::null_mut();
            free_if_unused(slot);
        }
    });
}

/// Writes everything queued in one transaction; returns how many rows.
fn write_batch(database: pg_sys::Oid) -> usize {
    let taken = with_slot(database, false, |slot, buf| {
        let (records, end) = slot.ring.peek(buf);
        if !records.is_empty() {
            slot.in_flight_end = end;
        }
        (records, end)
    });
    let Some((records, end)) = taken.filter(|(records, _)| !records.is_empty()) else { return 0 };
    let rows: Vec<Row> = records.iter().filter_map(|r| Row::decode(r)).collect();
    // An ERROR in here ends this worker (it has no handler to return to); the next one logs
    // the batch (in_flight_end) instead of trying it again.
    // SAFETY: a transaction of the worker's own, with a snapshot, as a backend would run it.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = if audit_log_exists() { super::insert(&rows) } else { Err(missing_table()) };
    // SAFETY: ends the transaction started above.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    if let Err(e) = outcome {
        for row in &rows {
            super::log_unwritten(row, &e.to_string());
        }
    }
    with_slot(database, false, |slot, _| {
        slot.ring.consume(end);
        slot.written += records.len() as u64;
        slot.in_flight_end = 0;
    });
    records.len()
}

fn missing_table() -> crate::error::BoundaryError {
    crate::error::BoundaryError::Internal("boundary.audit_log does not exist in this database".into())
}

fn audit_log_exists() -> bool {
    crate::pg::catalog::relation_owner(c"boundary", c"audit_log").is_some()
}

/// Logs (and drops) the batch a previous writer died writing.
fn log_batch(database: pg_sys::Oid, end: u64, why: &str) {
    let records = with_slot(database, false, |slot, buf| {
        let (records, _) = RingState { head: end.min(slot.ring.head), tail: slot.ring.tail }.peek(buf);
        slot.ring.consume(end);
        slot.written += records.len() as u64;
        records
    })
    .unwrap_or_default();
    for row in records.iter().filter_map(|r| Row::decode(r)) {
        super::log_unwritten(&row, why);
    }
}
