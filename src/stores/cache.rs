//! A response cache whose keys carry everything that changes what a boundary may see: tenant,
//! workspace, role, a hash of the sorted allowed datasource ids, the prompt version, a namespace
//! and a hash of the input. A key built under another boundary is refused; a different
//! datasource set or prompt version builds a different key, so it misses.

use super::{keyspace, lookup_value, upsert_returning_expiry};
use crate::boundary::claims::{validate_id, Boundary};
use crate::boundary::sealed_guc;
use crate::boundary::ttl_seconds;
use crate::error::{BoundaryError, Result, SqlResult};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

const MAX_CACHE_TTL_SECS: i64 = 30 * 24 * 3600;

extension_sql!(
    r#"
CREATE TABLE boundary.cache (
    tenant_id    text NOT NULL,
    workspace_id text NOT NULL,
    key          text NOT NULL,
    value        jsonb NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key),
    CHECK (starts_with(key, boundary.compose_key(VARIADIC ARRAY['agent-cache', tenant_id, workspace_id]) || ':'))
);
COMMENT ON TABLE boundary.cache IS
  'Cached agent results, keyed by boundary.cache_key(); a role or datasource set sees only its own entries.';
-- protect() puts the cache's own rule (stores::row_rule) into every policy: an entry belongs to
-- the boundary whose role and datasources made its key, until it expires.
DO $protect$ BEGIN
    PERFORM boundary.protect('boundary.cache', write_roles => '{owner,admin,member,viewer}');
END $protect$;
CREATE TRIGGER store_functions_only BEFORE INSERT OR UPDATE OR DELETE ON boundary.cache
    FOR EACH ROW EXECUTE FUNCTION boundary.guard_store_write();
GRANT SELECT, INSERT, UPDATE, DELETE ON boundary.cache TO PUBLIC;
"#,
    name = "cache_table",
    requires = [
        policy::protect,
        boundary::tenant_id,
        boundary::workspace_id,
        boundary::role,
        cache_prefix,
        stores::compose_key,
        stores::guard::guard_store_write,
        "policy_sql"
    ],
);

/// What every cache key of the current boundary starts with (tenant, workspace, role,
/// datasource hash). The cache's policy compares keys with it.
#[pg_extern(stable, parallel_safe)]
fn cache_prefix() -> SqlResult<String> {
    Ok(sealed_guc::current()?.cache_prefix().to_string())
}

fn validate_part(what: &str, value: &str) -> Result<()> {
    validate_id(what, value).map_err(BoundaryError::InvalidArgument)
}

/// Refuses a key that was not built by cache_key() under the current boundary.
fn check_key(boundary: &Boundary, key: &str) -> Result<()> {
    let built_here =
        key.len() <= 4 * 1024 && key.starts_with(boundary.cache_prefix()) && keyspace::part_count(key) == 8;
    if built_here {
        Ok(())
    } else {
        Err(BoundaryError::NotAllowed {
            what: "cache key was not built for the current agent boundary".into(),
            hint:
                "Build keys with boundary.cache_key(namespace, input, prompt_version) in the same boundary; \
                   a different tenant, workspace, role or datasource set needs its own key."
                    .into(),
        })
    }
}

/// `agent-cache:<tenant>:<workspace>:<role>:<sha256 of sorted datasources>:<prompt version>:
/// <namespace>:<sha256 of input>`, every part escaped.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn cache_key(namespace: &str, input: &str, prompt_version: &str) -> SqlResult<String> {
    validate_part("namespace", namespace)?;
    validate_part("prompt_version", prompt_version)?;
    let boundary = sealed_guc::current()?;
    Ok(keyspace::cache_key(boundary.cache_prefix(), prompt_version, namespace, input))
}

/// Stores `value` under `key` (from cache_key() in this boundary) for `ttl`; returns the expiry.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION boundary.cache_put(key text, value jsonb, ttl interval DEFAULT '1 hour')
RETURNS timestamptz
VOLATILE PARALLEL UNSAFE STRICT
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'cache_put_wrapper';
"#
)]
fn cache_put(key: &str, value: pgrx::AnyElement, ttl: Interval) -> SqlResult<TimestampWithTimeZone> {
    check_key(&*sealed_guc::current()?, key)?;
    let value = super::bounded_value(&value)?;
    let ttl = ttl_seconds(&ttl, MAX_CACHE_TTL_SECS, "the limit is")?;
    Ok(upsert_returning_expiry(
        "INSERT INTO boundary.cache AS c (key, value, expires_at)
         VALUES ($1, $2, statement_timestamp() + make_interval(secs => $3))
         ON CONFLICT (tenant_id, key) DO UPDATE
            SET value = excluded.value, expires_at = excluded.expires_at, created_at = excluded.created_at
         RETURNING expires_at",
        &[key.into(), value.into(), (ttl as f64).into()],
    )?)
}

/// The live value under `key`, or NULL on a miss. A key built under another boundary is refused.
/// (Returns the stored jsonb datum as is: see `lookup_value`.)
#[pg_extern(
    stable,
    parallel_safe,
    sql = r#"
CREATE FUNCTION boundary.cache_get(key text) RETURNS jsonb
STRICT STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'cache_get_wrapper';
"#
)]
fn cache_get(key: &str) -> SqlResult<Option<pgrx::AnyElement>> {
    check_key(&*sealed_guc::current()?, key)?;
    Ok(lookup_value("SELECT value FROM boundary.cache WHERE key = $1", key.to_string())?)
}
