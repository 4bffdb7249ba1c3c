//! The SQL that `vector_search()` runs and `vector_index()` creates, built in plain Rust.
//!
//! Parameters of every search statement: `$1` the query vector, `$2` tenant, `$3` workspace,
//! `$4` datasource ids, `$5` user, `$6` a row limit. A statement uses those its table scopes by;
//! the values are bound, never spliced, and arrive at the planner as constants (one-shot SPI
//! plans), so a per-tenant partial index matches the tenant predicate.

use crate::pg::catalog::{quote_ident, quote_literal, Column, MAX_IDENTIFIER_BYTES};
use crate::policy::scope::{Field, Scope};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The index path takes this many times k rows from the relaxed-order scan and keeps the k
/// nearest: the scan hands rows over roughly, not exactly, in distance order.
pub const APPROXIMATE_OVERFETCH: i32 = 4;

/// Most neighbours one call may ask for.
pub const MAX_K: i32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    Cosine,
    L2,
    InnerProduct,
}

impl Metric {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "cosine" => Ok(Self::Cosine),
            "l2" | "euclidean" => Ok(Self::L2),
            "inner_product" | "ip" => Ok(Self::InnerProduct),
            other => {
                Err(format!("unknown metric \"{}\"; use cosine, l2 or inner_product", other.escape_default()))
            }
        }
    }

    /// pgvector's distance operator: smaller is nearer (`<#>` is the negated inner product).
    pub fn operator(self) -> &'static str {
        match self {
            Self::Cosine => "<=>",
            Self::L2 => "<->",
            Self::InnerProduct => "<#>",
        }
    }

    pub fn opclass(self) -> &'static str {
        match self {
            Self::Cosine => "vector_cosine_ops",
            Self::L2 => "vector_l2_ops",
            Self::InnerProduct => "vector_ip_ops",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::InnerProduct => "inner_product",
        }
    }
}

/// k as asked: positive and at most [`MAX_K`].
pub fn validate_k(k: Option<i32>) -> Result<i32, String> {
    match k {
        None => Err("k must not be NULL".into()),
        Some(k) if k <= 0 => Err(format!("k must be positive, got {k}")),
        Some(k) if k > MAX_K => Err(format!("k is {k}; vector_search returns at most {MAX_K} rows")),
        Some(k) => Ok(k),
    }
}

/// pgvector's own limits for HNSW build options, checked before any DDL is written.
pub fn validate_hnsw_options(m: i32, ef_construction: i32) -> Result<(), String> {
    if !(2..=100).contains(&m) {
        return Err(format!("m must be between 2 and 100, got {m}"));
    }
    if !(4..=1000).contains(&ef_construction) {
        return Err(format!("ef_construction must be between 4 and 1000, got {ef_construction}"));
    }
    if ef_construction < 2 * m {
        return Err(format!("ef_construction ({ef_construction}) must be at least 2 * m ({})", 2 * m));
    }
    Ok(())
}

/// A protected table with a vector column, resolved from the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchTable {
    /// Schema-qualified, quoted.
    pub table: String,
    pub id: String,
    pub embedding: String,
    pub scope: Scope,
    /// The schema pgvector is installed in, quoted: operators are named with it.
    pub vector_schema: String,
}

/// The statements one search may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchStatements {
    /// Counts the candidate rows, up to `$6`.
    pub count: String,
    /// Ranks up to `$7` candidate rows exactly and says how many there were (each row carries
    /// the count): one pass for a boundary with few candidates. Past `$7` the ranking is not
    /// exact and is discarded.
    pub exact_counted: String,
    /// Ranks every candidate row by exact distance: the fence (OFFSET 0) keeps the ORDER BY
    /// from reaching an approximate index.
    pub exact: String,
    /// Lets the planner use an HNSW index (shared or per-tenant partial) under an iterative
    /// scan in relaxed order, then re-sorts the few rows it returns.
    pub approximate: String,
}

impl SearchTable {
    /// The boundary's scope as a WHERE clause on parameters, plus "has an embedding": the rows
    /// eligible for ranking. Row level security applies on top of it.
    pub fn candidate_filter(&self) -> String {
        let scope = self.scope.predicate(|field| {
            match field {
                Field::Tenant => "$2::text",
                Field::Workspace => "$3::text",
                Field::Datasources => "$4::text[]",
                Field::User => "$5::text",
            }
            .to_string()
        });
        format!("{scope} AND {} IS NOT NULL", quote_ident(&self.embedding))
    }

    pub fn statements(&self, metric: Metric) -> SearchStatements {
        let t = &self.table;
        let filter = self.candidate_filter();
        let id = quote_ident(&self.id);
        let distance = format!(
            "{} OPERATOR({}.{}) $1",
            quote_ident(&self.embedding),
            self.vector_schema,
            metric.operator()
        );
        SearchStatements {
            count: format!("SELECT count(*) FROM (SELECT FROM {t} WHERE {filter} LIMIT $6) AS candidates"),
            exact_counted: format!(
                "SELECT id::text, distance, candidates FROM (SELECT id, distance, count(*) OVER () AS candidates \
                 FROM (SELECT {id} AS id, {distance} AS distance FROM {t} WHERE {filter} LIMIT $7) AS bounded) \
                 AS counted ORDER BY distance LIMIT $6"
            ),
            exact: format!(
                "SELECT id::text, distance FROM (SELECT {id} AS id, {distance} AS distance FROM {t} \
                 WHERE {filter} OFFSET 0) AS candidates ORDER BY distance LIMIT $6"
            ),
            approximate: format!(
                "WITH nearest AS MATERIALIZED (SELECT {id} AS id, {distance} AS distance FROM {t} \
                 WHERE {filter} ORDER BY {distance} LIMIT $6 * {APPROXIMATE_OVERFETCH}) \
                 SELECT id::text, distance FROM nearest ORDER BY distance LIMIT $6"
            ),
        }
    }
}

/// How a call chose to rank, for the DEBUG1 trace and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Few enough candidates to rank them all.
    Exact,
    /// The index, scanned with this ef_search, returned k rows.
    Approximate { ef_search: i32 },
    /// The index came back short; ranked exactly instead.
    ApproximateThenExact { ef_search: i32 },
}

impl Path {
    pub fn describe(self, rows: usize) -> String {
        match self {
            Self::Exact => format!("exact plan, {rows} rows"),
            Self::Approximate { ef_search } => {
                format!("approximate plan, {rows} rows, ef_search {ef_search}")
            }
            Self::ApproximateThenExact { ef_search } => {
                format!("approximate, short, then exact plan, {rows} rows, ef_search {ef_search}")
            }
        }
    }
}

/// Rank exactly when the boundary holds at most this many candidates (counted up to one more).
pub fn exact_cutoff(k: i32, exact_limit: i32) -> i64 {
    i64::from(k.max(exact_limit))
}

/// `name` cut to at most `max` bytes on a character boundary.
fn truncate(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// `<table>_<suffix>`, shortening the table part so the name fits in an identifier.
fn index_name(relname: &str, suffix: &str) -> String {
    let room = MAX_IDENTIFIER_BYTES - suffix.len() - 1;
    format!("{}_{suffix}", truncate(relname, room))
}

/// What `vector_index()` creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRequest {
    /// Schema-qualified, quoted table.
    pub table: String,
    /// The table's own name, for index names.
    pub relname: String,
    pub embedding: String,
    pub metric: Metric,
    pub m: i32,
    pub ef_construction: i32,
    /// The scope columns, tenant first: the b-tree the exact plan and the count read.
    pub scope_columns: Vec<String>,
    /// The table's schema, quoted (indexes live next to their table).
    pub schema: String,
    /// The tenant column and the tenant, for a per-tenant partial index.
    pub partial: Option<(Column, String)>,
    /// The schema pgvector is installed in, quoted: operator classes are named with it.
    pub vector_schema: String,
}

/// What a per-tenant index's comment records, so vector_search knows which tenants have one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantIndexNote {
    pub tenant: String,
    pub embedding: String,
    pub metric: String,
}

pub const TENANT_INDEX_MARKER: &str = "agent_boundary tenant index: ";

impl TenantIndexNote {
    pub fn to_comment(&self) -> String {
        format!("{TENANT_INDEX_MARKER}{}", serde_json::to_string(self).expect("serializable"))
    }

    pub fn from_comment(comment: &str) -> Option<Self> {
        serde_json::from_str(comment.strip_prefix(TENANT_INDEX_MARKER)?).ok()
    }
}

impl IndexRequest {
    pub fn statements(&self) -> Vec<String> {
        let t = &self.table;
        let options = format!("WITH (m = {}, ef_construction = {})", self.m, self.ef_construction);
        let embedding = quote_ident(&self.embedding);
        let opclass = format!("{}.{}", self.vector_schema, self.metric.opclass());
        let vector_key = format!("{}:{}", self.embedding, self.metric.as_str());
        match &self.partial {
            None => {
                let scope = self.scope_columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
                vec![
                    format!(
                        "CREATE INDEX IF NOT EXISTS {} ON {t} USING btree ({scope})",
                        quote_ident(&index_name(&self.relname, "boundary_scope"))
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS {} ON {t} USING hnsw ({embedding} {opclass}) {options}",
                        quote_ident(&index_name(&self.relname, &format!("hnsw_{}", short_hash(&vector_key))))
                    ),
                ]
            }
            Some((column, tenant)) => {
                let name = quote_ident(&index_name(
                    &self.relname,
                    &format!("hnsw_{}_t{}", short_hash(&vector_key), short_hash(tenant)),
                ));
                let note = TenantIndexNote {
                    tenant: tenant.clone(),
                    embedding: self.embedding.clone(),
                    metric: self.metric.as_str().into(),
                };
                vec![
                    format!(
                        "CREATE INDEX IF NOT EXISTS {name} ON {t} USING hnsw ({embedding} {opclass}) {options} \
                         WHERE {} = {}::{}",
                        quote_ident(&column.name),
                        quote_literal(tenant),
                        column.sql_type
                    ),
                    format!("COMMENT ON INDEX {}.{name} IS {}", self.schema, quote_literal(&note.to_comment())),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sql_type: &str) -> Column {
        Column { name: name.into(), sql_type: sql_type.into() }
    }

    fn docs() -> SearchTable {
        SearchTable {
            table: "\"public\".\"docs\"".into(),
            id: "id".into(),
            embedding: "embedding".into(),
            scope: Scope {
                tenant: column("tenant_id", "text"),
                workspace: Some(column("workspace_id", "text")),
                datasource: Some(column("source", "bigint")),
                user: None,
            },
            vector_schema: "\"public\"".into(),
        }
    }

    #[test]
    fn the_filter_binds_every_scope_value_and_excludes_missing_embeddings() {
        assert_eq!(
            docs().candidate_filter(),
            "\"tenant_id\" = $2::text AND \"workspace_id\" = $3::text \
             AND \"source\" = ANY (($4::text[])::bigint[]) \
             AND (($4::text[])::bigint[])::pg_catalog.text[] = $4::text[] AND \"embedding\" IS NOT NULL"
        );
    }

    #[test]
    fn non_text_scope_columns_cast_the_parameter_not_the_column() {
        let mut t = docs();
        t.scope.tenant = column("org", "uuid");
        t.scope.user = Some(column("owner", "integer"));
        let filter = t.candidate_filter();
        assert!(filter.starts_with("\"org\" = ($2::text)::uuid AND"), "{filter}");
        assert!(filter.contains("\"owner\" = ($5::text)::integer"), "{filter}");
    }

    #[test]
    fn odd_identifiers_are_quoted() {
        let mut t = docs();
        t.embedding = "emb\"; DROP TABLE x; --".into();
        t.id = "Id".into();
        let s = t.statements(Metric::L2);
        assert!(s.exact.contains("\"emb\"\"; DROP TABLE x; --\" OPERATOR(\"public\".<->) $1"), "{}", s.exact);
        assert!(s.exact.contains("SELECT \"Id\" AS id"), "{}", s.exact);
    }

    #[test]
    fn the_exact_statement_fences_the_ranking_away_from_the_index() {
        let s = docs().statements(Metric::Cosine);
        assert!(s.exact.contains("OFFSET 0) AS candidates ORDER BY distance LIMIT $6"), "{}", s.exact);
        assert!(s.approximate.contains("ORDER BY \"embedding\" OPERATOR(\"public\".<=>) $1 LIMIT $6"));
        assert!(s.approximate.contains("LIMIT $6 * 4)"), "{}", s.approximate);
        assert!(s.approximate.ends_with("FROM nearest ORDER BY distance LIMIT $6"));
        assert!(s.count.ends_with("LIMIT $6) AS candidates"));
        // No ORDER BY inside: the window and the bounded scan keep the ranking off the index.
        assert!(s.exact_counted.contains("count(*) OVER () AS candidates"), "{}", s.exact_counted);
        assert!(s.exact_counted.ends_with("LIMIT $7) AS bounded) AS counted ORDER BY distance LIMIT $6"));
        assert_eq!(s.exact_counted.matches("ORDER BY").count(), 1);
    }

    #[test]
    fn metrics_map_to_pgvector_operators_and_opclasses() {
        for (name, op, class) in [
            ("cosine", "<=>", "vector_cosine_ops"),
            ("l2", "<->", "vector_l2_ops"),
            ("euclidean", "<->", "vector_l2_ops"),
            ("inner_product", "<#>", "vector_ip_ops"),
            ("ip", "<#>", "vector_ip_ops"),
        ] {
            let m = Metric::parse(name).unwrap();
            assert_eq!((m.operator(), m.opclass()), (op, class));
        }
        assert_eq!(
            Metric::parse("manhattan\n").unwrap_err(),
            "unknown metric \"manhattan\\n\"; use cosine, l2 or inner_product"
        );
    }

    #[test]
    fn k_is_positive_and_bounded() {
        assert_eq!(validate_k(Some(10)), Ok(10));
        assert_eq!(validate_k(Some(MAX_K)), Ok(MAX_K));
        assert_eq!(validate_k(Some(0)).unwrap_err(), "k must be positive, got 0");
        assert_eq!(validate_k(Some(-3)).unwrap_err(), "k must be positive, got -3");
        assert_eq!(
            validate_k(Some(MAX_K + 1)).unwrap_err(),
            "k is 10001; vector_search returns at most 10000 rows"
        );
        assert_eq!(validate_k(None).unwrap_err(), "k must not be NULL");
    }

    #[test]
    fn hnsw_options_follow_pgvector_limits() {
        assert_eq!(validate_hnsw_options(16, 64), Ok(()));
        assert_eq!(validate_hnsw_options(1, 64).unwrap_err(), "m must be between 2 and 100, got 1");
        assert_eq!(
            validate_hnsw_options(16, 2000).unwrap_err(),
            "ef_construction must be between 4 and 1000, got 2000"
        );
        assert_eq!(
            validate_hnsw_options(40, 64).unwrap_err(),
            "ef_construction (64) must be at least 2 * m (80)"
        );
    }

    #[test]
    fn the_exact_cutoff_covers_k() {
        assert_eq!(exact_cutoff(10, 3000), 3000);
        assert_eq!(exact_cutoff(5000, 3000), 5000);
    }

    #[test]
    fn index_names_fit_in_an_identifier_and_differ_per_tenant() {
        let long = "t".repeat(80);
        let mut r = IndexRequest {
            table: "\"public\".\"docs\"".into(),
            relname: long,
            embedding: "embedding".into(),
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 64,
            scope_columns: vec!["tenant_id".into(), "workspace_id".into()],
            schema: "\"public\"".into(),
            partial: None,
            vector_schema: "\"public\"".into(),
        };
        let shared = r.statements();
        assert_eq!(shared.len(), 2);
        assert!(shared[0].contains("USING btree (\"tenant_id\", \"workspace_id\")"), "{}", shared[0]);
        assert!(shared[1].contains(
            "USING hnsw (\"embedding\" \"public\".vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        ));
        r.partial = Some((column("tenant_id", "text"), "acme".into()));
        let a = r.statements();
        r.partial = Some((column("tenant_id", "text"), "it's \\ odd".into()));
        let b = r.statements();
        assert!(a[0].ends_with("WHERE \"tenant_id\" = 'acme'::text"), "{}", a[0]);
        assert!(b[0].ends_with("WHERE \"tenant_id\" = E'it''s \\\\ odd'::text"), "{}", b[0]);
        let note = a[1].split(" IS ").nth(1).unwrap();
        assert_eq!(
            TenantIndexNote::from_comment(note.trim_matches('\'')),
            Some(TenantIndexNote {
                tenant: "acme".into(),
                embedding: "embedding".into(),
                metric: "cosine".into()
            })
        );
        assert!(a[1].starts_with("COMMENT ON INDEX \"public\".\""), "{}", a[1]);
        for ddl in shared.iter().chain(&a).chain(&b) {
            let name = ddl.split('"').nth(1).unwrap();
            assert!(name.len() <= MAX_IDENTIFIER_BYTES, "{name}");
        }
        assert_ne!(a[0].split('"').nth(1), b[0].split('"').nth(1));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
