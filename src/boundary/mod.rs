//! The agent boundary: `boundary.enter(token)`, `boundary.exit()` and the accessors that row
//! level security policies call.
//!
//! Accessors are STABLE (never IMMUTABLE: a folded value would outlive the boundary in a cached
//! plan) and PARALLEL SAFE (workers get the boundary through the GUC), read a per-backend parse
//! cache keyed on the exact GUC value, and fail closed with SQLSTATE 42501 when no boundary is set.

pub mod claims;
pub mod cluster_seal;
mod jobs;
mod jsonb;
pub mod keys;
pub mod registry;
pub mod sealed_guc;
pub mod token;
pub mod verdicts;

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    include!("tests.rs");
}

use crate::error::{BoundaryError, Result, SqlResult};
use crate::gucs;
use claims::{Requested, Scope};
pub use jsonb::BoundaryJsonb;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use token::TokenTimes;
use verdicts::Memo;

/// The most memory one remembered verdict may take (how many a backend remembers:
/// `agent_boundary.remembered_tokens`); a larger one (a long token, a registry row with long
/// allow-lists) is verified again on each enter.
const REMEMBERED_VERDICT_MAX_BYTES: usize = 16 * 1024;

/// Who a boundary belongs to: a transaction serves one of these from its first `admit` to its end.
type Principal = [String; 3];

thread_local! {
    static ENTERED: RefCell<Memo<Rc<Entered>>> = RefCell::new(Memo::default());
    /// The principal the current transaction entered, with the transaction's local id (a new
    /// transaction has a new one, so nothing needs resetting at its end).
    static TRANSACTION_PRINCIPAL: RefCell<Option<(pg_sys::LocalTransactionId, Principal)>> =
        const { RefCell::new(None) };
}

/// A positive interval of days, hours, minutes or seconds, in seconds, at most `max_secs`
/// (refused as "ttl is Ns; <limit> <max>s").
pub fn ttl_seconds(ttl: &pgrx::datum::Interval, max_secs: i64, limit: &str) -> Result<i64> {
    if ttl.months() != 0 {
        return Err(BoundaryError::InvalidArgument(
            "ttl must be given in days, hours, minutes or seconds, not months or years".into(),
        ));
    }
    let secs = ttl.as_micros() / 1_000_000;
    if secs <= 0 {
        return Err(BoundaryError::InvalidArgument("ttl must be positive".into()));
    }
    if secs > i128::from(max_secs) {
        return Err(BoundaryError::InvalidArgument(format!("ttl is {secs}s; {limit} {max_secs}s")));
    }
    Ok(secs as i64)
}

/// Verification clock rules: now, the configured skew, and the longest lifetime accepted.
pub fn time_policy(now: i64, max_lifetime: i64) -> token::TimePolicy {
    token::TimePolicy { now, skew: gucs::clock_skew_secs(), max_lifetime }
}

fn verify_and_narrow(token: &str, scope: Scope, time: token::TimePolicy) -> Result<Entered> {
    let refused = BoundaryError::TokenRefused;
    let (kid, key) = keys::key_for_token(token)?;
    let verified = token::verify(token, key.verifier().map_err(refused)?, time).map_err(|why| {
        if token::signed_with_encoded_secret(token, key.alg, &key.verify_key) {
            return BoundaryError::TokenRefusedWithHint {
                why: why.to_string(),
                hint: format!(
                    "The token was signed with the base64 text of key \"{kid}\"'s secret: base64-decode \
                     what generate_signing_key returned and sign with those bytes."
                ),
            };
        }
        refused(why.to_string())
    })?;
    let times = TokenTimes::from_claims(&verified).map_err(refused)?;
    let mut requested = Requested::from_claims(&verified).map_err(refused)?;
    // A request's grant begins when its token was issued; only job tokens carry an earlier one.
    requested.granted_at = None;
    let principal =
        crate::boundary::registry::lookup(&requested.tenant_id, &requested.workspace_id, &requested.user_id)?
            .ok_or_else(|| {
                BoundaryError::PrincipalRefused(format!(
                    "no registered principal for tenant_id \"{}\", workspace_id \"{}\", user_id \"{}\"",
                    requested.tenant_id, requested.workspace_id, requested.user_id
                ))
            })?;
    let boundary =
        requested.narrow(&principal, &kid, scope, time.now).map_err(BoundaryError::PrincipalRefused)?;
    Ok(Entered { jsonb: BoundaryJsonb::of(&boundary), sealed: sealed_guc::seal(boundary)?, times })
}

/// A token's verdict: the narrowed boundary sealed for the GUC, what `enter` returns, and the
/// token's time claims (checked again whenever the verdict is reused).
struct Entered {
    sealed: sealed_guc::Sealed,
    jsonb: BoundaryJsonb,
    times: TokenTimes,
}

impl Entered {
    /// About how much memory remembering this verdict under `token` takes: the token (the key),
    /// the sealed value, the jsonb and the parsed boundary.
    fn approximate_bytes(&self, token: &str) -> usize {
        token.len()
            + self.sealed.value_len()
            + self.jsonb.byte_len()
            + self.sealed.boundary.approximate_bytes()
    }
}

/// The verdict for `token`: remembered from an earlier `enter` in this backend when the keys and
/// the registry have not changed since and the token is still in date; else verified now (and
/// remembered when the token carries its own iat, so the verdict does not depend on the clock,
/// and is not outsized: [`REMEMBERED_VERDICT_MAX_BYTES`]).
fn entered(token: &str, scope: Scope) -> Result<Rc<Entered>> {
    let generation = verdicts::generation();
    let time = time_policy(sealed_guc::now_unix(), gucs::max_token_lifetime_secs());
    if let Some(known) = ENTERED.with(|m| m.borrow_mut().get(token, generation)) {
        if known.sealed.boundary.scope == scope && known.times.check(time).is_ok() {
            return Ok(known);
        }
    }
    let entered = Rc::new(verify_and_narrow(token, scope, time)?);
    if entered.times.iat.is_some() && entered.approximate_bytes(token) <= REMEMBERED_VERDICT_MAX_BYTES {
        ENTERED.with(|m| m.borrow_mut().put(token, entered.clone(), generation, gucs::remembered_tokens()));
    }
    Ok(entered)
}

/// A cursor opened under one boundary keeps reading after enter() switches to another; its
/// remaining rows would be filtered by whichever boundary is current at each FETCH. Refuse
/// the switch instead of mixing.
fn refuse_switch_under_open_cursors(next: &claims::Boundary) -> Result<()> {
    let Some(current) = sealed_guc::current_if_any()? else { return Ok(()) };
    if current.same_rows_as(next) {
        return Ok(());
    }
    refuse_under_open_cursors(next, "switch to another agent boundary")
}

/// Refuses `doing` (audited like every refusal) while cursors are open on the transaction.
fn refuse_under_open_cursors(boundary: &claims::Boundary, doing: &str) -> Result<()> {
    let open = open_cursors()?;
    if open == 0 {
        return Ok(());
    }
    let what = format!("cannot {doing} while {open} cursor(s) are open");
    crate::audit::refused("cursor_refused", Some(boundary.into()), None, &what);
    Err(BoundaryError::NotAllowed {
        what,
        hint: "CLOSE the cursors first (or finish the transaction).".into(),
    })
}

fn principal_of(boundary: &claims::Boundary) -> Principal {
    [boundary.tenant_id.clone(), boundary.workspace_id.clone(), boundary.user_id.clone()]
}

pub(crate) fn local_transaction_id() -> pg_sys::LocalTransactionId {
    // SAFETY: MyProc is this backend's PGPROC for the life of the backend; enter and resume
    // run only in client backends (they are PARALLEL UNSAFE).
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        return (*pg_sys::MyProc).lxid;
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        return (*pg_sys::MyProc).vxid.lxid;
    }
}

/// Once a transaction has entered a principal (tenant, workspace, user), it never serves
/// another: not inside a savepoint, not after exit(), not after RELEASE. Otherwise the rest of
/// one tenant's transaction (its writes, its cursors, its caller's next statements) would run
/// as another's. The same principal may enter again (a refreshed token, narrower tools).
fn refuse_another_principal(next: &claims::Boundary, how: Admission) -> Result<()> {
    if served_principal().is_none_or(|served| served == principal_of(next)) {
        return Ok(());
    }
    let what = "this transaction already serves another agent principal; one transaction serves one \
                tenant, workspace and user";
    crate::audit::refused("switch_refused", Some(next.into()), None, what);
    Err(BoundaryError::NotAllowed {
        what: format!("boundary.{}() refused: {what}", how.event()),
        hint: "Finish this transaction (COMMIT or ROLLBACK) and enter the next principal's boundary in a new one."
            .into(),
    })
}

fn open_cursors() -> Result<i64> {
    Ok(Spi::get_one::<i64>(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_cursors WHERE name OPERATOR(pg_catalog.<>) ''",
    )?
    .unwrap_or(0))
}

/// Temporary objects outlive the request that made them: a temporary table or view shadows a
/// permanent one for unqualified names, a temporary type or function can run planted code. Left
/// on a pooled connection, they would answer the next request's SQL under its boundary. So a
/// principal is admitted only when the session holds no temporary objects, or holds just those
/// this transaction made while already serving that principal.
fn refuse_temporary_objects(next: &claims::Boundary, how: Admission) -> Result<()> {
    if served_principal() == Some(principal_of(next)) {
        return Ok(());
    }
    let held = temporary_objects()?;
    if held == 0 {
        return Ok(());
    }
    let what = format!(
        "this session holds {held} temporary object(s) made before the agent boundary; they could \
         answer its queries"
    );
    crate::audit::refused("temporary_objects_refused", Some(next.into()), None, &what);
    Err(BoundaryError::NotAllowed {
        what: format!("boundary.{}() refused: {what}", how.event()),
        hint: "Run DISCARD ALL (or DISCARD TEMP) before the next request; behind pgbouncer in transaction \
               mode set server_reset_query = 'DISCARD ALL' and server_reset_query_always = 1."
            .into(),
    })
}

/// The principal the current transaction serves, once it has entered one.
fn served_principal() -> Option<Principal> {
    let lxid = local_transaction_id();
    TRANSACTION_PRINCIPAL.with(|cell| {
        cell.borrow().as_ref().filter(|(id, _)| *id == lxid).map(|(_, principal)| principal.clone())
    })
}

/// How many relations, types, functions and operators this session's temporary schema holds
/// (none without reading a catalog when the session never made one).
fn temporary_objects() -> Result<i64> {
    let (mut namespace, mut toast_namespace) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    // SAFETY: reads this backend's temporary-namespace state; InvalidOid until it makes one.
    unsafe { pg_sys::GetTempNamespaceState(&mut namespace, &mut toast_namespace) };
    if namespace == pg_sys::InvalidOid {
        return Ok(0);
    }
    Ok(Spi::get_one_with_args::<i64>(
        "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class WHERE relnamespace OPERATOR(pg_catalog.=) $1)
              OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM pg_catalog.pg_type
                                       WHERE typnamespace OPERATOR(pg_catalog.=) $1)
              OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc
                                       WHERE pronamespace OPERATOR(pg_catalog.=) $1)
              OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM pg_catalog.pg_operator
                                       WHERE oprnamespace OPERATOR(pg_catalog.=) $1)",
        &[namespace.into()],
    )?
    .unwrap_or(0))
}

/// How a boundary came onto the transaction; also the audit event it records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// `boundary.enter(token)`.
    Enter,
    /// `boundary.resume(job_token)`.
    Resume,
}

impl Admission {
    fn event(self) -> &'static str {
        match self {
            Admission::Enter => "enter",
            Admission::Resume => "resume",
        }
    }
}

/// Puts a verified, sealed boundary on the transaction. Every way onto the transaction goes
/// through here, so each runs the same checks in the same order: a transaction block when
/// required, one principal per transaction, no planted temporary objects, the open-cursor
/// guard, a new count of refusals, the audit row, the install, and the warning when no
/// transaction block holds the boundary.
pub(crate) fn admit(sealed: &sealed_guc::Sealed, how: Admission) -> Result<()> {
    let boundary = &sealed.boundary;
    let ends_with_statement = boundary.scope == Scope::Transaction && !sealed_guc::in_transaction_block();
    if ends_with_statement && gucs::enter_requires_transaction_block() {
        return Err(BoundaryError::OutsideTransactionBlock(format!(
            "boundary.{}() outside a transaction block would end with this statement \
             (agent_boundary.enter_requires_transaction_block is on)",
            how.event()
        )));
    }
    refuse_another_principal(boundary, how)?;
    refuse_temporary_objects(boundary, how)?;
    refuse_switch_under_open_cursors(boundary)?;
    crate::audit::restart_refusal_count();
    crate::audit::record(how.event(), Some(boundary), crate::audit::Event::default())?;
    crate::policy::tenant_routing::admitting(&boundary.tenant_id);
    sealed_guc::install(sealed)?;
    TRANSACTION_PRINCIPAL
        .with(|cell| *cell.borrow_mut() = Some((local_transaction_id(), principal_of(boundary))));
    if ends_with_statement {
        pgrx::warning!(
            "boundary.{}() ran outside a transaction block, so the boundary ends \
             with this statement; wrap it and the queries it guards in BEGIN ... COMMIT",
            how.event()
        );
    }
    Ok(())
}

/// Verifies a signed boundary token (signature, expiry, audience, registry) and puts the
/// resulting boundary on the current transaction. Returns the boundary as `current()` shows it.
///
/// SECURITY DEFINER so it can read the signing keys and the registry, which no ordinary role
/// can; the search_path is pinned and every name it uses is schema-qualified.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn enter(token: &str, scope: default!(&str, "'transaction'")) -> SqlResult<BoundaryJsonb> {
    let scope = Scope::parse(scope).map_err(BoundaryError::InvalidArgument)?;
    if scope == Scope::Session && !gucs::allow_session_scope() {
        return Err(BoundaryError::NotAllowed {
            what: "session-scoped agent boundaries are disabled".into(),
            hint: "A superuser can enable them with agent_boundary.allow_session_scope = on; \
                   do not use them behind a transaction-mode pooler."
                .into(),
        }
        .into());
    }
    let entered = entered(token, scope)?;
    admit(&entered.sealed, Admission::Enter)?;
    Ok(entered.jsonb.clone())
}

/// Removes the boundary (transaction or session scope) for the rest of the transaction; a
/// ROLLBACK undoes the removal.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn exit() -> SqlResult<()> {
    if let Some(boundary) = sealed_guc::current_if_any()? {
        // Leaving is a way off the transaction too: a cursor's remaining rows were chosen
        // under this boundary.
        refuse_under_open_cursors(&boundary, "leave the agent boundary")?;
        crate::audit::record("exit", Some(&boundary), crate::audit::Event::default())?;
    }
    sealed_guc::clear()?;
    Ok(())
}

/// True when a boundary is set; never raises for a missing one.
#[pg_extern(stable, parallel_safe)]
fn is_active() -> bool {
    sealed_guc::current().is_ok()
}

fn current_boundary() -> SqlResult<Rc<claims::Boundary>> {
    Ok(sealed_guc::current()?)
}

#[pg_extern(stable, parallel_safe)]
fn tenant_id() -> SqlResult<String> {
    Ok(current_boundary()?.tenant_id.clone())
}

#[pg_extern(stable, parallel_safe)]
fn workspace_id() -> SqlResult<String> {
    Ok(current_boundary()?.workspace_id.clone())
}

#[pg_extern(stable, parallel_safe)]
fn user_id() -> SqlResult<String> {
    Ok(current_boundary()?.user_id.clone())
}

#[pg_extern(stable, parallel_safe)]
fn role() -> SqlResult<&'static str> {
    Ok(current_boundary()?.role.as_str())
}

#[pg_extern(stable, parallel_safe)]
fn plan() -> SqlResult<&'static str> {
    Ok(current_boundary()?.plan.as_str())
}

#[pg_extern(stable, parallel_safe)]
fn region() -> SqlResult<&'static str> {
    Ok(current_boundary()?.region.as_str())
}

#[pg_extern(stable, parallel_safe)]
fn tool_ids() -> SqlResult<Vec<String>> {
    Ok(current_boundary()?.tool_ids.clone())
}

#[pg_extern(stable, parallel_safe)]
fn datasource_ids() -> SqlResult<Vec<String>> {
    Ok(current_boundary()?.datasource_ids.clone())
}

#[pg_extern(stable, parallel_safe)]
fn memory_namespace() -> SqlResult<String> {
    Ok(current_boundary()?.memory_namespace().to_string())
}

#[pg_extern(stable, parallel_safe)]
fn trace_id() -> SqlResult<Option<String>> {
    Ok(current_boundary()?.trace_id.clone())
}

#[pg_extern(stable, parallel_safe)]
fn run_id() -> SqlResult<Option<String>> {
    Ok(current_boundary()?.run_id.clone())
}

#[pg_extern(stable, parallel_safe)]
fn prompt_version() -> SqlResult<Option<String>> {
    Ok(current_boundary()?.prompt_version.clone())
}

/// The whole boundary as jsonb: ids, role, plan, region, allow-lists, namespace, trace and run
/// ids, issued/expiry times, the verifying key id and the scope. Never the token.
#[pg_extern(stable, parallel_safe)]
fn current() -> SqlResult<BoundaryJsonb> {
    Ok(BoundaryJsonb::of(&*current_boundary()?))
}
