//! The tuning settings (`agent_boundary.*`), with typed accessors. The boundary itself is a
//! setting too, defined with its check hook in `boundary::sealed_guc`. The prefix is reserved
//! once both are defined, so a typo'd or invented `agent_boundary.*` name is refused instead of
//! becoming a user-settable placeholder.
//!
//! Contexts follow trust: nothing that decides what anyone may see is `USERSET` (only the vector
//! search tuning knobs and Citus shard routing are, as they change speed, never which rows
//! qualify, and the switch that makes `enter` outside a transaction block an error instead of a
//! warning).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::{CStr, CString};

const PREFIX: &CStr = c"agent_boundary";

static ALLOW_SESSION_SCOPE: GucSetting<bool> = GucSetting::<bool>::new(false);
static MAX_TOKEN_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(3600);
static AUDIT_ENTER: GucSetting<bool> = GucSetting::<bool>::new(true);
static AUDIT_ASYNC_COMMIT: GucSetting<bool> = GucSetting::<bool>::new(true);
static AUDIT_ENTER_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
static AUDIT_WRITER: GucSetting<AuditWriter> = GucSetting::<AuditWriter>::new(AuditWriter::Background);
static AUDIT_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
static AUDIT_FLUSH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(200);
static ENTER_REQUIRES_TRANSACTION_BLOCK: GucSetting<bool> = GucSetting::<bool>::new(false);
static REMEMBERED_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(4096);
static MAX_JOB_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(24 * 3600);
static CLOCK_SKEW: GucSetting<i32> = GucSetting::<i32>::new(30);
static MAX_AUDIT_ROWS_PER_TRANSACTION: GucSetting<i32> = GucSetting::<i32>::new(100);
static AUTO_PROTECT_SCHEMAS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static AUTO_PROTECT_ADD_COLUMNS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static AUTO_PROTECT_SHARED_TABLES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));
static VECTOR_EXACT_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(3000);
static APPROXIMATE_DIRECT_VECTOR_QUERIES: GucSetting<bool> = GucSetting::<bool>::new(false);
static ROUTE_TO_TENANT_SHARD: GucSetting<bool> = GucSetting::<bool>::new(true);
static VECTOR_EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(400);
static VECTOR_EF_SEARCH_TENANT_INDEX: GucSetting<i32> = GucSetting::<i32>::new(100);
static TENANT_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"tenant_id"));

/// Who writes `enter` and `exit` audit rows.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum AuditWriter {
    /// The background writer, when the library is preloaded (the entering transaction otherwise).
    #[name = c"background"]
    Background,
    /// The entering transaction, always.
    #[name = c"transaction"]
    Transaction,
}

/// Defines the tuning settings and reserves the prefix: call after every other
/// `agent_boundary.*` setting is defined.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"agent_boundary.allow_session_scope",
        c"Allow boundary.enter(token, 'session') to keep a boundary past COMMIT.",
        c"Off by default: a session-scoped boundary survives on a pooled connection.",
        &ALLOW_SESSION_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.max_token_lifetime",
        c"Longest lifetime (exp - iat) a boundary token may have.",
        c"Tokens that live longer are refused; boundary.sign caps its ttl at this value.",
        &MAX_TOKEN_LIFETIME,
        1,
        7 * 24 * 3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"agent_boundary.audit_enter",
        c"Write an audit_log row for every boundary.enter() and boundary.exit().",
        c"Off saves a write (and a WAL flush at commit) per otherwise read-only request; refusals, \
          promote, snapshot, resume and protect are recorded either way.",
        &AUDIT_ENTER,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"agent_boundary.audit_async_commit",
        c"Commit a transaction whose only writes are enter/exit audit rows without waiting for the WAL flush.",
        c"On, a read-only request costs no WAL flush; a crash can lose such rows committed in the last \
          moments before it (up to three times wal_writer_delay). Off, every audit row is as durable as \
          synchronous_commit makes it.",
        &AUDIT_ASYNC_COMMIT,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Userset: it only makes enter() stricter, and clients (adapters, connection options) set it.
    GucRegistry::define_bool_guc(
        c"agent_boundary.enter_requires_transaction_block",
        c"Refuse boundary.enter() and boundary.resume() outside a transaction block (SQLSTATE 25P01).",
        c"Off, they warn: the boundary ends with the statement, as on an autocommit connection.",
        &ENTER_REQUIRES_TRANSACTION_BLOCK,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"agent_boundary.approximate_direct_vector_queries",
        c"Let a query's own ORDER BY distance LIMIT k on a protected table use an approximate \
          (HNSW, IVFFlat) index.",
        c"Off, such indexes are left out of its plan, so it ranks the boundary's rows exactly and \
          returns min(k, visible) rows. On, the index ranks before row level security filters and \
          can return fewer rows, or none, for a small tenant. boundary.vector_search is not affected.",
        &APPROXIMATE_DIRECT_VECTOR_QUERIES,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"agent_boundary.route_to_tenant_shard",
        c"On Citus, send a protected query that does not name its tenant to the tenant's shard only.",
        c"The planner adds the boundary's tenant to queries on tables distributed by their tenant \
          column, so Citus prunes to one shard; off, such a query runs on every shard. Either way \
          the policies decide which rows qualify.",
        &ROUTE_TO_TENANT_SHARD,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.remembered_tokens",
        c"How many entered tokens, registry rows and recent audit rows each backend remembers.",
        c"A backend serving more distinct tokens than this verifies the least recently used ones \
          again. Memory: about 2.8 kB per token of 330 bytes, at most 16 kB (larger verdicts are not \
          remembered), and under 1 kB per registry row and audit row with typical ids. 0 remembers \
          none.",
        &REMEMBERED_TOKENS,
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.audit_enter_interval",
        c"A backend writes at most one enter row per distinct boundary in this interval.",
        c"An enter whose row would repeat one this backend committed less than this long ago (every \
          column but the time equal) writes none; the next row for that boundary counts it in \
          `repeats`. 0 writes a row for every enter.",
        &AUDIT_ENTER_INTERVAL,
        0,
        24 * 3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_enum_guc(
        c"agent_boundary.audit_writer",
        c"Who writes enter and exit audit rows: background (the default) or transaction.",
        c"background: with the library in shared_preload_libraries, a queue in shared memory that a \
          background worker per database writes every audit_flush_interval (a crash loses at most \
          that much; a full queue, or no preloading, falls back to transaction). transaction: the \
          entering transaction writes the row, which a rollback undoes.",
        &AUDIT_WRITER,
        GucContext::Suset,
        GucFlags::default(),
    );
    // A postmaster setting may only be defined while preloading (later is a FATAL error).
    // SAFETY: reads a flag PostgreSQL sets around shared_preload_libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"agent_boundary.audit_queue_size",
            c"Shared memory for queued audit rows, per database (8 databases at most).",
            c"Reserved at server start when the library is preloaded: 8 times this. A row that does not \
          fit is written by the entering transaction.",
            &AUDIT_QUEUE_SIZE,
            64,
            1024 * 1024,
            GucContext::Postmaster,
            GucFlags::UNIT_KB,
        );
    }
    GucRegistry::define_int_guc(
        c"agent_boundary.audit_flush_interval",
        c"How often the background audit writer writes what is queued.",
        c"Also the most a crash can lose; a half-full queue is written at once.",
        &AUDIT_FLUSH_INTERVAL,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.max_job_lifetime",
        c"Longest lifetime of a job token from boundary.snapshot().",
        c"boundary.snapshot caps its ttl at this value and boundary.resume refuses longer-lived tokens.",
        &MAX_JOB_LIFETIME,
        1,
        30 * 24 * 3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.clock_skew",
        c"Tolerance for clock differences when checking exp, nbf and iat.",
        c"",
        &CLOCK_SKEW,
        0,
        300,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.max_audit_rows_per_transaction",
        c"Most rows one transaction may add to boundary.audit_log under agent boundaries.",
        c"An agent cannot flood the append-only trail: past this, what would write a row is refused. \
          Administrative rows (protect, unprotect) do not count.",
        &MAX_AUDIT_ROWS_PER_TRANSACTION,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"agent_boundary.auto_protect_schemas",
        c"Schemas whose new tables with the tenant column are protected automatically.",
        c"Comma-separated schema names; empty turns auto-protection of new tables off. \
          Partitions and children of protected tables are protected whatever this says.",
        &AUTO_PROTECT_SCHEMAS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"agent_boundary.auto_protect_add_columns",
        c"Scope columns added to every new table in auto_protect_schemas that lacks the tenant column: tenant, workspace, user.",
        c"Comma-separated (the tenant is required); empty turns it off. The table's unique keys \
          then lead with these columns, so tenants can hold the same key. Needs the library \
          loaded before the CREATE TABLE (shared_preload_libraries or session_preload_libraries).",
        &AUTO_PROTECT_ADD_COLUMNS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"agent_boundary.auto_protect_shared_tables",
        c"Tables in auto_protect_schemas that every tenant shares (a framework's migration log): never given scope columns or auto-protected.",
        c"Comma-separated table names, schema-qualified or not.",
        &AUTO_PROTECT_SHARED_TABLES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"agent_boundary.tenant_column",
        c"Name of the tenant column for auto-protection and the unprotected_tables() lint.",
        c"",
        &TENANT_COLUMN,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.vector_exact_limit",
        c"vector_search ranks exactly when the boundary holds at most this many candidate rows.",
        c"Above it the HNSW index is scanned (iteratively), with an exact fallback if it comes back short.",
        &VECTOR_EXACT_LIMIT,
        0,
        10_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.vector_ef_search",
        c"hnsw.ef_search for vector_search's scans of an HNSW index shared by all tenants (raised to k).",
        c"The session's own hnsw.* settings are restored after each call.",
        &VECTOR_EF_SEARCH,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"agent_boundary.vector_ef_search_tenant_index",
        c"hnsw.ef_search for vector_search when the tenant has its own index from vector_index(tenant => ...).",
        c"A graph holding only the tenant's rows needs a narrower beam than a shared one.",
        &VECTOR_EF_SEARCH_TENANT_INDEX,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: plain C call with a static NUL-terminated string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(PREFIX.as_ptr()) };
}

pub fn allow_session_scope() -> bool {
    ALLOW_SESSION_SCOPE.get()
}

pub fn max_token_lifetime_secs() -> i64 {
    i64::from(MAX_TOKEN_LIFETIME.get())
}

pub fn audit_enter() -> bool {
    AUDIT_ENTER.get()
}

pub fn audit_async_commit() -> bool {
    AUDIT_ASYNC_COMMIT.get()
}

pub fn audit_writer_background() -> bool {
    AUDIT_WRITER.get() == AuditWriter::Background
}

/// Read once at server start (a postmaster setting).
pub fn audit_queue_bytes() -> usize {
    usize::try_from(AUDIT_QUEUE_SIZE.get()).unwrap_or(64) * 1024
}

pub fn audit_flush_interval_ms() -> i32 {
    AUDIT_FLUSH_INTERVAL.get()
}

pub fn route_to_tenant_shard() -> bool {
    ROUTE_TO_TENANT_SHARD.get()
}

pub fn approximate_direct_vector_queries() -> bool {
    APPROXIMATE_DIRECT_VECTOR_QUERIES.get()
}

pub fn enter_requires_transaction_block() -> bool {
    ENTER_REQUIRES_TRANSACTION_BLOCK.get()
}

pub fn remembered_tokens() -> usize {
    usize::try_from(REMEMBERED_TOKENS.get()).unwrap_or(0)
}

pub fn audit_enter_interval_secs() -> i64 {
    i64::from(AUDIT_ENTER_INTERVAL.get())
}

pub fn max_job_lifetime_secs() -> i64 {
    i64::from(MAX_JOB_LIFETIME.get())
}

pub fn max_audit_rows_per_transaction() -> i64 {
    i64::from(MAX_AUDIT_ROWS_PER_TRANSACTION.get())
}

pub fn clock_skew_secs() -> i64 {
    i64::from(CLOCK_SKEW.get())
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> String {
    setting.get().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn auto_protect_schemas() -> String {
    string_setting(&AUTO_PROTECT_SCHEMAS)
}

pub fn auto_protect_add_columns() -> String {
    string_setting(&AUTO_PROTECT_ADD_COLUMNS)
}

pub fn auto_protect_shared_tables() -> String {
    string_setting(&AUTO_PROTECT_SHARED_TABLES)
}

pub fn tenant_column() -> String {
    string_setting(&TENANT_COLUMN)
}

pub fn vector_exact_limit() -> i32 {
    VECTOR_EXACT_LIMIT.get()
}

pub fn vector_ef_search() -> i32 {
    VECTOR_EF_SEARCH.get()
}

pub fn vector_ef_search_tenant_index() -> i32 {
    VECTOR_EF_SEARCH_TENANT_INDEX.get()
}
