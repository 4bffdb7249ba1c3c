//! Agent memory in two separate stores, both protected by generated row level security:
//! durable memory (`boundary.memories`: approved for reuse, per user or shared across the
//! workspace) and run state (`boundary.run_state`: one run's scratchpad, expiring). Nothing
//! moves from run state to memory except through `boundary.promote()`.
//!
//! The functions run as the caller, so every read and write passes the policies; names and
//! values are bound as parameters, and keys are built by `keyspace` alone.

use super::{bounded_value, lookup_value, store_write, upsert_returning_expiry, validate_name};
use crate::boundary::claims::{truncate_for_message, Boundary, MemoryScope};
use crate::boundary::{sealed_guc, ttl_seconds};
use crate::error::{BoundaryError, Result, SqlResult};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::rc::Rc;

/// Longest run-state lifetime.
const MAX_RUN_STATE_TTL_SECS: i64 = 7 * 24 * 3600;

extension_sql!(
    r#"
CREATE TABLE boundary.memories (
    tenant_id    text NOT NULL,
    workspace_id text NOT NULL,
    scope        text NOT NULL CHECK (scope IN ('user', 'workspace')),
    namespace    text NOT NULL,
    name         text NOT NULL,
    key          text NOT NULL,
    value        jsonb NOT NULL,
    created_by   text NOT NULL,
    updated_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    promoted_from_run text,
    PRIMARY KEY (tenant_id, key),
    -- The key is the namespace plus the name, and the namespace lies inside tenant and workspace,
    -- so no row can claim a key another user or workspace owns.
    CHECK (key = namespace || ':' || boundary.key_part(name)),
    CHECK (starts_with(namespace, boundary.compose_key(VARIADIC ARRAY['agent-memory', tenant_id, workspace_id]) || ':')),
    CHECK (scope = 'user' OR namespace = boundary.compose_key(VARIADIC ARRAY['agent-memory', tenant_id, workspace_id, 'workspace']))
);
COMMENT ON TABLE boundary.memories IS
  'Durable agent memory (approved for reuse). Per user by default, or shared across the workspace.';
SELECT pg_catalog.pg_extension_config_dump('boundary.memories', '');

CREATE TABLE boundary.run_state (
    tenant_id    text NOT NULL,
    workspace_id text NOT NULL,
    user_id      text NOT NULL,
    run_id       text NOT NULL,
    name         text NOT NULL,
    value        jsonb NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workspace_id, user_id, run_id, name)
);
COMMENT ON TABLE boundary.run_state IS
  'One run''s scratchpad: visible only to that run, invisible once expired, never durable memory unless promoted.';

DO $protect$ BEGIN
    PERFORM boundary.protect('boundary.memories', user_column => '',
                             write_roles => '{owner,admin,member,viewer}');
    PERFORM boundary.protect('boundary.run_state', write_roles => '{owner,admin,member,viewer}');
END $protect$;
-- On top of tenant and workspace, protect() puts the stores' own rules (stores::row_rule) into
-- every policy: user memory belongs to its owner; run state to its run, until it expires.
ALTER TABLE boundary.run_state ALTER COLUMN run_id SET DEFAULT boundary.run_id();
-- Readable by plain SQL (row level security decides what); changed only by the functions.
CREATE TRIGGER store_functions_only BEFORE INSERT OR UPDATE OR DELETE ON boundary.memories
    FOR EACH ROW EXECUTE FUNCTION boundary.guard_store_write();
CREATE TRIGGER store_functions_only BEFORE INSERT OR UPDATE OR DELETE ON boundary.run_state
    FOR EACH ROW EXECUTE FUNCTION boundary.guard_store_write();
GRANT SELECT, INSERT, UPDATE, DELETE ON boundary.memories, boundary.run_state TO PUBLIC;
"#,
    name = "memory_tables",
    requires = [
        policy::protect,
        boundary::tenant_id,
        boundary::workspace_id,
        boundary::user_id,
        boundary::role,
        boundary::memory_namespace,
        boundary::run_id,
        stores::compose_key,
        stores::key_part,
        stores::guard::guard_store_write,
        "policy_sql"
    ],
);

fn scope(text: &str) -> Result<MemoryScope> {
    MemoryScope::parse(text).map_err(BoundaryError::InvalidArgument)
}

/// The key of memory `name` in `scope` under the current boundary, after checking both.
fn key_of(name: &str, scope: &str) -> Result<String> {
    validate_name("name", name)?;
    Ok(current()?.memory_key(name, self::scope(scope)?))
}

fn run_id(boundary: &Boundary) -> Result<String> {
    boundary.run_id.clone().ok_or_else(|| BoundaryError::NotAllowed {
        what: "run state needs a run: the agent boundary has no run_id".into(),
        hint: "Put a run_id claim in the boundary token.".into(),
    })
}

fn current() -> Result<Rc<Boundary>> {
    sealed_guc::current()
}

/// The canonical key of memory `name`: `agent-memory:<tenant>:<workspace>:user:<user>:<name>`
/// (or `:ns:<namespace>:` when the token names one, or `:workspace:` for shared memory), every
/// part escaped, so app-side stores (Redis, ...) can use the same keys.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn memory_key(name: &str, scope: default!(&str, "'user'")) -> SqlResult<String> {
    Ok(key_of(name, scope)?)
}

/// Creates or replaces durable memory `name`; returns its key. (`value` is jsonb; it arrives as
/// a raw datum so its size is checked before Rust reads it.)
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION boundary.memory_set(name text, value jsonb, scope text DEFAULT 'user') RETURNS text
VOLATILE PARALLEL UNSAFE STRICT
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'memory_set_wrapper';
"#
)]
fn memory_set(name: &str, value: pgrx::AnyElement, scope: &str) -> SqlResult<String> {
    validate_name("name", name)?;
    let value = bounded_value(&value)?;
    let scope = self::scope(scope)?;
    let boundary = current()?;
    let key = boundary.memory_key(name, scope);
    store_write(|| {
        Spi::run_with_args(
            "INSERT INTO boundary.memories AS m (scope, namespace, name, key, value, created_by, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (tenant_id, key) DO UPDATE
            SET value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            &[
                scope.as_str().into(),
                boundary.memory_namespace_for(scope).into(),
                name.into(),
                key.clone().into(),
                value.into(),
                boundary.user_id.clone().into(),
            ],
        )
    })?;
    Ok(key)
}

/// Durable memory `name`, or NULL. (Returns the stored jsonb datum as is: see `lookup_value`.)
#[pg_extern(
    stable,
    parallel_safe,
    sql = r#"
CREATE FUNCTION boundary.memory_get(name text, scope text DEFAULT 'user') RETURNS jsonb
STRICT STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'memory_get_wrapper';
"#
)]
fn memory_get(name: &str, scope: &str) -> SqlResult<Option<pgrx::AnyElement>> {
    let key = key_of(name, scope)?;
    Ok(lookup_value("SELECT value FROM boundary.memories WHERE key = $1", key)?)
}

/// Deletes durable memory `name`; true if there was one.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn memory_delete(name: &str, scope: default!(&str, "'user'")) -> SqlResult<bool> {
    let key = key_of(name, scope)?;
    Ok(store_write(|| {
        Spi::get_one_with_args::<i64>(
            "WITH d AS (DELETE FROM boundary.memories WHERE key = $1 RETURNING 1) SELECT count(*) FROM d",
            &[key.into()],
        )
    })?
    .unwrap_or(0)
        > 0)
}

/// The durable memory this boundary can see (its own and the workspace's), names starting with
/// `prefix`, ordered by scope and name.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from this signature
fn memory_list(
    prefix: default!(&str, "''"),
) -> std::result::Result<
    TableIterator<
        'static,
        (
            name!(name, String),
            name!(scope, String),
            name!(value, JsonB),
            name!(updated_at, TimestampWithTimeZone),
        ),
    >,
    ErrorReport,
> {
    let list = || -> Result<Vec<_>> {
        if !prefix.is_empty() {
            validate_name("prefix", prefix)?;
        }
        current()?;
        Spi::connect(|client| {
            client
                .select(
                    "SELECT name, scope, value, updated_at FROM boundary.memories
                      WHERE starts_with(name, $1) ORDER BY scope, name",
                    None,
                    &[prefix.into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<JsonB>(3)?.unwrap_or(JsonB(serde_json::Value::Null)),
                        row.get::<TimestampWithTimeZone>(4)?
                            .ok_or_else(|| BoundaryError::Internal("updated_at is NULL".into()))?,
                    ))
                })
                .collect()
        })
    };
    Ok(TableIterator::new(list()?))
}

/// Sets run-state `name` for the boundary's run; it expires after `ttl`. Returns the expiry.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION boundary.run_state_set(name text, value jsonb, ttl interval DEFAULT '1 hour')
RETURNS timestamptz
VOLATILE PARALLEL UNSAFE STRICT
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'run_state_set_wrapper';
"#
)]
fn run_state_set(name: &str, value: pgrx::AnyElement, ttl: Interval) -> SqlResult<TimestampWithTimeZone> {
    validate_name("name", name)?;
    let value = bounded_value(&value)?;
    let ttl = ttl_seconds(&ttl, MAX_RUN_STATE_TTL_SECS, "the limit is")?;
    run_id(&*current()?)?;
    Ok(upsert_returning_expiry(
        "INSERT INTO boundary.run_state AS r (name, value, expires_at)
         VALUES ($1, $2, statement_timestamp() + make_interval(secs => $3))
         ON CONFLICT (tenant_id, workspace_id, user_id, run_id, name) DO UPDATE
            SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at
         RETURNING expires_at",
        &[name.into(), value.into(), (ttl as f64).into()],
    )?)
}

/// Run-state `name` of the boundary's run, or NULL (also once it has expired).
#[pg_extern(
    stable,
    parallel_safe,
    sql = r#"
CREATE FUNCTION boundary.run_state_get(name text) RETURNS jsonb
STRICT STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'run_state_get_wrapper';
"#
)]
fn run_state_get(name: &str) -> SqlResult<Option<pgrx::AnyElement>> {
    validate_name("name", name)?;
    run_id(&*current()?)?;
    Ok(lookup_value("SELECT value FROM boundary.run_state WHERE name = $1", name.to_string())?)
}

/// Copies run-state `name` of the boundary's run into durable memory, recording the run it
/// came from and who promoted it. The only way run state becomes memory. Returns the key.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn promote(name: &str, scope: default!(&str, "'user'")) -> SqlResult<String> {
    validate_name("name", name)?;
    let scope = self::scope(scope)?;
    let boundary = current()?;
    let run = run_id(&boundary)?;
    let key = boundary.memory_key(name, scope);
    // Read, then written by value: one INSERT ... SELECT would be Citus' INSERT ... SELECT
    // between shards, which it runs by COPY, refused on shards under row level security.
    let Some(value) = lookup_value("SELECT value FROM boundary.run_state WHERE name = $1", name.to_string())?
    else {
        return Err(BoundaryError::UndefinedObject(format!(
            "run {} has no live run-state entry {:?} to promote",
            truncate_for_message(&run),
            truncate_for_message(name)
        ))
        .into());
    };
    store_write(|| {
        Spi::run_with_args(
            "INSERT INTO boundary.memories AS m
                    (scope, namespace, name, key, value, created_by, updated_by, promoted_from_run)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
             ON CONFLICT (tenant_id, key) DO UPDATE
                SET value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at,
                    promoted_from_run = excluded.promoted_from_run",
            &[
                scope.as_str().into(),
                boundary.memory_namespace_for(scope).into(),
                name.into(),
                key.clone().into(),
                // SAFETY: a jsonb datum lookup_value copied into the current memory context.
                unsafe { pgrx::datum::DatumWithOid::new(value.datum(), value.oid()) },
                boundary.user_id.clone().into(),
                run.clone().into(),
            ],
        )
    })?;
    let keys = vec![key.clone()];
    crate::audit::record(
        "promote",
        Some(&boundary),
        crate::audit::Event { memory_keys: keys, ..Default::default() },
    )?;
    Ok(key)
}

/// Deletes expired run state and cache entries, all tenants at once; returns how many. Safe to
/// schedule (e.g. with pg_cron); expired rows are already invisible before it runs.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn purge_expired() -> SqlResult<i64> {
    store_write(|| {
        Spi::get_one::<i64>(
        "WITH r AS (DELETE FROM boundary.run_state WHERE expires_at <= statement_timestamp() RETURNING 1),
              c AS (DELETE FROM boundary.cache WHERE expires_at <= statement_timestamp() RETURNING 1)
         SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM c)",
    )
    })?
    .ok_or_else(|| BoundaryError::Internal("no count".into()).into())
}
