//! The boundary on Citus workers.
//!
//! A worker backend running a distributed transaction's shard queries is another backend,
//! often on another machine: the coordinator's seal (a secret in the entering backend's memory)
//! does not verify there, and the only thing Citus carries to it from the transaction is a
//! `SET LOCAL`. So on a node (the coordinator, or a worker taking clients' queries) of a cluster
//! that shares a cluster seal key (`agent_boundary.cluster_seal_key_file`), every change of a
//! transaction's boundary also sets `agent_boundary.cluster_boundary` with `SET LOCAL`, which
//! Citus sends to every connection of the transaction to other nodes: the boundary sealed with
//! the cluster key, bound to the database and to the Citus global pid of the backend that
//! entered it.
//!
//! The check hook keeps anything else off it. It accepts a value only (1) while this module sets
//! it, or (2) on a connection Citus opened for the backend named in the seal
//! (`application_name` `citus_internal gpid=N` given at connection start), by `SET`, sealed
//! with this node's cluster key, for this database, before the boundary's expiry. A coordinator
//! session cannot set it, so it cannot make Citus carry a value it captured (from a worker's log
//! or `pg_stat_activity`); a worker takes it only from Citus' connections of the backend that
//! entered. What is left is a role that runs its own SQL on workers: over Citus' connections
//! (`master_run_on_worker` and the `run_command_on_*` functions built on it are executable by
//! PUBLIC unless revoked; the lint reports it) or by logging in to a worker directly (close it
//! in the workers' pg_hba.conf). That is a deployment rule PostgreSQL cannot enforce from here.

use super::claims::{Boundary, Scope};
use super::token;
use crate::error::{BoundaryError, Result};
use crate::gucs;
use pgrx::prelude::*;
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::rc::Rc;

pub const CLUSTER_BOUNDARY_NAME: &str = "agent_boundary.cluster_boundary";
const MIN_KEY_BYTES: usize = 32;
/// Larger key files are refused before reading (a key is tens of bytes).
const MAX_KEY_FILE_BYTES: u64 = 4096;

static CLUSTER_BOUNDARY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

thread_local! {
    /// The value [`propagate`] is setting right now: the one the check hook lets through
    /// without a Citus connection.
    static SETTING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// (key file path, key): read once per backend and path.
    static KEY: RefCell<Option<(String, Vec<u8>)>> = const { RefCell::new(None) };
    /// The parsed boundary and its store-write mark, keyed by the exact value the check hook
    /// accepted.
    static PARSED: RefCell<Option<(Vec<u8>, Carried)>> = const { RefCell::new(None) };
}

/// What a worker backend got from the backend that entered the boundary.
#[derive(Clone)]
struct Carried {
    boundary: Rc<Boundary>,
    store_write: bool,
}

/// What a cluster seal carries: the boundary, and what it is bound to.
#[derive(Serialize, Deserialize)]
struct ClusterClaims {
    boundary: Boundary,
    /// Citus global pid of the backend that entered the boundary.
    gpid: u64,
    /// The database it was entered in (oids differ between nodes; names do not).
    database: String,
    /// Set while a store function of that backend writes (memory_set, cache_put, ...): the
    /// stores' write guard on a shard admits the write (`stores::guard`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    store_write: bool,
}

pub fn init() {
    GucRegistry::define_string_guc(
        c"agent_boundary.cluster_seal_key_file",
        c"A file holding the key every node of a Citus cluster seals boundaries for the workers with.",
        c"The same file content (at least 32 random bytes, e.g. `openssl rand -base64 48`) on every \
          node, readable by the server only. Empty: boundaries do not reach Citus workers, where \
          every query on a protected table then fails.",
        &KEY_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: the check hook is a #[pg_guard] function that never unwinds into PostgreSQL.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"agent_boundary.cluster_boundary",
            c"The agent boundary of a distributed transaction, as Citus carries it to the workers.",
            c"Set by boundary.enter on the coordinator and accepted only on Citus' own connections.",
            &CLUSTER_BOUNDARY,
            GucContext::Userset,
            GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE,
            Some(check_cluster_value),
            None,
            None,
        );
    }
}

fn key_file() -> Option<String> {
    KEY_FILE.get().and_then(|path| path.into_string().ok()).filter(|path| !path.is_empty())
}

/// The cluster seal key, or why there is none usable.
fn key(path: &str) -> std::result::Result<Vec<u8>, String> {
    if let Some(key) =
        KEY.with(|cell| cell.borrow().as_ref().filter(|(p, _)| p == path).map(|(_, k)| k.clone()))
    {
        return Ok(key);
    }
    let unreadable =
        |e: std::io::Error| format!("cannot read agent_boundary.cluster_seal_key_file \"{path}\": {e}");
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > MAX_KEY_FILE_BYTES {
        return Err(format!("agent_boundary.cluster_seal_key_file \"{path}\" is {size} bytes; a key is at most {MAX_KEY_FILE_BYTES}"));
    }
    let key = std::fs::read(path).map_err(unreadable)?.trim_ascii().to_vec();
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "agent_boundary.cluster_seal_key_file \"{path}\" holds {} bytes; the key must be at least {MIN_KEY_BYTES}",
            key.len()
        ));
    }
    KEY.with(|cell| *cell.borrow_mut() = Some((path.to_string(), key.clone())));
    Ok(key)
}

/// Carries the transaction's boundary (or its absence) to every Citus worker connection of the
/// transaction, when Citus is installed here and the cluster has a seal key. Without a key the
/// workers get no boundary and fail closed. Session-scoped boundaries are not carried: Citus
/// propagates only `SET LOCAL`.
pub fn propagate(boundary: Option<&Boundary>) -> Result<()> {
    propagate_marked(boundary, false)
}

/// Runs `write` (a store function's own SQL) with the transaction's boundary carried to the
/// workers marked as a store write, so the stores' write guard on their shards admits it; the
/// mark is taken off again before anything else runs, also when `write` fails (an error aborts
/// the (sub)transaction, which undoes the mark on every node).
pub fn while_writing_stores<T>(boundary: &Boundary, write: impl FnOnce() -> T) -> Result<T> {
    if key_file().is_none() || !crate::pg::citus::installed() || boundary.scope != Scope::Transaction {
        return Ok(write());
    }
    propagate_marked(Some(boundary), true)?;
    let written = write();
    propagate_marked(Some(boundary), false)?;
    Ok(written)
}

fn propagate_marked(boundary: Option<&Boundary>, store_write: bool) -> Result<()> {
    let Some(path) = key_file() else { return Ok(()) };
    if !crate::pg::citus::installed() {
        return Ok(());
    }
    let value = match boundary {
        Some(boundary) if boundary.scope == Scope::Transaction => {
            let key = key(&path).map_err(|what| BoundaryError::NotPreparedWithHint {
                what,
                hint:
                    "Put the same key (at least 32 random bytes) in that file on every node of the cluster, \
                       readable by the server only."
                        .into(),
            })?;
            let claims = ClusterClaims {
                boundary: boundary.clone(),
                gpid: crate::pg::citus::backend_gpid()?,
                database: current_database()?,
                store_write,
            };
            token::seal_as(token::CLUSTER_SEAL_KID, &claims, &key).map_err(BoundaryError::Internal)?
        }
        _ => String::new(),
    };
    SETTING.with(|cell| *cell.borrow_mut() = Some(value.clone().into_bytes()));
    let set = crate::pg::citus::set_local_on_every_node(CLUSTER_BOUNDARY_NAME, &value);
    SETTING.with(|cell| *cell.borrow_mut() = None);
    set
}

fn current_database() -> Result<String> {
    // SAFETY: syscache lookup of this backend's database, inside a transaction.
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    if name.is_null() {
        return Err(BoundaryError::Internal("this backend's database has no name".into()));
    }
    // SAFETY: a palloc'd NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned())
}

/// The boundary Citus carried to this worker backend, if any (the check hook accepted it).
pub fn carried() -> Result<Option<Rc<Boundary>>> {
    Ok(carried_value()?.map(|carried| carried.boundary))
}

/// Whether the backend that entered the carried boundary is writing through a store function
/// right now ([`while_writing_stores`]).
pub fn carried_store_write() -> bool {
    matches!(carried_value(), Ok(Some(Carried { store_write: true, .. })))
}

fn carried_value() -> Result<Option<Carried>> {
    // SAFETY: PostgreSQL owns the string and only replaces it between statements of this backend.
    let raw = unsafe { *CLUSTER_BOUNDARY.as_ptr() };
    if raw.is_null() {
        return Ok(None);
    }
    // SAFETY: a non-NULL value is a NUL-terminated string PostgreSQL keeps alive meanwhile.
    let value = unsafe { CStr::from_ptr(raw) }.to_bytes();
    if value.is_empty() {
        return Ok(None);
    }
    if let Some(known) = PARSED.with(|cell| {
        cell.borrow().as_ref().filter(|(raw, _)| raw.as_slice() == value).map(|(_, parsed)| parsed.clone())
    }) {
        return Ok(Some(known));
    }
    let claims: ClusterClaims = token::unseal_trusted(value).map_err(BoundaryError::Internal)?;
    let parsed = Carried { boundary: Rc::new(claims.boundary), store_write: claims.store_write };
    PARSED.with(|cell| *cell.borrow_mut() = Some((value.to_vec(), parsed.clone())));
    Ok(Some(parsed))
}

/// Why a carried value is refused here, or `None` when it is accepted (see the module comment).
fn refusal(value: &[u8], source: pg_sys::GucSource::Type) -> Option<String> {
    if source != pg_sys::GucSource::PGC_S_SESSION {
        return Some("only boundary.enter sets it, with SET LOCAL".into());
    }
    let Some(gpid) = crate::pg::citus::connection_gpid() else {
        return Some(
            "only boundary.enter sets it; a worker accepts it only on Citus' own connections".into(),
        );
    };
    let Some(path) = key_file() else {
        return Some("this node has no agent_boundary.cluster_seal_key_file".into());
    };
    // SAFETY: reads backend-local transaction state.
    if !unsafe { pg_sys::IsTransactionState() } {
        return Some("it is set only inside a transaction".into());
    }
    let claims: ClusterClaims = match key(&path).and_then(|key| {
        token::unseal_as(
            token::CLUSTER_SEAL_KID,
            value,
            &key,
            "the seal does not verify with this node's cluster seal key",
        )
    }) {
        Ok(claims) => claims,
        Err(why) => return Some(why),
    };
    if claims.gpid != gpid {
        return Some(format!(
            "it was entered by Citus global pid {}, and this connection serves {gpid}",
            claims.gpid
        ));
    }
    match current_database() {
        Ok(database) if database == claims.database => {}
        Ok(_) => return Some("it was entered in another database".into()),
        Err(e) => return Some(e.to_string()),
    }
    if token::expired(claims.boundary.exp, gucs::clock_skew_secs(), super::sealed_guc::now_unix()) {
        return Some("the sealed boundary has expired".into());
    }
    None
}

/// GUC check hook for `agent_boundary.cluster_boundary`: the empty value, the value
/// [`propagate`] is setting, a parallel worker restoring its leader's, or one [`refusal`] finds
/// nothing against. Refusals are SQLSTATE 42501 and never echo the value.
///
/// # Safety
/// Called by guc.c only, with `newval` pointing at the proposed value (or NULL).
#[pg_guard]
unsafe extern "C-unwind" fn check_cluster_value(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    let value =
        if newval.is_null() || (*newval).is_null() { &[][..] } else { CStr::from_ptr(*newval).to_bytes() };
    if value.is_empty() || pg_sys::InitializingParallelWorker {
        return true;
    }
    if SETTING.with(|cell| cell.borrow().as_deref() == Some(value)) {
        return true;
    }
    match refusal(value, source) {
        None => true,
        Some(why) => {
            super::sealed_guc::refuse_in_check_hook(
                "agent_boundary.cluster_boundary can only be set by boundary.enter()",
                &why,
                "Call boundary.enter(token) on the coordinator; Citus carries the boundary to the workers.",
            );
            false
        }
    }
}
