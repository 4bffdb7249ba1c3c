//! Signing keys: where they live (`boundary.signing_keys`, readable by no ordinary role), how key
//! holders manage them, and `boundary.sign()` for key holders and tests.
//!
//! Every function here is SECURITY DEFINER with a pinned search_path, EXECUTE revoked from
//! PUBLIC in the finalize script, and uses only schema-qualified names and bound parameters.

use super::claims::Requested;
use super::sealed_guc::now_unix;
use super::token::{self, KeyMaterial, Verifier};
use super::verdicts::{remembered, Memo};
use crate::error::{BoundaryError, Result, SqlResult};
use crate::gucs;
use base64::Engine;
use jsonwebtoken::Algorithm;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

extension_sql!(
    r#"
CREATE TABLE boundary.signing_keys (
    kid         text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9._-]{1,64}$'),
    alg         text NOT NULL CHECK (alg IN ('HS256', 'HS384', 'HS512', 'EdDSA', 'ES256', 'RS256')),
    verify_key  bytea NOT NULL,
    signing_key bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    CHECK (signing_key IS NULL OR alg NOT LIKE 'HS%')
);
COMMENT ON TABLE boundary.signing_keys IS
  'Keys that verify boundary tokens. verify_key: the HMAC secret, or a public key (PEM). '
  'signing_key: a private key (PEM), only when the database itself must sign. '
  'No ordinary role can read this table.';
SELECT pg_catalog.pg_extension_config_dump('boundary.signing_keys', '');
"#,
    name = "signing_keys_table",
);

/// A key row as read from `boundary.signing_keys`.
pub struct StoredKey {
    pub kid: String,
    pub alg: Algorithm,
    pub verify_key: Vec<u8>,
    pub signing_key: Option<Vec<u8>>,
    /// The parsed verifying key, made on first use (PEM parsing is not free).
    verifier: OnceCell<Verifier>,
}

impl StoredKey {
    pub fn material(&self) -> KeyMaterial<'_> {
        KeyMaterial { alg: self.alg, verify_key: &self.verify_key, signing_key: self.signing_key.as_deref() }
    }

    pub fn verifier(&self) -> std::result::Result<&Verifier, String> {
        if let Some(verifier) = self.verifier.get() {
            return Ok(verifier);
        }
        let verifier = self.material().verifier()?;
        Ok(self.verifier.get_or_init(|| verifier))
    }
}

/// Active keys a backend remembers (a deployment has a few).
const REMEMBERED_KEYS: usize = 64;

thread_local! {
    static ACTIVE_KEYS: RefCell<Memo<Rc<StoredKey>>> = RefCell::new(Memo::default());
}

fn read_key(row: &pgrx::spi::SpiHeapTupleData) -> Result<StoredKey> {
    let kid: String = row.get(1)?.unwrap_or_default();
    let alg: String = row.get(2)?.unwrap_or_default();
    Ok(StoredKey {
        alg: token::parse_algorithm(&alg).map_err(BoundaryError::Internal)?,
        kid,
        verify_key: row.get(3)?.unwrap_or_default(),
        signing_key: row.get(4)?,
        verifier: OnceCell::new(),
    })
}

/// The active (not retired) key with this id, if any; remembered until the keys change.
/// Caller must run as the extension owner.
pub fn active_key(kid: &str) -> Result<Option<Rc<StoredKey>>> {
    remembered(&ACTIVE_KEYS, kid, REMEMBERED_KEYS, || read_active_key(kid))
}

fn read_active_key(kid: &str) -> Result<Option<StoredKey>> {
    crate::pg::spi_plans::read_latest(
        "SELECT kid, alg, verify_key, signing_key FROM boundary.signing_keys
          WHERE kid = $1 AND retired_at IS NULL",
        &[kid.into()],
        read_key,
    )
}

/// The active key named by a token's `kid` header: (kid, key), or the reason it is refused.
/// Caller must run as the extension owner.
pub fn key_for_token(token: &str) -> Result<(String, Rc<StoredKey>)> {
    let refused = BoundaryError::TokenRefused;
    let (kid, _alg) = token::peek_header(token).map_err(refused)?;
    let key = active_key(&kid)?
        .ok_or_else(|| refused(format!("signed with an unknown or retired key id \"{kid}\"")))?;
    Ok((kid, key))
}

/// The newest active key the database can sign with.
fn newest_signing_key() -> Result<Option<StoredKey>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT kid, alg, verify_key, signing_key FROM boundary.signing_keys
              WHERE retired_at IS NULL AND (alg LIKE 'HS%' OR signing_key IS NOT NULL)
              ORDER BY created_at DESC, kid DESC",
            Some(1),
            &[],
        )?;
        rows.into_iter().next().map(|row| read_key(&row)).transpose()
    })
}

fn key_exists(kid: &str) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM boundary.signing_keys WHERE kid = $1)",
        &[kid.into()],
    )?
    .unwrap_or(false))
}

fn insert_key(kid: &str, alg: &str, verify_key: &[u8], signing_key: Option<&[u8]>) -> Result<()> {
    token::validate_kid(kid).map_err(BoundaryError::InvalidArgument)?;
    let algorithm = token::parse_algorithm(alg).map_err(BoundaryError::InvalidArgument)?;
    KeyMaterial { alg: algorithm, verify_key, signing_key }
        .check()
        .map_err(BoundaryError::InvalidArgument)?;
    if key_exists(kid)? {
        return Err(BoundaryError::DuplicateObject(format!(
            "signing key \"{kid}\" already exists; key ids are never reused, add the new key under a new id"
        )));
    }
    Spi::run_with_args(
        "INSERT INTO boundary.signing_keys (kid, alg, verify_key, signing_key) VALUES ($1, $2, $3, $4)",
        &[kid.into(), alg.into(), verify_key.into(), signing_key.into()],
    )?;
    Ok(())
}

/// Registers a key that verifies boundary tokens: an HMAC secret (HS256/384/512, at least 32
/// bytes) or a public key in PEM (EdDSA, ES256, RS256), optionally with its private key when
/// the database itself must sign.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn add_signing_key(
    kid: &str,
    alg: &str,
    key: &[u8],
    signing_key: default!(Option<&[u8]>, "NULL"),
) -> SqlResult<()> {
    Ok(insert_key(kid, alg, key, signing_key)?)
}

/// Generates a random HMAC secret inside the database, stores it under `kid`, and returns it
/// base64-encoded once, for the application that will sign tokens with it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn generate_signing_key(kid: &str, alg: default!(&str, "'HS256'")) -> SqlResult<String> {
    let length = match alg {
        "HS256" => 32,
        "HS384" => 48,
        "HS512" => 64,
        _ => {
            return Err(BoundaryError::InvalidArgument(format!(
                "generate_signing_key makes HMAC keys (HS256, HS384, HS512), not {:?}; \
                 for {alg} create the key pair yourself and pass the public key to add_signing_key",
                super::claims::truncate_for_message(alg)
            ))
            .into())
        }
    };
    let mut secret = vec![0u8; length];
    getrandom::fill(&mut secret).map_err(|e| BoundaryError::Internal(e.to_string()))?;
    insert_key(kid, alg, &secret, None)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(secret))
}

/// Retires a key: tokens signed with it are refused from now on. Idempotent.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn retire_signing_key(kid: &str) -> SqlResult<()> {
    if !key_exists(kid)? {
        return Err(BoundaryError::UndefinedObject(format!(
            "signing key \"{}\" does not exist",
            super::claims::truncate_for_message(kid)
        ))
        .into());
    }
    Spi::run_with_args(
        "UPDATE boundary.signing_keys SET retired_at = now() WHERE kid = $1 AND retired_at IS NULL",
        &[kid.into()],
    )
    .map_err(BoundaryError::from)?;
    Ok(())
}

/// Lists signing keys without their material.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from this signature
fn list_signing_keys() -> std::result::Result<
    TableIterator<
        'static,
        (
            name!(kid, String),
            name!(alg, String),
            name!(can_sign, bool),
            name!(created_at, pgrx::datum::TimestampWithTimeZone),
            name!(retired_at, Option<pgrx::datum::TimestampWithTimeZone>),
        ),
    >,
    ErrorReport,
> {
    let rows = Spi::connect(|client| -> Result<Vec<_>> {
        let table = client.select(
            "SELECT kid, alg, (alg LIKE 'HS%' OR signing_key IS NOT NULL), created_at, retired_at
               FROM boundary.signing_keys ORDER BY created_at, kid",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in table {
            out.push((
                row.get(1)?.unwrap_or_default(),
                row.get(2)?.unwrap_or_default(),
                row.get(3)?.unwrap_or(false),
                row.get(4)?.ok_or_else(|| BoundaryError::Internal("created_at is NULL".into()))?,
                row.get(5)?,
            ));
        }
        Ok(out)
    })?;
    Ok(TableIterator::new(rows))
}

/// Signs boundary claims into a token `boundary.enter()` accepts. For key holders (superuser or
/// roles granted EXECUTE) and tests; applications usually sign with their own JWT library.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign(
    claims: JsonB,
    ttl: default!(pgrx::datum::Interval, "'5 minutes'"),
    kid: default!(Option<&str>, "NULL"),
) -> SqlResult<String> {
    let mut claims = claims.0;
    let object = claims
        .as_object_mut()
        .ok_or_else(|| BoundaryError::InvalidArgument("claims must be a JSON object".into()))?;
    for reserved in ["iat", "exp", "nbf", "aud"] {
        if object.contains_key(reserved) {
            return Err(BoundaryError::InvalidArgument(format!(
                "sign() sets iat, exp and aud itself (from ttl); remove the {reserved} claim"
            ))
            .into());
        }
    }
    let now = now_unix();
    object.insert("iat".into(), now.into());
    let ttl = super::ttl_seconds(
        &ttl,
        gucs::max_token_lifetime_secs(),
        "agent_boundary.max_token_lifetime allows",
    )?;
    object.insert("exp".into(), (now + ttl).into());
    object.insert("aud".into(), token::AUDIENCE.into());
    Requested::from_claims(&claims).map_err(BoundaryError::InvalidArgument)?;

    Ok(sign_claims(&claims, kid)?)
}

/// Signs complete claims with `kid`'s key, or the newest active key that can sign. Caller must
/// run as the extension owner.
pub(crate) fn sign_claims(claims: &serde_json::Value, kid: Option<&str>) -> Result<String> {
    let key = match kid {
        Some(kid) => active_key(kid)?.ok_or_else(|| {
            BoundaryError::UndefinedObject(format!(
                "no active signing key \"{}\"",
                super::claims::truncate_for_message(kid)
            ))
        })?,
        None => newest_signing_key()?.map(Rc::new).ok_or_else(|| {
            BoundaryError::UndefinedObject(
                "no active key can sign; create one with boundary.generate_signing_key(kid)".into(),
            )
        })?,
    };
    let encoding = key.material().encoding_key().map_err(BoundaryError::Internal)?.ok_or_else(|| {
        BoundaryError::InvalidArgument(format!(
            "signing key \"{}\" holds only a public key; the database cannot sign with it",
            key.kid
        ))
    })?;
    token::sign(claims, &key.kid, key.alg, &encoding).map_err(BoundaryError::Internal)
}
