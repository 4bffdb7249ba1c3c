//! The boundary on the transaction: putting it on the GUC, guarding the GUC, reading it back.
//!
//! PostgreSQL's GUC machinery gives us transaction scope (SET LOCAL), savepoint rollback,
//! RESET/DISCARD ALL and propagation to parallel workers. What it does not give is
//! unforgeability, so the value is sealed (HS256) with a secret that exists only in this
//! backend's memory, and a check hook refuses any value whose seal does not verify. Restores at
//! COMMIT/ROLLBACK/ROLLBACK TO do not call the check hook; they only bring back values that
//! passed it.

use super::claims::{Boundary, Scope};
use super::token;
use crate::error::{BoundaryError, Result};
use crate::gucs;
use pgrx::prelude::*;
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::rc::Rc;

pub const BOUNDARY_NAME: &CStr = c"agent_boundary.boundary";

/// The current boundary, as a value sealed by this backend (see [`seal`]). Empty = none.
static BOUNDARY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

const SEAL_SECRET_BYTES: usize = 32;
/// Seconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_UNIX: i64 = 946_684_800;

thread_local! {
    /// (pid, secret): backends fork from the postmaster, so a secret made before a fork (when
    /// the library is preloaded) must not be shared; the pid check makes each process its own.
    static SEAL_SECRET: RefCell<Option<(u32, [u8; SEAL_SECRET_BYTES])>> = const { RefCell::new(None) };
    /// The parsed boundary, keyed by the exact GUC value it was parsed from.
    static PARSED: RefCell<Option<(Vec<u8>, Rc<Boundary>)>> = const { RefCell::new(None) };
}

fn seal_secret() -> std::result::Result<[u8; SEAL_SECRET_BYTES], String> {
    let pid = std::process::id();
    SEAL_SECRET.with(|cell| {
        let mut slot = cell.borrow_mut();
        match *slot {
            Some((owner, secret)) if owner == pid => Ok(secret),
            _ => {
                let mut secret = [0u8; SEAL_SECRET_BYTES];
                getrandom::fill(&mut secret)
                    .map_err(|e| format!("no randomness for the boundary seal: {e}"))?;
                *slot = Some((pid, secret));
                Ok(secret)
            }
        }
    })
}

/// Defines `agent_boundary.boundary`: `SUSET`, so ordinary roles cannot set it by any SQL path,
/// and guarded by [`check_boundary_value`], so not even a superuser (or a role granted `SET` on
/// it) can give it a value this backend did not seal.
pub fn init() {
    // SAFETY: the check hook is a #[pg_guard] function that never unwinds into PostgreSQL.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            BOUNDARY_NAME,
            c"The agent boundary of the current transaction (set only by boundary.enter).",
            c"A value sealed by this backend. Any other value is refused, whoever sets it.",
            &BOUNDARY,
            GucContext::Suset,
            // Not NOT_WHILE_SEC_REST: boundary.enter() is itself SECURITY DEFINER.
            GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY | GucFlags::DISALLOW_IN_FILE,
            Some(check_boundary_value),
            None,
            None,
        );
    }
    super::cluster_seal::init();
}

/// Runs `f` on the raw bytes of the current boundary value (empty when none), without copying.
fn with_boundary_value<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: PostgreSQL owns the string and only replaces it between statements of this backend.
    let raw = unsafe { *BOUNDARY.as_ptr() };
    if raw.is_null() {
        f(&[])
    } else {
        // SAFETY: a non-NULL value is a NUL-terminated string PostgreSQL keeps alive meanwhile.
        f(unsafe { CStr::from_ptr(raw) }.to_bytes())
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn transaction_start_unix() -> i64 {
    // SAFETY: reads backend-local transaction state; parallel workers inherit the leader's.
    let micros = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    micros.div_euclid(1_000_000) + PG_EPOCH_UNIX
}

/// GUC check hook for `agent_boundary.boundary`: accepts the empty value (no boundary) and
/// values sealed by this backend that have not expired. Everything else is refused with
/// SQLSTATE 42501, whoever tries (SET, set_config, PGOPTIONS, ALTER ROLE/DATABASE SET, a
/// function's SET clause), and the refused value is never echoed.
///
/// # Safety
/// Called by guc.c only, with `newval` pointing at the proposed value (or NULL).
#[pg_guard]
pub unsafe extern "C-unwind" fn check_boundary_value(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let value =
        if newval.is_null() || (*newval).is_null() { &[][..] } else { CStr::from_ptr(*newval).to_bytes() };
    if value.is_empty() {
        return true;
    }
    // A parallel worker restoring the leader's settings: the leader's check hook accepted this
    // value, and the leader's seal secret is not (and must not be) known here.
    if pg_sys::InitializingParallelWorker {
        return true;
    }
    // The value install() is putting on the transaction right now (or one this hook accepted
    // before): sealed here, so checking the seal again would only repeat the work.
    if let Some(known) = parsed_if_same(value) {
        return if super::token::expired(known.exp, gucs::clock_skew_secs(), now_unix()) {
            refuse_in_check_hook_for_boundary("the sealed boundary has expired");
            false
        } else {
            true
        };
    }
    let verdict = seal_secret()
        .and_then(|secret| token::unseal_verified(value, &secret, now_unix(), gucs::clock_skew_secs()));
    match verdict {
        Ok(_) => true,
        Err(why) => {
            refuse_in_check_hook_for_boundary(&why);
            false
        }
    }
}

fn refuse_in_check_hook_for_boundary(why: &str) {
    refuse_in_check_hook(
        "agent_boundary.boundary can only be set by boundary.enter()",
        why,
        "Call boundary.enter(token) with a token signed by a registered key.",
    );
}

/// Reports a check hook's refusal: SQLSTATE 42501, `message`, "Refused: `why`." and `hint`.
pub(crate) fn refuse_in_check_hook(message: &str, why: &str, hint: &str) {
    let in_error_context = |text: &str| {
        let text = CString::new(text.replace('\0', "")).unwrap_or_default();
        // SAFETY: PostgreSQL reads these right after the hook returns and then resets
        // ErrorContext, which is where its own GUC_check_errmsg() allocates them too.
        unsafe { pg_sys::MemoryContextStrdup(pg_sys::ErrorContext, text.as_ptr()) }
    };
    // SAFETY: a check hook reports its refusal through these globals, which guc.c reads and
    // clears right after the hook returns.
    unsafe {
        pg_sys::GUC_check_errcode(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32);
        pg_sys::GUC_check_errmsg_string = in_error_context(message);
        pg_sys::GUC_check_errdetail_string = in_error_context(&format!("Refused: {why}."));
        pg_sys::GUC_check_errhint_string = in_error_context(hint);
    }
}

/// True while a WITH HOLD cursor's query runs: its rows are kept after COMMIT, past the
/// boundary (and, behind a pooler, within reach of the next client on this connection).
fn in_holdable_cursor() -> bool {
    // SAFETY: ActivePortal is this backend's executing portal, or NULL.
    unsafe {
        let portal = pg_sys::ActivePortal;
        !portal.is_null() && ((*portal).cursorOptions & pg_sys::CURSOR_OPT_HOLD as i32) != 0
    }
}

/// The boundary of the current transaction, or SQLSTATE 42501 when there is none.
pub fn current() -> Result<Rc<Boundary>> {
    let boundary = current_if_any()?.ok_or(BoundaryError::NoBoundary)?;
    if in_holdable_cursor() {
        return Err(BoundaryError::NotAllowed {
            what: "a WITH HOLD cursor cannot read data guarded by an agent boundary".into(),
            hint: "Its rows would outlive the boundary; declare the cursor without WITH HOLD.".into(),
        });
    }
    if super::token::expired(boundary.exp, gucs::clock_skew_secs(), transaction_start_unix()) {
        return Err(BoundaryError::BoundaryExpired { expired_at: boundary.exp });
    }
    Ok(boundary)
}

/// The parsed boundary if `value` is the one [`PARSED`] holds. That cell only ever holds values
/// this backend sealed (install) or PostgreSQL accepted through the check hook (current_if_any).
fn parsed_if_same(value: &[u8]) -> Option<Rc<Boundary>> {
    PARSED.with(|cell| match cell.try_borrow().ok()?.as_ref() {
        Some((raw, parsed)) if raw.as_slice() == value => Some(parsed.clone()),
        _ => None,
    })
}

/// Like [`current`] but `None` instead of an error when no boundary is set. On a Citus worker,
/// the boundary is the one Citus carried from the coordinator's transaction.
pub fn current_if_any() -> Result<Option<Rc<Boundary>>> {
    with_boundary_value(|value| {
        if value.is_empty() {
            return super::cluster_seal::carried();
        }
        if let Some(parsed) = parsed_if_same(value) {
            return Ok(Some(parsed));
        }
        let parsed = Rc::new(token::unseal_trusted::<Boundary>(value).map_err(BoundaryError::Internal)?);
        PARSED.with(|cell| *cell.borrow_mut() = Some((value.to_vec(), parsed.clone())));
        Ok(Some(parsed))
    })
}

fn set_boundary_value(value: &CStr, action: pg_sys::GucAction::Type) {
    crate::pg::guc::set(BOUNDARY_NAME, value, pg_sys::GucContext::PGC_SUSET, action);
}

/// A boundary and the GUC value that carries it, sealed by this backend.
pub struct Sealed {
    pub boundary: Rc<Boundary>,
    value: CString,
}

impl Sealed {
    /// The sealed value's length in bytes.
    pub fn value_len(&self) -> usize {
        self.value.as_bytes().len()
    }
}

pub fn seal(boundary: Boundary) -> Result<Sealed> {
    let secret = seal_secret().map_err(BoundaryError::Internal)?;
    let sealed = token::seal(&boundary, &secret).map_err(BoundaryError::Internal)?;
    let value = CString::new(sealed).map_err(|e| BoundaryError::Internal(e.to_string()))?;
    Ok(Sealed { boundary: Rc::new(boundary), value })
}

/// Puts a sealed boundary on the transaction (or the session, for session scope), and on the
/// transaction's Citus worker connections.
pub fn install(sealed: &Sealed) -> Result<()> {
    let action = match sealed.boundary.scope {
        Scope::Transaction => pg_sys::GucAction::GUC_ACTION_LOCAL,
        Scope::Session => pg_sys::GucAction::GUC_ACTION_SET,
    };
    PARSED
        .with(|cell| *cell.borrow_mut() = Some((sealed.value.as_bytes().to_vec(), sealed.boundary.clone())));
    set_boundary_value(&sealed.value, action);
    super::cluster_seal::propagate(Some(&sealed.boundary))
}

/// Clears the boundary, transaction and session scope alike (undone if the transaction aborts),
/// here and on the transaction's Citus worker connections.
pub fn clear() -> Result<()> {
    set_boundary_value(c"", pg_sys::GucAction::GUC_ACTION_SET);
    super::cluster_seal::propagate(None)
}

pub fn in_transaction_block() -> bool {
    // SAFETY: reads backend-local transaction state.
    unsafe { pg_sys::IsTransactionBlock() }
}
