//! The agent boundary as plain data: what a token may claim, how claims are validated, and how
//! the registry narrows them. No PostgreSQL in here, so all of it is tested with `cargo test`.

use crate::stores::keyspace;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest id (tenant, workspace, user, tool, datasource, trace, run, ...) in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most entries a tool or datasource list may hold.
pub const MAX_LIST_ITEMS: usize = 1024;

macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident, $field:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn parse(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!(
                        "{} must be one of {}, not {:?}",
                        $field,
                        Self::ALL.join(", "),
                        truncate_for_message(text)
                    )),
                }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

closed_set!(
    /// Ordered from least to most privileged, so `min` narrows.
    Role, "role", { Viewer = "viewer", Member = "member", Admin = "admin", Owner = "owner" }
);
closed_set!(Plan, "plan", { Free = "free", Pro = "pro", Enterprise = "enterprise" });
closed_set!(Region, "region", { Us = "us", Eu = "eu", In = "in" });
closed_set!(
    /// Whose memory: the user's own (default, the narrowest) or shared across the workspace.
    MemoryScope, "scope", { User = "user", Workspace = "workspace" }
);
closed_set!(
    /// How long a boundary lasts: to the end of the transaction (default) or of the session.
    Scope, "scope", { Transaction = "transaction", Session = "session" }
);

/// Keeps refusal messages short and free of control characters whatever the input was.
pub fn truncate_for_message(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if clean.len() < text.len() {
        format!("{clean}...")
    } else {
        clean
    }
}

/// An identifier is 1..=256 bytes of text without control characters (NUL included).
pub fn validate_id(field: &str, value: &str) -> Result<(), String> {
    validate_text(field, value, MAX_ID_BYTES)
}

/// 1..=`max_bytes` bytes of text without control characters (NUL included).
pub fn validate_text(field: &str, value: &str, max_bytes: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > max_bytes {
        return Err(format!("{field} is {} bytes long; the limit is {max_bytes}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} contains a control character"));
    }
    Ok(())
}

/// Validates a list of ids, then sorts and de-duplicates it (order carries no meaning).
pub fn normalize_ids(field: &str, values: Vec<String>) -> Result<Vec<String>, String> {
    if values.len() > MAX_LIST_ITEMS {
        return Err(format!("{field} has {} entries; the limit is {MAX_LIST_ITEMS}", values.len()));
    }
    for value in &values {
        validate_id(&format!("an entry of {field}"), value)?;
    }
    let mut values = values;
    values.sort();
    values.dedup();
    Ok(values)
}

/// What a verified token asks for, before the registry has its say.
#[derive(Clone, Debug, PartialEq)]
pub struct Requested {
    pub tenant_id: String,
    pub workspace_id: String,
    pub user_id: String,
    pub role: Role,
    pub plan: Option<Plan>,
    pub region: Option<Region>,
    pub tool_ids: Option<Vec<String>>,
    pub datasource_ids: Option<Vec<String>>,
    pub memory_namespace: Option<String>,
    pub trace_id: Option<String>,
    pub run_id: Option<String>,
    pub prompt_version: Option<String>,
    /// Whether this request may turn itself into a job with `boundary.snapshot()`.
    pub allow_jobs: bool,
    /// When the grant a job token came from began (job tokens only): no chain of snapshots and
    /// resumes runs past it plus `max_job_lifetime`.
    pub granted_at: Option<i64>,
    pub issued_at: Option<i64>,
    pub expires_at: i64,
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            validate_id(&format!("claim {name}"), s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(format!("claim {name} must be a string")),
    }
}

fn required_string_claim(claims: &Map<String, Value>, name: &str) -> Result<String, String> {
    string_claim(claims, name)?.ok_or_else(|| format!("claim {name} is missing"))
}

fn list_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let ids = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("claim {name} must be an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(normalize_ids(&format!("claim {name}"), ids)?))
        }
        Some(_) => Err(format!("claim {name} must be an array of strings")),
    }
}

fn bool_claim(claims: &Map<String, Value>, name: &str) -> Result<bool, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("claim {name} must be true or false")),
    }
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| format!("claim {name} must be a number of seconds since 1970")),
        Some(_) => Err(format!("claim {name} must be a number of seconds since 1970")),
    }
}

impl Requested {
    /// Reads the boundary claims of an already signature-checked token.
    pub fn from_claims(claims: &Value) -> Result<Self, String> {
        let claims = claims.as_object().ok_or("the claims must be a JSON object")?;
        let enum_claim = |name: &str| string_claim(claims, name);
        Ok(Self {
            tenant_id: required_string_claim(claims, "tenant_id")?,
            workspace_id: required_string_claim(claims, "workspace_id")?,
            user_id: required_string_claim(claims, "user_id")?,
            role: Role::parse(&required_string_claim(claims, "role")?)?,
            plan: enum_claim("plan")?.as_deref().map(Plan::parse).transpose()?,
            region: enum_claim("region")?.as_deref().map(Region::parse).transpose()?,
            tool_ids: list_claim(claims, "tool_ids")?,
            datasource_ids: list_claim(claims, "datasource_ids")?,
            memory_namespace: string_claim(claims, "memory_namespace")?,
            trace_id: string_claim(claims, "trace_id")?,
            run_id: string_claim(claims, "run_id")?,
            prompt_version: string_claim(claims, "prompt_version")?,
            allow_jobs: bool_claim(claims, "allow_jobs")?,
            granted_at: time_claim(claims, "granted_at")?,
            issued_at: time_claim(claims, "iat")?,
            expires_at: time_claim(claims, "exp")?.ok_or("claim exp is missing")?,
        })
    }
}

/// What the registry says a principal may do right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub role: Role,
    pub plan: Plan,
    pub region: Region,
    pub tool_ids: Vec<String>,
    pub datasource_ids: Vec<String>,
    pub revoked: bool,
}

/// The effective boundary: a verified request narrowed by the registry. This is what the
/// boundary GUC carries (sealed) and what every accessor reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Boundary {
    pub tenant_id: String,
    pub workspace_id: String,
    pub user_id: String,
    pub role: Role,
    pub plan: Plan,
    pub region: Region,
    pub tool_ids: Vec<String>,
    pub datasource_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
    /// Issued-at and expiry, seconds since 1970 (`exp` keeps its JWT name for the seal).
    pub iat: i64,
    pub exp: i64,
    /// When the grant began: the entered token's `iat`, or the `granted_at` a job token carried
    /// from the boundary it was snapshotted in.
    pub granted_at: i64,
    /// Whether `boundary.snapshot()` may turn this boundary into a job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_jobs: bool,
    /// Id of the signing key that verified the token.
    pub kid: String,
    pub scope: Scope,
    /// Keys derived from the fields, each built on first use per parsed boundary: policies read
    /// them per row.
    #[serde(skip)]
    pub derived: DerivedKeys,
}

/// What the memory and cache policies compare rows with (separately: `enter` returns the
/// namespace, and only the cache needs the prefix's hash).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DerivedKeys {
    memory_namespace: std::cell::OnceCell<String>,
    cache_prefix: std::cell::OnceCell<String>,
}

fn intersect(requested: Option<Vec<String>>, allowed: &[String]) -> Vec<String> {
    match requested {
        None => allowed.to_vec(),
        Some(asked) => asked.into_iter().filter(|id| allowed.contains(id)).collect(),
    }
}

impl Requested {
    /// Applies the registry: a revoked principal is refused; the role is capped at the registry's;
    /// plan and region come from the registry and a token that claims otherwise is refused;
    /// tools and datasources shrink to what the registry allows now (all of it if unasked).
    pub fn narrow(
        self,
        principal: &Principal,
        kid: &str,
        scope: Scope,
        now: i64,
    ) -> Result<Boundary, String> {
        if principal.revoked {
            return Err("the principal has been revoked".into());
        }
        if let Some(plan) = self.plan.filter(|p| *p != principal.plan) {
            return Err(format!(
                "the token claims plan {} but the registry says {}",
                plan.as_str(),
                principal.plan.as_str()
            ));
        }
        if let Some(region) = self.region.filter(|r| *r != principal.region) {
            return Err(format!(
                "the token claims region {} but the registry says {}",
                region.as_str(),
                principal.region.as_str()
            ));
        }
        Ok(Boundary {
            role: self.role.min(principal.role),
            plan: principal.plan,
            region: principal.region,
            tool_ids: intersect(self.tool_ids, &principal.tool_ids),
            datasource_ids: intersect(self.datasource_ids, &principal.datasource_ids),
            tenant_id: self.tenant_id,
            workspace_id: self.workspace_id,
            user_id: self.user_id,
            memory_namespace: self.memory_namespace,
            trace_id: self.trace_id,
            run_id: self.run_id,
            prompt_version: self.prompt_version,
            iat: self.issued_at.unwrap_or(now),
            exp: self.expires_at,
            granted_at: self.granted_at.or(self.issued_at).unwrap_or(now),
            allow_jobs: self.allow_jobs,
            kid: kid.to_string(),
            scope,
            derived: Default::default(),
        })
    }
}

impl Boundary {
    /// Whether two boundaries admit the same rows and writes through generated policies.
    pub fn same_rows_as(&self, other: &Boundary) -> bool {
        (&self.tenant_id, &self.workspace_id, &self.user_id, &self.datasource_ids, self.role)
            == (&other.tenant_id, &other.workspace_id, &other.user_id, &other.datasource_ids, other.role)
    }

    fn memory_owner(&self) -> keyspace::MemoryOwner<'_> {
        match &self.memory_namespace {
            Some(ns) => keyspace::MemoryOwner::Namespace(ns),
            None => keyspace::MemoryOwner::User(&self.user_id),
        }
    }

    /// The user-scoped memory namespace: tenant, workspace and the user (or the token's
    /// `memory_namespace`, which still lives inside the tenant and workspace).
    pub fn memory_namespace(&self) -> &str {
        self.derived.memory_namespace.get_or_init(|| {
            keyspace::memory_namespace(&self.tenant_id, &self.workspace_id, self.memory_owner())
        })
    }

    /// The namespace memory of `scope` lives in.
    pub fn memory_namespace_for(&self, scope: MemoryScope) -> String {
        match scope {
            MemoryScope::User => self.memory_namespace().to_string(),
            MemoryScope::Workspace => keyspace::memory_namespace(
                &self.tenant_id,
                &self.workspace_id,
                keyspace::MemoryOwner::Workspace,
            ),
        }
    }

    /// The canonical key of memory `name` in `scope`.
    pub fn memory_key(&self, name: &str, scope: MemoryScope) -> String {
        keyspace::memory_key(&self.memory_namespace_for(scope), name)
    }

    /// What every cache key built under this boundary starts with.
    pub fn cache_prefix(&self) -> &str {
        self.derived.cache_prefix.get_or_init(|| {
            keyspace::cache_prefix(
                &self.tenant_id,
                &self.workspace_id,
                self.role.as_str(),
                &self.datasource_ids,
            )
        })
    }

    /// About how much memory this boundary takes: the struct, and each string with its
    /// allocation's overhead (many short ids cost more than their bytes).
    pub fn approximate_bytes(&self) -> usize {
        const PER_STRING: usize = 32;
        let text = |s: &String| s.len() + PER_STRING;
        let optional = [&self.memory_namespace, &self.trace_id, &self.run_id, &self.prompt_version];
        std::mem::size_of::<Boundary>()
            + [&self.tenant_id, &self.workspace_id, &self.user_id, &self.kid]
                .into_iter()
                .map(text)
                .sum::<usize>()
            + optional.into_iter().flatten().map(text).sum::<usize>()
            + self.tool_ids.iter().chain(&self.datasource_ids).map(text).sum::<usize>()
            + self.derived.memory_namespace.get().map_or(0, text)
            + self.derived.cache_prefix.get().map_or(0, text)
    }

    /// The public shape returned by `boundary.current()` and `boundary.enter()`, field by field:
    /// built into jsonb by jsonb.rs.
    pub fn public_fields(&self) -> [(&'static str, PublicValue<'_>); 18] {
        use PublicValue::{Bool, Text, Texts};
        fn optional(value: &Option<String>) -> PublicValue<'_> {
            value.as_deref().map_or(PublicValue::Null, |v| PublicValue::Text(v.into()))
        }
        [
            ("tenant_id", Text(self.tenant_id.as_str().into())),
            ("workspace_id", Text(self.workspace_id.as_str().into())),
            ("user_id", Text(self.user_id.as_str().into())),
            ("role", Text(self.role.as_str().into())),
            ("plan", Text(self.plan.as_str().into())),
            ("region", Text(self.region.as_str().into())),
            ("tool_ids", Texts(&self.tool_ids)),
            ("datasource_ids", Texts(&self.datasource_ids)),
            ("memory_namespace", Text(self.memory_namespace().into())),
            ("trace_id", optional(&self.trace_id)),
            ("run_id", optional(&self.run_id)),
            ("prompt_version", optional(&self.prompt_version)),
            ("issued_at", Text(rfc3339(self.iat).into())),
            ("expires_at", Text(rfc3339(self.exp).into())),
            ("granted_at", Text(rfc3339(self.granted_at).into())),
            ("allow_jobs", Bool(self.allow_jobs)),
            ("key_id", Text(self.kid.as_str().into())),
            ("scope", Text(self.scope.as_str().into())),
        ]
    }
}

/// One value of the boundary's public shape: every text in it has passed the claim checks, so
/// none holds a control character (NUL included).
pub enum PublicValue<'a> {
    Text(std::borrow::Cow<'a, str>),
    Texts(&'a [String]),
    Bool(bool),
    Null,
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
    }
    // Digit by digit: enter() formats three of these per new token, and format! costs more
    // than the rest of the conversion.
    let mut text = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs / 3600);
    put(14, 2, secs % 3600 / 60);
    put(17, 2, secs % 60);
    text.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        json!({
            "tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "u-1",
            "role": "admin", "exp": 2_000_000_000, "iat": 1_999_999_000,
            "tool_ids": ["search", "crm", "search"], "trace_id": "t-1"
        })
    }

    fn principal() -> Principal {
        Principal {
            role: Role::Member,
            plan: Plan::Pro,
            region: Region::Eu,
            tool_ids: vec!["crm".into(), "email".into()],
            datasource_ids: vec!["ds-1".into()],
            revoked: false,
        }
    }

    #[test]
    fn reads_and_normalizes_claims() {
        let r = Requested::from_claims(&claims()).unwrap();
        assert_eq!(r.tenant_id, "northstar-dental");
        assert_eq!(r.role, Role::Admin);
        assert_eq!(r.tool_ids, Some(vec!["crm".to_string(), "search".to_string()]));
        assert_eq!(r.datasource_ids, None);
        assert_eq!(r.expires_at, 2_000_000_000);
    }

    #[test]
    fn refuses_missing_wrong_typed_and_hostile_claims() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "the claims must be a JSON object"),
            (
                json!({"workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}),
                "claim tenant_id is missing",
            ),
            (
                json!({"tenant_id": 7, "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}),
                "claim tenant_id must be a string",
            ),
            (
                json!({"tenant_id": "", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}),
                "claim tenant_id must not be empty",
            ),
            (
                json!({"tenant_id": "a\u{0}b", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}),
                "claim tenant_id contains a control character",
            ),
            (
                json!({"tenant_id": "x".repeat(257), "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}),
                "claim tenant_id is 257 bytes long; the limit is 256",
            ),
            (
                json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "root", "exp": 1}),
                "role must be one of viewer, member, admin, owner, not \"root\"",
            ),
            (
                json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer"}),
                "claim exp is missing",
            ),
            (
                json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": "soon"}),
                "claim exp must be a number of seconds since 1970",
            ),
            (
                json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1, "tool_ids": "crm"}),
                "claim tool_ids must be an array of strings",
            ),
            (
                json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1, "tool_ids": [""]}),
                "an entry of claim tool_ids must not be empty",
            ),
            (
                json!({"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1, "region": "mars"}),
                "region must be one of us, eu, in, not \"mars\"",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Requested::from_claims(&input).unwrap_err(), expected, "{input}");
        }
    }

    #[test]
    fn separators_inside_ids_are_ordinary_characters() {
        let mut c = claims();
        c["tenant_id"] = json!("northstar:dental/../%3A");
        assert_eq!(Requested::from_claims(&c).unwrap().tenant_id, "northstar:dental/../%3A");
    }

    #[test]
    fn registry_narrows_role_and_lists() {
        let b = narrow_claims(&claims(), &principal()).unwrap();
        assert_eq!(b.role, Role::Member, "token said admin, registry caps at member");
        assert_eq!(b.tool_ids, vec!["crm".to_string()], "search is not allowed by the registry");
        assert_eq!(b.datasource_ids, vec!["ds-1".to_string()], "unasked = all the registry allows");
        assert_eq!((b.plan, b.region), (Plan::Pro, Region::Eu));
        assert_eq!(b.iat, 1_999_999_000);
    }

    fn narrow_claims(c: &Value, p: &Principal) -> Result<Boundary, String> {
        Requested::from_claims(c).unwrap().narrow(p, "k1", Scope::Transaction, 1)
    }

    #[test]
    fn lower_role_in_token_is_kept() {
        let mut c = claims();
        c["role"] = json!("viewer");
        assert_eq!(narrow_claims(&c, &principal()).unwrap().role, Role::Viewer);
    }

    #[test]
    fn registry_refusals() {
        let revoked = Principal { revoked: true, ..principal() };
        assert_eq!(narrow_claims(&claims(), &revoked).unwrap_err(), "the principal has been revoked");
        let mut c = claims();
        c["region"] = json!("us");
        assert_eq!(
            narrow_claims(&c, &principal()).unwrap_err(),
            "the token claims region us but the registry says eu"
        );
        let mut c = claims();
        c["plan"] = json!("enterprise");
        assert_eq!(
            narrow_claims(&c, &principal()).unwrap_err(),
            "the token claims plan enterprise but the registry says pro"
        );
    }

    #[test]
    fn a_boundary_counts_what_its_strings_take() {
        let typical = narrow_claims(&claims(), &principal()).unwrap();
        assert!((300..1500).contains(&typical.approximate_bytes()), "{}", typical.approximate_bytes());
        let mut long_lists = typical.clone();
        long_lists.tool_ids = (0..1024).map(|i| format!("tool-{i:03}")).collect();
        assert!(long_lists.approximate_bytes() > 16 * 1024, "1,024 short ids take more than their bytes");
    }

    #[test]
    fn default_memory_namespace_is_injective() {
        let mk = |t: &str, w: &str| {
            let mut c = claims();
            c["tenant_id"] = json!(t);
            c["workspace_id"] = json!(w);
            narrow_claims(&c, &principal()).unwrap().memory_namespace().to_string()
        };
        assert_ne!(mk("a:b", "c"), mk("a", "b:c"));
        assert_eq!(mk("a", "b"), "agent-memory:a:b:user:u-1");
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(-62_167_219_200), "0000-01-01T00:00:00Z", "the first four-digit year");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z", "the last four-digit year");
        assert_eq!(rfc3339(253_402_300_800), "10000-01-01T00:00:00Z", "wider years are written in full");
        assert_eq!(rfc3339(-62_167_219_201), "-001-12-31T23:59:59Z", "as format! pads a signed year");
    }

    #[test]
    fn truncates_hostile_text_in_messages() {
        let long = "a".repeat(500);
        assert_eq!(truncate_for_message(&long).len(), 67);
        assert_eq!(truncate_for_message("a\u{0}b\nc"), "abc...");
    }
}
