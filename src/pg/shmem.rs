//! Shared memory for a preloaded library, written once: one zeroed block requested at server
//! start, found again by name after every (re)initialisation of shared memory, with one LWLock
//! of its own. Without `shared_preload_libraries` there is none, and [`attached`] says so.

use pgrx::pg_sys;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const NAME: &CStr = c"agent_boundary";

static BLOCK: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LOCK: AtomicPtr<pg_sys::LWLock> = AtomicPtr::new(std::ptr::null_mut());
static SIZE: AtomicUsize = AtomicUsize::new(0);
static mut PREVIOUS_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREVIOUS_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Asks for `size` bytes when the library is being preloaded (call from `_PG_init`); returns
/// whether it was (otherwise nothing is reserved and [`attached`] stays None).
pub fn reserve(size: usize) -> bool {
    // SAFETY: _PG_init runs single-threaded in the postmaster while preloading; the hooks are
    // chained as PostgreSQL expects (previous one called first).
    unsafe {
        if !pg_sys::process_shared_preload_libraries_in_progress {
            return false;
        }
        SIZE.store(size, Ordering::Relaxed);
        PREVIOUS_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request);
        PREVIOUS_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup);
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn request() {
    // SAFETY: called by PostgreSQL once, in the postmaster, while shared memory is sized.
    unsafe {
        if let Some(previous) = PREVIOUS_REQUEST_HOOK {
            previous();
        }
        pg_sys::RequestAddinShmemSpace(SIZE.load(Ordering::Relaxed));
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn startup() {
    // SAFETY: called by PostgreSQL after shared memory is (re)created, in the postmaster;
    // ShmemInitStruct under AddinShmemInitLock, as the documentation prescribes.
    unsafe {
        if let Some(previous) = PREVIOUS_STARTUP_HOOK {
            previous();
        }
        let size = SIZE.load(Ordering::Relaxed);
        // AddinShmemInitLock is a macro in C: the main LWLock array's entry 21 (lwlocklist.h).
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let block = pg_sys::ShmemInitStruct(NAME.as_ptr(), size, &mut found).cast::<u8>();
        if !found {
            std::ptr::write_bytes(block, 0, size);
        }
        let lock = std::ptr::addr_of_mut!((*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock);
        pg_sys::LWLockRelease(init_lock);
        BLOCK.store(block, Ordering::Release);
        LOCK.store(lock, Ordering::Release);
    }
}

/// The block (zeroed at server start) and its size, when the library was preloaded.
pub fn attached() -> Option<(*mut u8, usize)> {
    let block = BLOCK.load(Ordering::Acquire);
    (!block.is_null()).then(|| (block, SIZE.load(Ordering::Relaxed)))
}

/// Runs `f` holding the block's lock (exclusively). `f` must not raise an ERROR: it only reads
/// and writes the block.
pub fn locked<T>(f: impl FnOnce(*mut u8) -> T) -> Option<T> {
    let (block, _) = attached()?;
    let lock = LOCK.load(Ordering::Acquire);
    // SAFETY: the lock was set up with the block; an ERROR while it is held would still release
    // it (LWLockReleaseAll at abort), but `f` raises none.
    unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
    let result = f(block);
    // SAFETY: releases the lock taken above.
    unsafe { pg_sys::LWLockRelease(lock) };
    Some(result)
}
