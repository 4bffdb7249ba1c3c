//! Signed tokens, in plain Rust: verifying what trusted code hands to `boundary.enter`, signing
//! for `boundary.sign`, and sealing the effective boundary into the GUC value.
//!
//! All cryptography is the `jsonwebtoken` crate's (RustCrypto backend); nothing is hand-rolled.

use super::claims::Boundary;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

/// Larger inputs are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Every boundary token is for this audience; a token naming another audience is refused.
pub const AUDIENCE: &str = "agent_boundary";
/// Job tokens (`boundary.snapshot`) carry their own audience, so neither kind of token can be
/// used as the other.
pub const JOB_AUDIENCE: &str = "agent_boundary.job";
/// Algorithms a signing key may use.
pub const ALGORITHMS: &[&str] = &["HS256", "HS384", "HS512", "EdDSA", "ES256", "RS256"];
/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size; we ask 32 for all).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Key id in the header of sealed values, so they are never mistaken for app tokens.
const SEAL_KID: &str = "agent_boundary.seal";
/// Key id of values sealed for every node of a Citus cluster (`cluster_seal`).
pub const CLUSTER_SEAL_KID: &str = "agent_boundary.cluster_seal";

pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    if !ALGORITHMS.contains(&name) {
        return Err(format!(
            "alg must be one of {}, not {:?}",
            ALGORITHMS.join(", "),
            super::claims::truncate_for_message(name)
        ));
    }
    name.parse::<Algorithm>().map_err(|_| format!("unsupported alg {name:?}"))
}

pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Key ids: 1..=64 of `[A-Za-z0-9._-]`, so they are safe to print in any message.
pub fn validate_kid(kid: &str) -> Result<(), String> {
    let ok = !kid.is_empty()
        && kid.len() <= 64
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("key id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into())
    }
}

/// Key material as stored in `boundary.signing_keys`.
pub struct KeyMaterial<'a> {
    pub alg: Algorithm,
    /// HMAC secret, or the public key as PEM.
    pub verify_key: &'a [u8],
    /// The private key as PEM (asymmetric keys the database itself signs with); None for HMAC.
    pub signing_key: Option<&'a [u8]>,
}

/// A key ready to verify signatures: parsed once, then kept with the key (see `keys::active_key`).
pub struct Verifier {
    pub alg: Algorithm,
    decoding: DecodingKey,
}

impl KeyMaterial<'_> {
    pub fn verifier(&self) -> Result<Verifier, String> {
        Ok(Verifier { alg: self.alg, decoding: self.decoding_key()? })
    }

    fn decoding_key(&self) -> Result<DecodingKey, String> {
        let bad = |e: jsonwebtoken::errors::Error| format!("the {:?} key cannot be read: {e}", self.alg);
        match self.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                Ok(DecodingKey::from_secret(self.verify_key))
            }
            Algorithm::EdDSA => DecodingKey::from_ed_pem(self.verify_key).map_err(bad),
            Algorithm::ES256 => DecodingKey::from_ec_pem(self.verify_key).map_err(bad),
            Algorithm::RS256 => DecodingKey::from_rsa_pem(self.verify_key).map_err(bad),
            other => Err(format!("unsupported alg {other:?}")),
        }
    }

    pub fn encoding_key(&self) -> Result<Option<EncodingKey>, String> {
        let bad =
            |e: jsonwebtoken::errors::Error| format!("the {:?} private key cannot be read: {e}", self.alg);
        if is_hmac(self.alg) {
            return Ok(Some(EncodingKey::from_secret(self.verify_key)));
        }
        let Some(pem) = self.signing_key else { return Ok(None) };
        match self.alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).map(Some).map_err(bad),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).map(Some).map_err(bad),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).map(Some).map_err(bad),
            other => Err(format!("unsupported alg {other:?}")),
        }
    }

    /// Checks a key before it is stored: long enough, parseable, and (when a private key is
    /// given) matching its public half.
    pub fn check(&self) -> Result<(), String> {
        if is_hmac(self.alg) {
            if self.signing_key.is_some() {
                return Err("an HMAC key is one secret; pass it as key and leave signing_key NULL".into());
            }
            if self.verify_key.len() < MIN_HMAC_SECRET_BYTES {
                return Err(format!(
                    "an HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes, got {}",
                    self.verify_key.len()
                ));
            }
            return Ok(());
        }
        let decoding = self.decoding_key()?;
        if let Some(encoding) = self.encoding_key()? {
            let probe = serde_json::json!({"probe": true, "exp": 4_000_000_000u64});
            let token = jsonwebtoken::encode(&Header::new(self.alg), &probe, &encoding)
                .map_err(|e| format!("the private key cannot sign: {e}"))?;
            let mut validation = Validation::new(self.alg);
            validation.validate_exp = false;
            jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
                .map_err(|_| "the private key does not match the public key".to_string())?;
        }
        Ok(())
    }
}

/// Reads the header of an untrusted token: which key (kid) and which algorithm it claims.
pub fn peek_header(token: &str) -> Result<(String, Algorithm), String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("token is {} bytes; the limit is {MAX_TOKEN_BYTES}", token.len()));
    }
    if token.is_empty() {
        return Err("token is empty".into());
    }
    if token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err("token is malformed: a JWT has three dot-separated parts".into());
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| "token is malformed: unreadable header".to_string())?;
    let kid = header.kid.ok_or("token header has no kid (key id)")?;
    validate_kid(&kid).map_err(|e| format!("token header kid is invalid: {e}"))?;
    if kid == SEAL_KID || kid == CLUSTER_SEAL_KID {
        return Err("a sealed boundary value is not a token".into());
    }
    Ok((kid, header.alg))
}

/// Clock and lifetime rules for verification.
#[derive(Clone, Copy, Debug)]
pub struct TimePolicy {
    pub now: i64,
    pub skew: i64,
    pub max_lifetime: i64,
}

/// Why a token was refused. Expiry has its own kind because callers treat it differently: a
/// job whose token expired is refused like a job whose permissions changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Invalid(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Expired => f.write_str("token has expired"),
            Refusal::Invalid(why) => f.write_str(why),
        }
    }
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Refusal::Invalid(why)
    }
}

impl From<Refusal> for String {
    fn from(refusal: Refusal) -> Self {
        refusal.to_string()
    }
}

fn describe(kind: &ErrorKind) -> Refusal {
    if matches!(kind, ErrorKind::ExpiredSignature) {
        return Refusal::Expired;
    }
    Refusal::Invalid(match kind {
        ErrorKind::InvalidSignature => {
            "signature does not verify (tampered, or signed with another key)".into()
        }
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf is in the future)".into(),
        ErrorKind::InvalidAlgorithm => "token alg does not match the alg of its key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("claim {c} is missing"),
        ErrorKind::InvalidClaimFormat(c) => format!("claim {c} has the wrong type"),
        ErrorKind::Json(_) => "token is malformed: the payload is not a JSON object".into(),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => "token is malformed".into(),
        other => format!("token cannot be verified ({other:?})"),
    })
}

/// The time claims of a verified token, checked on every use (a token remembered as verified
/// still expires).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenTimes {
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl TokenTimes {
    pub fn from_claims(claims: &Value) -> Result<TokenTimes, String> {
        let optional = |name: &str| match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or(format!("claim {name} must be an integer")),
        };
        Ok(TokenTimes {
            exp: claims.get("exp").and_then(Value::as_i64).ok_or("claim exp must be an integer")?,
            nbf: optional("nbf")?,
            iat: optional("iat")?,
        })
    }

    /// Every comparison is made without overflow: a saturated sum errs towards "expired" and
    /// "in the future", and a lifetime that does not fit an i64 is refused.
    pub fn check(&self, time: TimePolicy) -> Result<(), Refusal> {
        if expired(self.exp, time.skew, time.now) {
            return Err(Refusal::Expired);
        }
        let latest_start = time.now.saturating_add(time.skew.max(0));
        if self.nbf.is_some_and(|nbf| nbf > latest_start) {
            return Err("token is not valid yet (nbf is in the future)".to_string().into());
        }
        if self.iat.is_some_and(|iat| iat > latest_start) {
            return Err("token is issued in the future (iat)".to_string().into());
        }
        let lifetime = self
            .exp
            .checked_sub(self.iat.unwrap_or(time.now))
            .ok_or_else(|| Refusal::Invalid("token lifetime (exp - iat) is out of range".to_string()))?;
        if lifetime > time.max_lifetime {
            return Err(Refusal::Invalid(format!(
                "token lifetime is {lifetime}s; agent_boundary.max_token_lifetime allows {}s",
                time.max_lifetime
            )));
        }
        Ok(())
    }
}

/// Whether a boundary that ends at `exp` has expired at `now`, allowing `skew`; never wraps.
pub fn expired(exp: i64, skew: i64, now: i64) -> bool {
    exp.saturating_add(skew.max(0)) < now
}

/// Reads a verified token's payload: base64url JSON whose top level is an object, refusing any
/// object that names a member twice (`{"tenant_id": "a", ..., "tenant_id": "b"}`): JSON parsers
/// disagree on which one wins, and serde_json keeps the last. One pass builds the claims and
/// checks every object, nested ones included.
fn parse_claims(payload: &str) -> Result<Value, Refusal> {
    use base64::Engine;
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    /// A JSON value, as serde_json's own `Value` reads it, except that a repeated member name
    /// is an error.
    struct Unique;
    impl<'de> DeserializeSeed<'de> for Unique {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = serde_json::Map::new();
            while let Some(name) = map.next_key::<String>()? {
                if object.contains_key(&name) {
                    return Err(A::Error::custom(format!("claim {name:?} appears more than once")));
                }
                let value = map.next_value_seed(Unique)?;
                object.insert(name, value);
            }
            Ok(Value::Object(object))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Unique)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
            Ok(Value::Bool(flag))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_str<E>(self, text: &str) -> Result<Value, E> {
            Ok(Value::String(text.to_owned()))
        }
        fn visit_string<E>(self, text: String) -> Result<Value, E> {
            Ok(Value::String(text))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    }

    let malformed = || Refusal::Invalid("token is malformed".into());
    let not_an_object = || Refusal::Invalid("token is malformed: the payload is not a JSON object".into());
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    let mut deserializer = serde_json::Deserializer::from_slice(&json);
    let claims = Unique.deserialize(&mut deserializer).and_then(|claims| deserializer.end().map(|()| claims));
    match claims {
        Ok(claims @ Value::Object(_)) => Ok(claims),
        Ok(_) => Err(not_an_object()),
        // A repeated member (the only error Unique raises itself); serde_json appends " at line
        // L column C", and the claim is what matters.
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            let why = e.to_string();
            let why = why.split(" at line ").next().unwrap_or(&why);
            Err(Refusal::Invalid(format!("token is malformed: {why}")))
        }
        Err(_) => Err(not_an_object()),
    }
}

/// Refuses a token whose `aud` does not name `audience` (a string, or an array holding it), or
/// that has none when `required`.
fn check_audience(claims: &Value, audience: &str, required: bool) -> Result<(), Refusal> {
    let names_it = match claims.get("aud") {
        None | Some(Value::Null) => !required,
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
        Some(_) => false,
    };
    if names_it {
        Ok(())
    } else {
        Err(Refusal::Invalid(format!("token audience is not {audience:?}")))
    }
}

/// Whether an HMAC token's signature verifies with the base64 text of `secret` instead of the
/// secret itself: the application signed with `generate_signing_key`'s output undecoded.
pub fn signed_with_encoded_secret(token: &str, alg: Algorithm, secret: &[u8]) -> bool {
    use base64::Engine;
    let Some((message, signature)) = token.rsplit_once('.') else { return false };
    is_hmac(alg)
        && [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE].iter().any(
            |engine| {
                let text = engine.encode(secret);
                jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    &DecodingKey::from_secret(text.as_bytes()),
                    alg,
                )
                .unwrap_or(false)
            },
        )
}

/// Verifies a boundary token: signature, audience (if present), exp, nbf, iat and lifetime;
/// returns the claims.
pub fn verify(token: &str, key: &Verifier, time: TimePolicy) -> Result<Value, Refusal> {
    verify_for(token, key, time, AUDIENCE, false)
}

/// Verifies a job token from `boundary.snapshot`: as [`verify`], and its audience must be
/// [`JOB_AUDIENCE`].
pub fn verify_job(token: &str, key: &Verifier, time: TimePolicy) -> Result<Value, Refusal> {
    verify_for(token, key, time, JOB_AUDIENCE, true)
}

fn verify_for(
    token: &str,
    key: &Verifier,
    time: TimePolicy,
    audience: &str,
    require_audience: bool,
) -> Result<Value, Refusal> {
    let malformed = || Refusal::Invalid("token is malformed".into());
    let (message, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (_, payload) = message.split_once('.').ok_or_else(malformed)?;
    if payload.contains('.') {
        return Err(malformed());
    }
    // The crate's own checks, in its order: the header names the key's algorithm, then the
    // signature; only then are the claims read.
    let header = jsonwebtoken::decode_header(token).map_err(|e| describe(e.kind()))?;
    if header.alg != key.alg {
        return Err(describe(&ErrorKind::InvalidAlgorithm));
    }
    let signed = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, key.alg)
        .map_err(|e| describe(e.kind()))?;
    if !signed {
        return Err(describe(&ErrorKind::InvalidSignature));
    }
    let claims = parse_claims(payload)?;
    if claims.get("exp").is_none_or(Value::is_null) {
        return Err(describe(&ErrorKind::MissingRequiredClaim("exp".into())));
    }
    TokenTimes::from_claims(&claims)?.check(time)?;
    check_audience(&claims, audience, require_audience)?;
    Ok(claims)
}

/// Signs `claims` (already complete: iat, exp, aud set by the caller) with `kid`'s key.
pub fn sign(claims: &Value, kid: &str, alg: Algorithm, key: &EncodingKey) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).map_err(|e| format!("cannot sign: {e}"))
}

/// Seals the effective boundary with a secret only this backend knows.
pub fn seal(boundary: &Boundary, secret: &[u8]) -> Result<String, String> {
    seal_as(SEAL_KID, boundary, secret)
}

/// Seals `claims` (HS256) under the key id `kid`, which says what kind of sealed value it is.
pub fn seal_as(kid: &str, claims: &impl serde::Serialize, secret: &[u8]) -> Result<String, String> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .map_err(|e| format!("cannot seal the boundary: {e}"))
}

/// Opens a sealed value, checking the seal and that it has not expired at `now`.
pub fn unseal_verified(value: &[u8], secret: &[u8], now: i64, skew: i64) -> Result<Boundary, String> {
    let boundary: Boundary = unseal_as(SEAL_KID, value, secret, "the seal does not verify in this backend")?;
    if expired(boundary.exp, skew, now) {
        return Err("the sealed boundary has expired".into());
    }
    Ok(boundary)
}

/// Opens a value sealed by [`seal_as`] with the same `kid`, checking the seal only (the caller
/// checks what the claims say); `bad_seal` is the refusal when the seal does not verify.
pub fn unseal_as<T: serde::de::DeserializeOwned>(
    kid: &str,
    value: &[u8],
    secret: &[u8],
    bad_seal: &str,
) -> Result<T, String> {
    if value.len() > 2 * MAX_TOKEN_BYTES {
        return Err("the value is too large".into());
    }
    let header = jsonwebtoken::decode_header(value).map_err(|_| "the value is not a sealed boundary")?;
    if header.kid.as_deref() != Some(kid) {
        return Err("the value is not a sealed boundary (use boundary.enter(token))".into());
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    Ok(jsonwebtoken::decode::<T>(value, &DecodingKey::from_secret(secret), &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => bad_seal.to_string(),
            _ => "the value is not a sealed boundary".to_string(),
        })?
        .claims)
}

/// Opens a sealed value that PostgreSQL already accepted through the check hook.
pub fn unseal_trusted<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    jsonwebtoken::dangerous::insecure_decode::<T>(value)
        .map(|data| data.claims)
        .map_err(|e| format!("cannot read the sealed boundary: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::claims::{Plan, Region, Role, Scope};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_900_000_000;
    const TIME: TimePolicy = TimePolicy { now: NOW, skew: 30, max_lifetime: 3600 };

    fn hmac_key() -> Verifier {
        KeyMaterial { alg: Algorithm::HS256, verify_key: SECRET, signing_key: None }.verifier().unwrap()
    }

    fn token(claims: Value) -> String {
        sign(&claims, "k1", Algorithm::HS256, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn good_claims() -> Value {
        json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member",
               "iat": NOW - 10, "exp": NOW + 300, "aud": AUDIENCE})
    }

    fn boundary() -> Boundary {
        Boundary {
            tenant_id: "t".into(),
            workspace_id: "w".into(),
            user_id: "u".into(),
            role: Role::Member,
            plan: Plan::Free,
            region: Region::Us,
            tool_ids: vec![],
            datasource_ids: vec![],
            memory_namespace: None,
            trace_id: Some("trace".into()),
            run_id: None,
            prompt_version: None,
            iat: NOW,
            exp: NOW + 60,
            granted_at: NOW,
            allow_jobs: false,
            kid: "k1".into(),
            scope: Scope::Transaction,
            derived: Default::default(),
        }
    }

    #[test]
    fn verifies_a_good_token() {
        let t = token(good_claims());
        assert_eq!(peek_header(&t).unwrap(), ("k1".to_string(), Algorithm::HS256));
        // jsonwebtoken also checks exp against the real clock; NOW is in 2030.
        let claims = verify(&t, &hmac_key(), TIME).unwrap();
        assert_eq!(claims["tenant_id"], "t");
    }

    #[test]
    fn refuses_tampered_payload() {
        let t = token(good_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = good_claims();
        forged["tenant_id"] = json!("other");
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&forged).unwrap(),
        );
        let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
        assert_eq!(
            verify(&tampered, &hmac_key(), TIME).unwrap_err().to_string(),
            "signature does not verify (tampered, or signed with another key)"
        );
    }

    #[test]
    fn refuses_other_key_expired_future_and_long_lived_tokens() {
        let other = KeyMaterial {
            alg: Algorithm::HS256,
            verify_key: b"another-secret-another-secret-xx",
            signing_key: None,
        }
        .verifier()
        .unwrap();
        assert!(verify(&token(good_claims()), &other, TIME)
            .unwrap_err()
            .to_string()
            .starts_with("signature does not verify"));

        let mut c = good_claims();
        c["exp"] = json!(NOW - 31);
        c["iat"] = json!(NOW - 100);
        assert_eq!(verify(&token(c), &hmac_key(), TIME).unwrap_err().to_string(), "token has expired");

        let mut c = good_claims();
        c["iat"] = json!(NOW + 100);
        assert_eq!(
            verify(&token(c), &hmac_key(), TIME).unwrap_err().to_string(),
            "token is issued in the future (iat)"
        );

        let mut c = good_claims();
        c["exp"] = json!(NOW + 7200);
        assert_eq!(
            verify(&token(c), &hmac_key(), TIME).unwrap_err().to_string(),
            "token lifetime is 7210s; agent_boundary.max_token_lifetime allows 3600s"
        );

        let mut c = good_claims();
        c["aud"] = json!("some-other-service");
        assert_eq!(
            verify(&token(c), &hmac_key(), TIME).unwrap_err().to_string(),
            "token audience is not \"agent_boundary\""
        );
    }

    /// A token whose payload text the test writes itself (serde_json cannot write a duplicate).
    fn token_with_payload(payload: &str) -> String {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let message =
            format!("{}.{}", b64(br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#), b64(payload.as_bytes()));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }

    #[test]
    fn a_token_signed_with_the_secrets_base64_text_is_recognised() {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(SECRET);
        let claims = serde_json::json!({"tenant_id": "t", "exp": TIME.now + 60});
        let sign = |key: &[u8]| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key))
                .unwrap()
        };
        assert!(signed_with_encoded_secret(&sign(text.as_bytes()), Algorithm::HS256, SECRET));
        assert!(!signed_with_encoded_secret(&sign(SECRET), Algorithm::HS256, SECRET));
        assert!(!signed_with_encoded_secret(
            &sign(b"another secret of thirty-two bytes!"),
            Algorithm::HS256,
            SECRET
        ));
        assert!(!signed_with_encoded_secret("not a token", Algorithm::HS256, SECRET));
    }

    #[test]
    fn duplicated_claims_are_refused_wherever_they_are() {
        let times = format!(r#""iat": {}, "exp": {}, "aud": "{AUDIENCE}""#, NOW - 10, NOW + 300);
        let once = format!(
            r#"{{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member", {times}}}"#
        );
        assert!(verify(&token_with_payload(&once), &hmac_key(), TIME).is_ok());
        // A signer that splices user input into its payload must not become a tenant switch.
        for (payload, claim) in [
            (
                format!(
                    r#"{{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member", {times}, "tenant_id": "other"}}"#
                ),
                "tenant_id",
            ),
            (
                format!(
                    r#"{{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member", "role": "owner", {times}}}"#
                ),
                "role",
            ),
            (
                format!(
                    r#"{{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member", {times}, "x": {{"a": 1, "a": 2}}}}"#
                ),
                "a",
            ),
            (
                format!(
                    r#"{{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member", {times}, "x": [{{"b": 1, "b": 1}}]}}"#
                ),
                "b",
            ),
            (
                format!(
                    r#"{{"tenant\u005fid": "t", "tenant_id": "other", "workspace_id": "w", "user_id": "u", "role": "member", {times}}}"#
                ),
                "tenant_id",
            ),
        ] {
            assert_eq!(
                verify(&token_with_payload(&payload), &hmac_key(), TIME).unwrap_err().to_string(),
                format!("token is malformed: claim {claim:?} appears more than once"),
                "{payload}"
            );
        }
    }

    #[test]
    fn audiences_and_payload_shapes_are_checked_after_the_signature() {
        let with = |aud: Value| {
            let mut c = good_claims();
            c["aud"] = aud;
            token(c)
        };
        assert!(verify(&with(json!(AUDIENCE)), &hmac_key(), TIME).is_ok());
        assert!(verify(&with(json!(["crm", AUDIENCE])), &hmac_key(), TIME).is_ok());
        assert!(verify(&with(json!(null)), &hmac_key(), TIME).is_ok(), "no audience: any boundary token");
        let refused = format!("token audience is not {AUDIENCE:?}");
        for aud in [json!("crm"), json!(["crm"]), json!([]), json!(7), json!({"aud": AUDIENCE})] {
            assert_eq!(
                verify(&with(aud.clone()), &hmac_key(), TIME).unwrap_err().to_string(),
                refused,
                "{aud}"
            );
        }
        let job_refused = format!("token audience is not {JOB_AUDIENCE:?}");
        assert_eq!(verify_job(&with(json!(null)), &hmac_key(), TIME).unwrap_err().to_string(), job_refused);
        assert_eq!(
            verify_job(&with(json!(AUDIENCE)), &hmac_key(), TIME).unwrap_err().to_string(),
            job_refused
        );
        assert!(verify_job(&with(json!(JOB_AUDIENCE)), &hmac_key(), TIME).is_ok());

        let mut no_exp = good_claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verify(&token(no_exp), &hmac_key(), TIME).unwrap_err().to_string(),
            "claim exp is missing"
        );
        let not_an_object = "token is malformed: the payload is not a JSON object";
        for payload in ["[1, 2]", "\"text\"", r#"{"exp": 1} trailing"#, r#"{"exp": "#] {
            assert_eq!(
                verify(&token_with_payload(payload), &hmac_key(), TIME).unwrap_err().to_string(),
                not_an_object,
                "{payload}"
            );
        }
        // A tampered payload is refused for its signature before anything reads it.
        let good = token(good_claims());
        let (message, signature) = good.rsplit_once('.').unwrap();
        let (header, _) = message.split_once('.').unwrap();
        assert_eq!(
            verify(&format!("{header}.W10.{signature}"), &hmac_key(), TIME).unwrap_err().to_string(),
            "signature does not verify (tampered, or signed with another key)"
        );
        assert_eq!(
            verify(&format!("{message}.x.{signature}"), &hmac_key(), TIME).unwrap_err().to_string(),
            "token is malformed"
        );
    }

    #[test]
    fn extreme_times_never_wrap_into_a_pass() {
        for (exp, iat) in
            [(i64::MAX, Some(i64::MIN)), (NOW + 300, Some(i64::MIN)), (i64::MAX, None), (i64::MAX, Some(NOW))]
        {
            let times = TokenTimes { exp, nbf: None, iat };
            assert!(times.check(TIME).is_err(), "{times:?}");
        }
        let far_past = TimePolicy { now: i64::MIN, ..TIME };
        assert!(TokenTimes { exp: i64::MIN, nbf: None, iat: None }.check(far_past).is_ok());
        let far_future = TimePolicy { now: i64::MAX, skew: i64::MAX, max_lifetime: i64::MAX };
        let _ = TokenTimes { exp: i64::MAX, nbf: Some(i64::MAX), iat: Some(i64::MIN) }.check(far_future);
    }

    proptest::proptest! {
        /// Whatever the claims and the clock, a pass means what it says, computed without
        /// overflow (in i128): not expired, not before nbf or iat, and no longer than allowed.
        #[test]
        fn a_pass_holds_in_exact_arithmetic(
            exp in proptest::num::i64::ANY, iat in proptest::option::of(proptest::num::i64::ANY),
            nbf in proptest::option::of(proptest::num::i64::ANY), now in proptest::num::i64::ANY,
            skew in 0..=i64::MAX, max_lifetime in 0..=i64::MAX,
        ) {
            let policy = TimePolicy { now, skew, max_lifetime };
            if (TokenTimes { exp, nbf, iat }).check(policy).is_ok() {
                let wide = |v: i64| v as i128;
                proptest::prop_assert!(wide(exp) + wide(skew) >= wide(now));
                proptest::prop_assert!(nbf.is_none_or(|n| wide(n) <= wide(now) + wide(skew)));
                proptest::prop_assert!(iat.is_none_or(|i| wide(i) <= wide(now) + wide(skew)));
                proptest::prop_assert!(wide(exp) - wide(iat.unwrap_or(now)) <= wide(max_lifetime));
            }
        }
    }

    /// Inputs per fuzz property (bounded random input, run in CI; cargo-fuzz needs nightly).
    const FUZZ_CASES: u32 = 10_000;

    fn token_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let b64 = "[A-Za-z0-9_-]{0,120}";
        prop_oneof![
            ".{0,300}",
            "[A-Za-z0-9_.=+/-]{0,400}",
            (b64, b64, b64).prop_map(|(h, p, s)| format!("{h}.{p}.{s}")),
            (".{0,80}", "[.]{0,5}").prop_map(|(a, dots)| format!("eyJ{a}{dots}")),
        ]
    }

    fn payload_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            r#"[{}\[\]":,0-9a-z_ .eE+-]{0,200}"#.prop_map(String::into_bytes),
            (
                prop_oneof![Just("tenant_id"), Just("role"), Just("exp"), Just("iat"), Just("aud"), Just("allow_jobs")],
                prop_oneof![Just("\"t\""), Just("1e400"), Just("-1"), Just("[]"), Just("{}"), Just("null"), Just("true")],
            )
                .prop_map(|(claim, value)| {
                    format!(r#"{{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "member", "exp": {}, "aud": "{AUDIENCE}", "{claim}": {value}}}"#, NOW + 60)
                        .into_bytes()
                }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(FUZZ_CASES))]

        /// Anything handed to enter() or resume() is refused with a reason, never a panic.
        #[test]
        fn arbitrary_text_is_refused_not_crashed(input in token_like()) {
            let _ = peek_header(&input);
            proptest::prop_assert!(verify(&input, &hmac_key(), TIME).is_err());
            proptest::prop_assert!(verify_job(&input, &hmac_key(), TIME).is_err());
        }

        /// A correctly signed token with any payload is verified or refused, never a panic, and
        /// what verifies reads as a request or is refused with a reason.
        #[test]
        fn signed_arbitrary_payloads_never_crash(payload in payload_like()) {
            use base64::Engine;
            let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let message = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"k1"}"#), b64(&payload));
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256).unwrap();
            if let Ok(claims) = verify(&format!("{message}.{signature}"), &hmac_key(), TIME) {
                let _ = crate::boundary::claims::Requested::from_claims(&claims);
            }
        }
    }

    #[test]
    fn remembered_token_times_are_checked_again_on_each_use() {
        let times = TokenTimes::from_claims(&good_claims()).unwrap();
        assert_eq!(times, TokenTimes { exp: NOW + 300, nbf: None, iat: Some(NOW - 10) });
        assert_eq!(times.check(TIME), Ok(()));
        let later = |secs: i64| TimePolicy { now: NOW + secs, ..TIME };
        assert_eq!(times.check(later(330)), Ok(()), "within the skew");
        assert_eq!(times.check(later(331)), Err(Refusal::Expired));
        let shorter = TimePolicy { max_lifetime: 60, ..TIME };
        assert_eq!(
            times.check(shorter).map_err(|e| e.to_string()),
            Err("token lifetime is 310s; agent_boundary.max_token_lifetime allows 60s".into())
        );
        let not_yet = TokenTimes { nbf: Some(NOW + 31), ..times };
        assert_eq!(
            not_yet.check(TIME).map_err(|e| e.to_string()),
            Err("token is not valid yet (nbf is in the future)".into())
        );
        assert_eq!(not_yet.check(later(1)), Ok(()));
        let mut c = good_claims();
        c["nbf"] = json!("soon");
        assert_eq!(TokenTimes::from_claims(&c).unwrap_err(), "claim nbf must be an integer");
    }

    #[test]
    fn refuses_alg_confusion_and_alg_none() {
        // A token claiming HS384 checked against an HS256 key.
        let t = sign(&good_claims(), "k1", Algorithm::HS384, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            verify(&t, &hmac_key(), TIME).unwrap_err().to_string(),
            "token alg does not match the alg of its key"
        );
        // "alg": "none" with an empty signature.
        let b64 = |v: Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                serde_json::to_vec(&v).unwrap(),
            )
        };
        let none = format!("{}.{}.", b64(json!({"alg": "none", "kid": "k1"})), b64(good_claims()));
        assert!(peek_header(&none).is_err() || verify(&none, &hmac_key(), TIME).is_err());
    }

    #[test]
    fn refuses_malformed_and_huge_input() {
        assert_eq!(peek_header("").unwrap_err(), "token is empty");
        assert_eq!(
            peek_header("abc").unwrap_err(),
            "token is malformed: a JWT has three dot-separated parts"
        );
        assert_eq!(peek_header("a.b.c").unwrap_err(), "token is malformed: unreadable header");
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            peek_header(&huge).unwrap_err(),
            format!("token is {} bytes; the limit is 16384", MAX_TOKEN_BYTES + 1)
        );
        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good_claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(peek_header(&no_kid).unwrap_err(), "token header has no kid (key id)");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k 1; drop table".into());
        let bad_kid =
            jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_secret(SECRET)).unwrap();
        assert!(peek_header(&bad_kid).unwrap_err().starts_with("token header kid is invalid"));
    }

    #[test]
    fn seal_round_trips_and_rejects_foreign_seals() {
        let sealed = seal(&boundary(), SECRET).unwrap();
        assert_eq!(unseal_verified(sealed.as_bytes(), SECRET, NOW, 30).unwrap(), boundary());
        assert_eq!(unseal_trusted::<Boundary>(sealed.as_bytes()).unwrap(), boundary());
        assert_eq!(
            unseal_verified(sealed.as_bytes(), b"a different backend's secret....", NOW, 30).unwrap_err(),
            "the seal does not verify in this backend"
        );
        assert_eq!(
            unseal_verified(sealed.as_bytes(), SECRET, NOW + 1000, 30).unwrap_err(),
            "the sealed boundary has expired"
        );
        // An app token is not a sealed value, even with a valid signature.
        let app = token(good_claims());
        assert_eq!(
            unseal_verified(app.as_bytes(), SECRET, NOW, 30).unwrap_err(),
            "the value is not a sealed boundary (use boundary.enter(token))"
        );
        assert_eq!(peek_header(&sealed).unwrap_err(), "a sealed boundary value is not a token");
        assert_eq!(
            unseal_verified(b"forged", SECRET, NOW, 30).unwrap_err(),
            "the value is not a sealed boundary"
        );
    }

    #[test]
    fn a_cluster_seal_is_neither_a_backend_seal_nor_a_token() {
        let cluster = seal_as(CLUSTER_SEAL_KID, &boundary(), SECRET).unwrap();
        let opened: Boundary = unseal_as(CLUSTER_SEAL_KID, cluster.as_bytes(), SECRET, "bad seal").unwrap();
        assert_eq!(opened, boundary());
        assert_eq!(
            unseal_as::<Boundary>(
                CLUSTER_SEAL_KID,
                cluster.as_bytes(),
                b"another cluster's key..........",
                "bad seal"
            )
            .unwrap_err(),
            "bad seal"
        );
        assert_eq!(
            unseal_verified(cluster.as_bytes(), SECRET, NOW, 30).unwrap_err(),
            "the value is not a sealed boundary (use boundary.enter(token))"
        );
        let backend = seal(&boundary(), SECRET).unwrap();
        assert_eq!(
            unseal_as::<Boundary>(CLUSTER_SEAL_KID, backend.as_bytes(), SECRET, "bad seal").unwrap_err(),
            "the value is not a sealed boundary (use boundary.enter(token))"
        );
        assert_eq!(peek_header(&cluster).unwrap_err(), "a sealed boundary value is not a token");
    }

    #[test]
    fn eddsa_tokens_verify_with_only_the_public_key() {
        let public = include_bytes!("../../tests/fixtures/ed25519-test-public.pem");
        let private = include_bytes!("../../tests/fixtures/ed25519-test-private.pem");
        let signer = KeyMaterial { alg: Algorithm::EdDSA, verify_key: public, signing_key: Some(private) };
        signer.check().unwrap();
        let t =
            sign(&good_claims(), "ed1", Algorithm::EdDSA, &signer.encoding_key().unwrap().unwrap()).unwrap();
        let public_only = KeyMaterial { alg: Algorithm::EdDSA, verify_key: public, signing_key: None };
        assert!(public_only.encoding_key().unwrap().is_none(), "a public key alone cannot sign");
        let verifier = public_only.verifier().unwrap();
        assert_eq!(verify(&t, &verifier, TIME).unwrap()["user_id"], "u");
        // An HMAC token whose "secret" is the public key PEM (classic alg confusion) is refused.
        let confused =
            sign(&good_claims(), "ed1", Algorithm::HS256, &EncodingKey::from_secret(public)).unwrap();
        assert_eq!(
            verify(&confused, &verifier, TIME).unwrap_err().to_string(),
            "token alg does not match the alg of its key"
        );
    }

    #[test]
    fn key_checks() {
        let short = KeyMaterial { alg: Algorithm::HS256, verify_key: b"short", signing_key: None };
        assert_eq!(short.check().unwrap_err(), "an HMAC secret must be at least 32 bytes, got 5");
        assert!(KeyMaterial { alg: Algorithm::HS256, verify_key: SECRET, signing_key: None }.check().is_ok());
        let garbage = KeyMaterial { alg: Algorithm::EdDSA, verify_key: b"not a pem", signing_key: None };
        assert!(garbage.check().unwrap_err().starts_with("the EdDSA key cannot be read"));
        let other_private = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";
        let mismatched = KeyMaterial {
            alg: Algorithm::EdDSA,
            verify_key: include_bytes!("../../tests/fixtures/ed25519-test-public.pem"),
            signing_key: Some(other_private),
        };
        assert_eq!(mismatched.check().unwrap_err(), "the private key does not match the public key");
        assert!(validate_kid("k-2026.01_a").is_ok());
        assert!(validate_kid("").is_err());
        assert!(validate_kid("k\u{0}").is_err());
        assert!(validate_kid(&"k".repeat(65)).is_err());
        assert_eq!(
            parse_algorithm("none").unwrap_err(),
            "alg must be one of HS256, HS384, HS512, EdDSA, ES256, RS256, not \"none\""
        );
    }
}
