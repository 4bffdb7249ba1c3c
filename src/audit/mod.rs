//! The audit trail: `boundary.audit_log`, append-only and metadata-only (ids, namespaces,
//! counts, reasons; never row content, tokens or keys).
//!
//! PostgreSQL has no autonomous transactions: a row written by the transaction that an ERROR
//! then aborts is rolled back with it. Refusals (a tool asking outside the boundary, a job
//! whose permissions changed) always end in an ERROR, so they are recorded where a rollback
//! cannot reach: one JSON line per refusal in the server log (prefix `agent_boundary audit: `)
//! and the sequence `boundary.blocked_events`, which counts every refusal (sequences ignore
//! rollback). Refusals an agent catches in a savepoint are also counted into the `exit` row of
//! the boundary they happened under. Events of transactions that commit are rows; `enter` and
//! `exit` rows, when the library is preloaded, go through the background writer (`writer`) and
//! are rows whether or not their transaction commits.

use crate::boundary::claims::{Boundary, Requested};
use crate::error::{Result, SqlResult};
use pgrx::prelude::*;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

mod queue;
mod writer;

use queue::Row;
pub use writer::init;

extension_sql!(
    r#"
CREATE TABLE boundary.audit_log (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                  timestamptz NOT NULL DEFAULT clock_timestamp(),
    event               text NOT NULL CHECK (event IN ('enter', 'exit', 'promote', 'protect', 'unprotect', 'snapshot', 'resume', 'purge')),
    tenant_id           text,
    workspace_id        text,
    user_id             text,
    trace_id            text,
    run_id              text,
    prompt_version      text,
    retrieval_namespace text,
    tool_ids            text[] NOT NULL DEFAULT '{}',
    datasource_ids      text[] NOT NULL DEFAULT '{}',
    memory_keys         text[] NOT NULL DEFAULT '{}',
    blocked_count       integer NOT NULL DEFAULT 0,
    resource            text,
    repeats             integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE boundary.audit_log IS
  'Append-only, metadata-only audit trail. Refusals are in the server log and boundary.blocked_events.';
CREATE INDEX audit_log_tenant_at ON boundary.audit_log (tenant_id, at);
SELECT pg_catalog.pg_extension_config_dump('boundary.audit_log', '');

CREATE SEQUENCE boundary.blocked_events;
COMMENT ON SEQUENCE boundary.blocked_events IS
  'Every refusal (blocked tool argument, refused resume) ever, including those whose transaction rolled back.';
-- pg_dump restores both where they stood: the audit log's ids go on after its dumped rows (or
-- the first enter after a restore collides with them), the refusal count does not start over.
SELECT pg_catalog.pg_extension_config_dump('boundary.audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('boundary.blocked_events', '');

CREATE FUNCTION boundary.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'boundary.audit_log is append-only: % is refused', TG_OP USING ERRCODE = '42501';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON boundary.audit_log
    FOR EACH ROW EXECUTE FUNCTION boundary.refuse_audit_change();
CREATE TRIGGER audit_log_refuse_truncate BEFORE TRUNCATE ON boundary.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION boundary.refuse_audit_change();

DO $protect$ BEGIN
    -- Tenants read their own rows; nobody but this extension writes (no INSERT grant).
    PERFORM boundary.protect('boundary.audit_log', workspace_column => '', user_column => '',
                             write_roles => '{owner,admin,member,viewer}');
END $protect$;
-- Within the tenant, a user reads the trail of their own boundaries: protect() puts that rule
-- (audit::row_rule) into every policy.
-- Every column but the id: one identity serves every tenant, so the gaps between a tenant's
-- ids would count other tenants' events. Order by `at`.
GRANT SELECT (at, event, tenant_id, workspace_id, user_id, trace_id, run_id, prompt_version,
              retrieval_namespace, tool_ids, datasource_ids, memory_keys, blocked_count, resource, repeats)
    ON boundary.audit_log TO PUBLIC;
"#,
    name = "audit_log_table",
    requires = [
        policy::protect,
        boundary::tenant_id,
        boundary::workspace_id,
        boundary::user_id,
        boundary::role,
        "policy_sql"
    ],
);

/// The audit log's own rule on top of the tenant, which `protect()` puts into each of its
/// policies (a restrictive policy of its own would reach Citus' shards as a permissive one): a
/// user reads the trail of their own boundaries (trace and run ids, memory names), the
/// tenant's owners and admins all of it. Only the extension writes rows. `table` is
/// `schema.name`, unquoted.
pub fn row_rule(table: &str) -> Option<crate::policy::RowRule> {
    (table == "boundary.audit_log").then_some(crate::policy::RowRule {
        visible: "(boundary.role() = ANY ('{owner,admin}'::text[]) \
                  OR ({row}workspace_id = boundary.workspace_id() AND {row}user_id = boundary.user_id()))",
        writable: "true",
    })
}

/// Whether the audit log is distributed by tenant on Citus (`boundary.distribute_own_tables()`).
fn distributed() -> Result<bool> {
    let Some(audit_log) = crate::pg::catalog::relation_oid(c"boundary", c"audit_log") else {
        return Ok(false);
    };
    Ok(crate::pg::citus::distribution_column(audit_log)?.is_some())
}

thread_local! {
    /// Refusals since the last enter() in this backend; savepoint rollbacks do not undo it.
    static BLOCKED_SINCE_ENTER: Cell<i32> = const { Cell::new(0) };
    /// Rows this transaction (by local transaction id) added under a boundary; savepoint
    /// rollbacks do not undo it either, so a loop of caught errors cannot reset it.
    static ROWS_THIS_TRANSACTION: Cell<(pg_sys::LocalTransactionId, i64)> =
        const { Cell::new((pg_sys::InvalidLocalTransactionId, 0)) };
    /// For the transaction (by local id) that wrote audit rows: whether all the WAL it has
    /// written so far is enter/exit audit rows, and where the last of them ended.
    static AUDIT_ONLY_WAL: Cell<(pg_sys::LocalTransactionId, bool, pg_sys::XLogRecPtr)> =
        const { Cell::new((pg_sys::InvalidLocalTransactionId, false, 0)) };
}

/// Notes an audit row that ran from WAL position `before` to `after`. A transaction whose only
/// WAL is `enter`/`exit` rows (a read-only request) then commits asynchronously: it does not
/// wait for the WAL flush, which would otherwise be its whole cost. Any other WAL, before or
/// after, keeps the commit as the session configured it: a write, but also what a read may log
/// (page pruning, hint bits under data checksums), which errs on the side of waiting. The crash
/// window is documented: rows of such transactions committed in the last moments before a
/// crash (up to three times `wal_writer_delay`) can be lost; refusals never depend on it
/// (server log and sequence).
fn note_audit_wal(event: &str, before: pg_sys::XLogRecPtr, after: pg_sys::XLogRecPtr) {
    let lxid = crate::boundary::local_transaction_id();
    let eligible = crate::gucs::audit_async_commit() && matches!(event, "enter" | "exit");
    let first_row = AUDIT_ONLY_WAL.with(|cell| {
        let (id, only_audit, last_end) = cell.get();
        let first_row = id != lxid;
        let only_audit = eligible && if first_row { before == 0 } else { only_audit && before == last_end };
        cell.set((lxid, only_audit, after));
        first_row
    });
    if first_row {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::PreCommit, commit_audit_only_asynchronously);
    }
}

fn commit_audit_only_asynchronously() {
    let lxid = crate::boundary::local_transaction_id();
    let (id, only_audit, last_end) = AUDIT_ONLY_WAL.with(Cell::get);
    // SAFETY: reads this backend's end of WAL written by the committing transaction.
    let wrote_since = unsafe { pg_sys::XactLastRecEnd } != last_end;
    if id == lxid && only_audit && !wrote_since {
        // For this commit only (GUC_ACTION_LOCAL ends with the transaction).
        crate::pg::guc::set(
            c"synchronous_commit",
            c"off",
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
        );
    }
}

/// The enter rows this backend committed recently, by content (every column but the time), so
/// that an identical row is written at most once per `agent_boundary.audit_enter_interval`;
/// the enters in between are counted into the next row's `repeats`. Rows are only "committed"
/// here once their transaction commits: a row a (sub)transaction rolled back suppresses nothing
/// and its count of repeats is carried again.
#[derive(Default)]
struct RecentEnterRows {
    rows: HashMap<String, RecentRow>,
}

#[derive(Default)]
struct RecentRow {
    /// When this backend last committed the row (unix seconds), if it has.
    committed_at: Option<i64>,
    /// Enters since that row that wrote none.
    repeats: i32,
}

impl RecentEnterRows {
    /// Whether an enter row `key` at `now` would repeat one committed less than `interval`
    /// seconds ago; if so it is counted instead of written.
    fn repeat(&mut self, key: &str, now: i64, interval: i64) -> bool {
        let Some(row) = self.rows.get_mut(key) else { return false };
        let recent = row.committed_at.is_some_and(|at| now >= at && now - at < interval);
        if recent {
            row.repeats = row.repeats.saturating_add(1);
        }
        recent
    }

    /// The repeats the row about to be written for `key` carries (given back if it rolls back).
    fn take_repeats(&mut self, key: &str) -> i32 {
        self.rows.get_mut(key).map(|row| std::mem::take(&mut row.repeats)).unwrap_or(0)
    }

    fn give_back(&mut self, key: &str, repeats: i32) {
        if let Some(row) = self.rows.get_mut(key) {
            row.repeats = row.repeats.saturating_add(repeats);
        }
    }

    /// The row `key` written at `at` has committed; at most `capacity` rows are remembered.
    fn committed(&mut self, key: String, at: i64, interval: i64, capacity: usize) {
        if capacity == 0 {
            return self.rows.clear();
        }
        if !self.rows.contains_key(&key) && self.rows.len() >= capacity {
            // Make room from rows whose interval is over and that carry no count; if none,
            // start over (more rows are written, none is lost, uncounted repeats are).
            self.rows.retain(|_, row| {
                row.repeats > 0 || row.committed_at.is_some_and(|done| at >= done && at - done < interval)
            });
            if self.rows.len() >= capacity {
                self.rows.clear();
            }
        }
        self.rows.entry(key).or_default().committed_at = Some(at);
    }
}

/// An enter row written by the current transaction: its content, the subtransaction that wrote
/// it, when, and the repeats it carried.
struct PendingEnterRow {
    key: String,
    subtransaction: pg_sys::SubTransactionId,
    at: i64,
    repeats: i32,
}

thread_local! {
    static RECENT_ENTER_ROWS_BY_CONTENT: RefCell<RecentEnterRows> = RefCell::default();
    /// Enter rows of the transaction with this local id, settled when it ends.
    static PENDING_ENTER_ROWS: RefCell<(pg_sys::LocalTransactionId, Vec<PendingEnterRow>)> =
        const { RefCell::new((pg_sys::InvalidLocalTransactionId, Vec::new())) };
}

/// What makes two enter rows the same row: every column but the time (ids cannot hold NUL).
fn enter_row_key(boundary: &Boundary) -> String {
    let optional = |v: &Option<String>| v.clone().unwrap_or_else(|| "\u{1}".into());
    [
        boundary.tenant_id.clone(),
        boundary.workspace_id.clone(),
        boundary.user_id.clone(),
        optional(&boundary.trace_id),
        optional(&boundary.run_id),
        optional(&boundary.prompt_version),
        boundary.memory_namespace().to_string(),
        boundary.tool_ids.join("\u{2}"),
        boundary.datasource_ids.join("\u{2}"),
    ]
    .join("\u{0}")
}

/// Whether this enter's row would repeat one this backend committed within the interval (then
/// it is counted, not written).
fn enter_repeats_a_recent_row(key: &str) -> bool {
    let interval = crate::gucs::audit_enter_interval_secs();
    interval > 0
        && RECENT_ENTER_ROWS_BY_CONTENT
            .with(|recent| recent.borrow_mut().repeat(key, crate::boundary::sealed_guc::now_unix(), interval))
}

/// The repeats the next row for `key` carries.
fn take_repeats(key: &str) -> i32 {
    RECENT_ENTER_ROWS_BY_CONTENT.with(|recent| recent.borrow_mut().take_repeats(key))
}

fn give_back_repeats(key: &str, repeats: i32) {
    RECENT_ENTER_ROWS_BY_CONTENT.with(|recent| recent.borrow_mut().give_back(key, repeats));
}

/// A queued enter row: it suppresses repeats from now on (it is written whatever happens to
/// this transaction).
fn committed_enter_row(key: String, at: pg_sys::TimestampTz) {
    let (interval, capacity) = (crate::gucs::audit_enter_interval_secs(), crate::gucs::remembered_tokens());
    let at_unix = (at + POSTGRES_EPOCH_UNIX_US).div_euclid(1_000_000);
    RECENT_ENTER_ROWS_BY_CONTENT
        .with(|recent| recent.borrow_mut().committed(key, at_unix, interval, capacity));
}

/// Notes an enter row about to be written; returns the repeats it carries. Settled when the
/// transaction ends: a commit makes it the recent row, a rollback (of the transaction or of the
/// savepoint that wrote it) gives its repeats back.
fn pending_enter_row(key: String) -> i32 {
    let repeats = take_repeats(&key);
    let lxid = crate::boundary::local_transaction_id();
    let first = PENDING_ENTER_ROWS.with(|pending| {
        let mut pending = pending.borrow_mut();
        let first = pending.0 != lxid;
        if first {
            // A transaction that ended without either callback (PREPARE TRANSACTION) settles
            // nothing: its rows suppress nothing, its repeats are not carried again.
            *pending = (lxid, Vec::new());
        }
        // SAFETY: reads backend-local transaction state.
        let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
        pending.1.push(PendingEnterRow {
            key,
            subtransaction,
            at: crate::boundary::sealed_guc::now_unix(),
            repeats,
        });
        first
    });
    if first {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, || settle_enter_rows(true));
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, || settle_enter_rows(false));
        pgrx::register_subxact_callback(pgrx::PgSubXactCallbackEvent::AbortSub, |aborted, _parent| {
            // Subtransactions started after `aborted` and still open are inside it.
            let undone = PENDING_ENTER_ROWS.with(|pending| {
                let rows = &mut pending.borrow_mut().1;
                let (undone, kept) =
                    std::mem::take(rows).into_iter().partition(|r| r.subtransaction >= aborted);
                *rows = kept;
                undone
            });
            give_back(undone);
        });
    }
    repeats
}

/// Runs after the transaction ended (no ERROR may escape): touches backend memory only.
fn settle_enter_rows(committed: bool) {
    let rows = PENDING_ENTER_ROWS.with(|pending| std::mem::take(&mut pending.borrow_mut().1));
    if !committed {
        return give_back(rows);
    }
    let (interval, capacity) = (crate::gucs::audit_enter_interval_secs(), crate::gucs::remembered_tokens());
    RECENT_ENTER_ROWS_BY_CONTENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        for row in rows {
            recent.committed(row.key, row.at, interval, capacity);
        }
    });
}

fn give_back(rows: Vec<PendingEnterRow>) {
    RECENT_ENTER_ROWS_BY_CONTENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        for row in rows {
            recent.give_back(&row.key, row.repeats);
        }
    });
}

/// Counts one more row of this transaction, or refuses it past
/// `agent_boundary.max_audit_rows_per_transaction`.
fn count_row() -> Result<()> {
    let lxid = crate::boundary::local_transaction_id();
    let limit = crate::gucs::max_audit_rows_per_transaction();
    ROWS_THIS_TRANSACTION.with(|cell| {
        let (id, rows) = cell.get();
        let rows = if id == lxid { rows } else { 0 };
        if rows >= limit {
            return Err(crate::error::BoundaryError::ValueTooLarge(format!(
                "this transaction has added {rows} rows to boundary.audit_log; \
                 agent_boundary.max_audit_rows_per_transaction allows {limit}"
            )));
        }
        cell.set((lxid, rows + 1));
        Ok(())
    })
}

/// What happened, beyond the boundary's own fields.
#[derive(Default)]
pub struct Event<'a> {
    pub resource: Option<&'a str>,
    pub memory_keys: Vec<String>,
}

/// Whether this transaction cannot write (READ ONLY, or a hot standby).
pub fn read_only() -> bool {
    // SAFETY: reads backend-local transaction state.
    unsafe { pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() }
}

/// Runs `f` as the owner of the audit table (the extension's owner), the way a SECURITY
/// DEFINER function would, so no role needs INSERT on it. An ERROR inside `f` aborts the
/// (sub)transaction, which restores the user id.
fn as_audit_owner<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let owner = crate::pg::catalog::relation_owner(c"boundary", c"audit_log").unwrap_or(pg_sys::InvalidOid);
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: save, switch and restore, as fmgr_security_definer does.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let result = f();
    // SAFETY: restores exactly what was saved above (an ERROR in `f` skips this, and the
    // (sub)transaction abort restores the user id instead).
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

/// Whose refusal a log line records: from a boundary, or from a job token that was refused.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub tenant_id: &'a str,
    pub workspace_id: &'a str,
    pub user_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
}

impl<'a> From<&'a Boundary> for Who<'a> {
    fn from(b: &'a Boundary) -> Self {
        Who {
            tenant_id: &b.tenant_id,
            workspace_id: &b.workspace_id,
            user_id: &b.user_id,
            trace_id: b.trace_id.as_deref(),
            run_id: b.run_id.as_deref(),
        }
    }
}

impl<'a> From<&'a Requested> for Who<'a> {
    fn from(r: &'a Requested) -> Self {
        Who {
            tenant_id: &r.tenant_id,
            workspace_id: &r.workspace_id,
            user_id: &r.user_id,
            trace_id: r.trace_id.as_deref(),
            run_id: r.run_id.as_deref(),
        }
    }
}

/// One JSON line in the server log: metadata only.
fn log_line(event: &str, who: Option<Who>, resource: Option<&str>, reason: &str, blocked: i32) {
    let line = json!({
        "event": event,
        "tenant_id": who.map(|w| w.tenant_id),
        "workspace_id": who.map(|w| w.workspace_id),
        "user_id": who.map(|w| w.user_id),
        "trace_id": who.and_then(|w| w.trace_id),
        "run_id": who.and_then(|w| w.run_id),
        "resource": resource,
        "reason": reason,
        "blocked_since_enter": blocked,
    });
    pgrx::log!("agent_boundary audit: {line}");
}

/// Appends one row for `event` under `boundary` (or none, for admin events such as protect).
/// `enter` and `exit` rows go to the background writer's queue when there is one (see
/// `writer`); every other row, and those the queue cannot take, are written by this
/// transaction. In a read-only transaction (a hot standby, say) a row that would be written
/// here goes to the server log instead.
pub fn record(event: &str, boundary: Option<&Boundary>, details: Event) -> Result<()> {
    // CREATE EXTENSION protects the extension's own tables before this one exists.
    // SAFETY: reads a backend-local flag.
    if unsafe { pg_sys::creating_extension } {
        return Ok(());
    }
    let queueable = matches!(event, "enter" | "exit");
    if queueable && !crate::gucs::audit_enter() {
        return Ok(());
    }
    let queueable = queueable && writer::queueing();
    if !queueable && read_only() {
        log_line(
            event,
            boundary.map(Who::from),
            details.resource,
            "read-only transaction: not written to audit_log",
            0,
        );
        return Ok(());
    }
    let enter_key = boundary.filter(|_| event == "enter").map(enter_row_key);
    if enter_key.as_deref().is_some_and(enter_repeats_a_recent_row) {
        return Ok(());
    }
    if boundary.is_some() {
        count_row()?;
    }
    let text = |f: fn(&Boundary) -> Option<String>| boundary.and_then(f);
    let mut row = Row {
        // SAFETY: reads the clock.
        at: unsafe { pg_sys::GetCurrentTimestamp() },
        event: event.to_string(),
        // An event of no tenant (protect, purge): NULL, or '' where the log is distributed by
        // tenant (Citus refuses NULL there; no boundary has an empty tenant).
        tenant_id: match boundary {
            Some(b) => Some(b.tenant_id.clone()),
            None => distributed()?.then(String::new),
        },
        workspace_id: text(|b| Some(b.workspace_id.clone())),
        user_id: text(|b| Some(b.user_id.clone())),
        trace_id: text(|b| b.trace_id.clone()),
        run_id: text(|b| b.run_id.clone()),
        prompt_version: text(|b| b.prompt_version.clone()),
        retrieval_namespace: text(|b| Some(b.memory_namespace().to_string())),
        tool_ids: boundary.map(|b| b.tool_ids.clone()).unwrap_or_default(),
        datasource_ids: boundary.map(|b| b.datasource_ids.clone()).unwrap_or_default(),
        memory_keys: details.memory_keys,
        blocked_count: if event == "exit" { BLOCKED_SINCE_ENTER.with(Cell::get) } else { 0 },
        resource: details.resource.map(str::to_string),
        repeats: 0,
    };
    if queueable {
        // A queued row is written whether or not this transaction commits: the boundary was
        // used either way. So it counts as committed at once.
        row.repeats = enter_key.as_deref().map(take_repeats).unwrap_or(0);
        if writer::queue(&row) {
            if let Some(key) = enter_key {
                committed_enter_row(key, row.at);
            }
            return Ok(());
        }
        if let Some(key) = &enter_key {
            give_back_repeats(key, row.repeats);
        }
    }
    row.repeats = enter_key.map(pending_enter_row).unwrap_or(0);
    // SAFETY: reads this backend's end of WAL written by the current transaction.
    let wal_before = unsafe { pg_sys::XactLastRecEnd };
    as_audit_owner(|| insert(std::slice::from_ref(&row)))?;
    // SAFETY: as above.
    note_audit_wal(event, wal_before, unsafe { pg_sys::XactLastRecEnd });
    Ok(())
}

/// Rows per INSERT: a background writer's batch pays one statement's executor start-up and
/// plan check per thousand rows instead of one per row (the writer's time per row halved in
/// bench/RESULTS.md, Audit writer), and the arrays it passes stay a few hundred kilobytes.
const ROWS_PER_INSERT: usize = 1000;

/// The audit_log columns both INSERTs fill, in the order of their parameters.
macro_rules! audit_columns {
    () => {
        "at, event, tenant_id, workspace_id, user_id, trace_id, run_id, prompt_version, \
         retrieval_namespace, tool_ids, datasource_ids, memory_keys, blocked_count, resource, repeats"
    };
}

/// Inserts `rows` (the inline path's one row, or the background writer's batch).
fn insert(rows: &[Row]) -> Result<()> {
    Spi::connect_mut(|client| match rows {
        // The batch statement would be planned again for every single row (its custom plan,
        // sized by the one-element arrays, always looks cheaper than the generic one): 120 µs a
        // row instead of 20 on the inline path (bench/audit_writer.sh).
        [row] => insert_one(client, row),
        _ => rows.chunks(ROWS_PER_INSERT).try_for_each(|chunk| insert_chunk(client, chunk)),
    })
}

fn row_time(row: &Row) -> Result<pgrx::datum::TimestampWithTimeZone> {
    pgrx::datum::TimestampWithTimeZone::try_from(row.at)
        .map_err(|e| crate::error::BoundaryError::Internal(format!("audit row time {}: {e}", row.at)))
}

fn insert_one(client: &mut pgrx::spi::SpiClient, row: &Row) -> Result<()> {
    let args: [pgrx::datum::DatumWithOid; 15] = [
        row_time(row)?.into(),
        row.event.as_str().into(),
        row.tenant_id.as_deref().into(),
        row.workspace_id.as_deref().into(),
        row.user_id.as_deref().into(),
        row.trace_id.as_deref().into(),
        row.run_id.as_deref().into(),
        row.prompt_version.as_deref().into(),
        row.retrieval_namespace.as_deref().into(),
        row.tool_ids.clone().into(),
        row.datasource_ids.clone().into(),
        row.memory_keys.clone().into(),
        row.blocked_count.into(),
        row.resource.as_deref().into(),
        row.repeats.into(),
    ];
    crate::pg::spi_plans::update(
        client,
        concat!(
            "INSERT INTO boundary.audit_log (",
            audit_columns!(),
            ")
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &args,
    )?;
    Ok(())
}

/// One INSERT for `rows`: a column array per parameter, zipped by ROWS FROM. The list
/// columns travel as array literals (a text[][] cannot hold lists of different lengths).
fn insert_chunk(client: &mut pgrx::spi::SpiClient, rows: &[Row]) -> Result<()> {
    let text = |field: fn(&Row) -> &Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|r| field(r).clone()).collect()
    };
    let list = |field: fn(&Row) -> &Vec<String>| -> Vec<String> {
        rows.iter().map(|r| queue::array_literal(field(r))).collect()
    };
    let at = rows.iter().map(row_time).collect::<Result<Vec<_>>>()?;
    let args: [pgrx::datum::DatumWithOid; 15] = [
        at.into(),
        rows.iter().map(|r| r.event.clone()).collect::<Vec<_>>().into(),
        text(|r| &r.tenant_id).into(),
        text(|r| &r.workspace_id).into(),
        text(|r| &r.user_id).into(),
        text(|r| &r.trace_id).into(),
        text(|r| &r.run_id).into(),
        text(|r| &r.prompt_version).into(),
        text(|r| &r.retrieval_namespace).into(),
        list(|r| &r.tool_ids).into(),
        list(|r| &r.datasource_ids).into(),
        list(|r| &r.memory_keys).into(),
        rows.iter().map(|r| r.blocked_count).collect::<Vec<_>>().into(),
        text(|r| &r.resource).into(),
        rows.iter().map(|r| r.repeats).collect::<Vec<_>>().into(),
    ];
    crate::pg::spi_plans::update(
        client,
        concat!("INSERT INTO boundary.audit_log (", audit_columns!(), ")
         SELECT r.at, r.event, r.tenant_id, r.workspace_id, r.user_id, r.trace_id, r.run_id,
                r.prompt_version, r.retrieval_namespace, r.tool_ids::pg_catalog.text[],
                r.datasource_ids::pg_catalog.text[], r.memory_keys::pg_catalog.text[], r.blocked_count,
                r.resource, r.repeats
           FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),
                pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),
                pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11),
                pg_catalog.unnest($12), pg_catalog.unnest($13), pg_catalog.unnest($14), pg_catalog.unnest($15))
                AS r(", audit_columns!(), ")"),
        &args,
    )?;
    Ok(())
}

/// A queued row the background writer could not write: the server log keeps it.
fn log_unwritten(row: &Row, why: &str) {
    let line = json!({
        "event": row.event,
        "at_unix_us": row.at + POSTGRES_EPOCH_UNIX_US,
        "tenant_id": row.tenant_id,
        "workspace_id": row.workspace_id,
        "user_id": row.user_id,
        "trace_id": row.trace_id,
        "run_id": row.run_id,
        "prompt_version": row.prompt_version,
        "retrieval_namespace": row.retrieval_namespace,
        "tool_ids": row.tool_ids,
        "datasource_ids": row.datasource_ids,
        "blocked_count": row.blocked_count,
        "repeats": row.repeats,
        "reason": format!("not written to audit_log: {why}"),
    });
    pgrx::log!("agent_boundary audit: {line}");
}

/// 2000-01-01 (PostgreSQL's epoch) in microseconds since 1970-01-01.
const POSTGRES_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// Waits until the enter and exit rows this database queued before the call are in
/// `boundary.audit_log` (at once without a background writer). Superusers and roles granted it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn flush_audit_log() -> SqlResult<()> {
    Ok(writer::flush()?)
}

/// A new boundary starts its own count of refusals.
pub fn restart_refusal_count() {
    BLOCKED_SINCE_ENTER.with(|c| c.set(0));
}

/// Records a refusal where the coming rollback cannot undo it: the server log and the
/// `blocked_events` counter (not in a read-only transaction, where nextval is not allowed).
pub fn refused(event: &str, who: Option<Who>, resource: Option<&str>, reason: &str) {
    let blocked = BLOCKED_SINCE_ENTER.with(|c| {
        c.set(c.get().saturating_add(1));
        c.get()
    });
    log_line(event, who, resource, reason, blocked);
    if !read_only() {
        // The caller raises the refusal next; failing to count it is an error of its own.
        as_audit_owner(|| Ok(Spi::run("SELECT pg_catalog.nextval('boundary.blocked_events')")?))
            .unwrap_or_else(|e| e.raise());
    }
}

/// Deletes audit rows older than `older_than` (all tenants) and records the purge; returns how
/// many went. The trail is append-only for everyone, superusers included; this is the one way
/// rows leave it, for a retention window (schedule it, e.g. with pg_cron). Superusers and roles
/// granted it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn purge_audit_log(older_than: pgrx::datum::Interval) -> SqlResult<i64> {
    let secs = crate::boundary::ttl_seconds(&older_than, i64::MAX, "the limit is").map_err(|e| {
        crate::error::BoundaryError::InvalidArgument(e.to_string().replacen("ttl", "older_than", 1))
    })?;
    // The append-only trigger stands aside for this statement only (it does not fire for
    // session_replication_role = replica); the setting is put back when the level ends. On
    // Citus the shards on other nodes are the backends' there, which get the setting for this
    // statement too and their own back after it.
    let on_every_node = distributed()?;
    let purged = crate::pg::guc::with_nest_level(|| -> Result<Option<i64>> {
        let before = crate::pg::guc::current(c"session_replication_role");
        if on_every_node {
            crate::pg::citus::set_local_on_every_node("session_replication_role", "replica")?;
        } else {
            crate::pg::guc::set(
                c"session_replication_role",
                c"replica",
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucAction::GUC_ACTION_SAVE,
            );
        }
        let purged = Spi::get_one_with_args::<i64>(
            "WITH d AS (DELETE FROM boundary.audit_log
                         WHERE at < pg_catalog.now() - pg_catalog.make_interval(secs => $1) RETURNING 1)
             SELECT pg_catalog.count(*) FROM d",
            &[(secs as f64).into()],
        )?;
        if on_every_node {
            crate::pg::citus::set_local_on_every_node("session_replication_role", &before)?;
        }
        Ok(purged)
    })?
    .unwrap_or(0);
    let what = format!("{purged} rows older than {secs} seconds");
    record("purge", None, Event { resource: Some(&what), ..Default::default() })?;
    Ok(purged)
}

/// How many refusals were ever recorded, across all tenants (rolled-back ones included).
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn blocked_events_total() -> SqlResult<i64> {
    Ok(Spi::get_one::<i64>(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM boundary.blocked_events",
    )
    .map_err(crate::error::BoundaryError::from)?
    .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::RecentEnterRows;

    #[test]
    fn an_enter_row_repeats_only_a_committed_row_within_the_interval() {
        let mut recent = RecentEnterRows::default();
        assert!(!recent.repeat("a", 100, 60), "nothing committed yet");
        recent.committed("a".into(), 100, 60, 8);
        assert!(recent.repeat("a", 159, 60));
        assert!(recent.repeat("a", 130, 60));
        assert!(!recent.repeat("a", 160, 60), "the interval is over");
        assert!(!recent.repeat("b", 120, 60), "another boundary's row is written");
        assert!(!recent.repeat("a", 99, 60), "a clock that went back writes a row");
        assert_eq!(recent.take_repeats("a"), 2, "the next row carries the enters that wrote none");
        assert_eq!(recent.take_repeats("a"), 0);
        recent.give_back("a", 2);
        assert_eq!(recent.take_repeats("a"), 2, "a rolled-back row gives its count back");
    }

    #[test]
    fn a_full_memory_of_rows_drops_finished_ones_before_counted_ones() {
        let mut recent = RecentEnterRows::default();
        recent.committed("old".into(), 0, 60, 2);
        recent.committed("counted".into(), 100, 60, 2);
        assert!(recent.repeat("counted", 101, 60));
        recent.committed("new".into(), 200, 60, 2);
        assert!(!recent.rows.contains_key("old"));
        assert_eq!(recent.take_repeats("counted"), 1, "a row still carrying a count is kept");
        recent.committed("newer".into(), 201, 60, 2);
        assert!(recent.rows.len() <= 2, "the memory stays bounded: {}", recent.rows.len());
    }
}
