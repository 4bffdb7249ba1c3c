//! Filtered vector search: `boundary.vector_search(tbl, query, k, ...)` ranks only the rows of
//! the current boundary and returns exactly min(k, visible) of them; `boundary.vector_index()`
//! creates the indexes its plans use.
//!
//! Every statement carries the boundary's tenant, workspace, datasources and user as bound
//! values in its WHERE clause, so the planner filters before it ranks, and runs as the caller,
//! so row level security applies on top. Per call: count the candidates (up to a cutoff); rank
//! them exactly if few, else scan the HNSW index iteratively and fall back to exact ranking if
//! it comes back short.

mod direct_queries;
pub mod sql;

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    include!("tests.rs");
}

use crate::boundary::claims::Boundary;
use crate::boundary::sealed_guc;
use crate::error::{BoundaryError, Result};
use crate::gucs;
use crate::pg::{catalog, guc};
use crate::policy;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{AnyElement, PgRelation};
use sql::{IndexRequest, Metric, Path, SearchStatements, SearchTable};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::rc::Rc;

/// What one (table, embedding column, id column, metric) needs, resolved from the catalog.
struct Target {
    display: String,
    statements: SearchStatements,
    /// The column's declared dimensions, when it has them.
    dimensions: Option<i32>,
    /// Kept plans of the count and exact statements (PostgreSQL revalidates them after DDL).
    /// The approximate statement is planned per call so its tenant is a constant that a
    /// per-tenant partial index can match.
    count_plan: RefCell<Option<Rc<OwnedPreparedStatement>>>,
    exact_plan: RefCell<Option<Rc<OwnedPreparedStatement>>>,
    exact_counted_plan: RefCell<Option<Rc<OwnedPreparedStatement>>>,
    /// Boundaries (by scope) last seen with more candidates than the exact cutoff: for them a
    /// call counts first, for the others it ranks and counts in one pass (see `search`). A hint
    /// for speed only; which path answers never depends on it. Emptied when full.
    large_scopes: RefCell<HashSet<String>>,
    /// Tenants with their own HNSW index (made by vector_index) on this column and metric.
    tenant_indexes: HashSet<String>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TargetKey {
    table: pg_sys::Oid,
    embedding: String,
    id: String,
    metric: Metric,
}

thread_local! {
    /// Resolved targets; only SQL text, plans and column facts, never rows (policies still
    /// decide what each statement sees).
    static TARGETS: RefCell<HashMap<TargetKey, Rc<Target>>> = RefCell::new(HashMap::new());
    /// Relations invalidated since the last call (InvalidOid: all), forgotten at the start of
    /// the next call rather than inside the callback, which can run while a plan executes.
    static STALE: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Bumped by every invalidation, so a target resolved while one arrived is not cached.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static PGVECTOR_LOADED: Cell<bool> = const { Cell::new(false) };
}

/// Subscribed at load: note which targets went stale; they are forgotten at the next call.
fn note_invalidation(relid: pg_sys::Oid) {
    GENERATION.with(|g| g.set(g.get() + 1));
    STALE.with(|stale| {
        if let Ok(mut stale) = stale.try_borrow_mut() {
            stale.push(relid);
        }
    });
}

fn forget_stale_targets() {
    let stale = STALE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if stale.is_empty() {
        return;
    }
    TARGETS.with(|targets| {
        let mut targets = targets.borrow_mut();
        if stale.contains(&pg_sys::InvalidOid) {
            targets.clear();
        } else {
            targets.retain(|key, _| !stale.contains(&key.table));
        }
    });
}

pub fn init() {
    crate::pg::invalidation::subscribe(note_invalidation);
    direct_queries::init();
}

/// The hnsw.* settings belong to pgvector's library, which may not be loaded in this backend yet.
fn load_pgvector() {
    if !PGVECTOR_LOADED.with(|l| l.replace(true)) {
        // SAFETY: LOAD of an installed extension library; raises on failure.
        unsafe { pg_sys::load_file(c"$libdir/vector".as_ptr(), false) };
    }
}

/// The embedding column's facts: is it pgvector's `vector`, its dimensions, its printed type,
/// and pgvector's schema (quoted).
fn vector_column(table: &catalog::Table, oid: pg_sys::Oid, name: &str) -> Result<(Option<i32>, String)> {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT t.typname = 'vector' AND t.typnamespace = e.extnamespace,
                    a.atttypmod,
                    pg_catalog.format_type(a.atttypid, a.atttypmod),
                    pg_catalog.quote_ident(n.nspname)
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
               JOIN pg_catalog.pg_extension e ON e.extname = 'vector'
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            Some(1),
            &[oid.into(), name.into()],
        )?;
        rows.into_iter()
            .next()
            .map(|row| {
                Ok::<_, BoundaryError>((
                    row.get::<bool>(1)?.unwrap_or(false),
                    row.get::<i32>(2)?.unwrap_or(-1),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?.unwrap_or_default(),
                ))
            })
            .transpose()
    })?;
    let Some((is_vector, typmod, sql_type, schema)) = found else {
        return Err(BoundaryError::UndefinedColumn(format!(
            "table {} has no column \"{name}\"; pass embedding_column => '<column>'",
            table.display
        )));
    };
    if !is_vector {
        return Err(BoundaryError::WrongType(format!(
            "column \"{name}\" of table {} is {sql_type}; vector_search ranks vector columns",
            table.display
        )));
    }
    Ok(((typmod > 0).then_some(typmod), schema))
}

/// The tenants whose own (valid) HNSW index vector_index made for this column and metric.
fn tenant_indexes(key: &TargetKey) -> Result<HashSet<String>> {
    let comments: Vec<String> = Spi::connect(|client| {
        client
            .select(
                "SELECT d.description
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_description d
                     ON d.objoid = i.indexrelid AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  WHERE i.indrelid = $1 AND i.indisvalid AND i.indpred IS NOT NULL",
                None,
                &[key.table.into()],
            )?
            .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(comments
        .iter()
        .filter_map(|c| sql::TenantIndexNote::from_comment(c))
        .filter(|n| n.embedding == key.embedding && n.metric == key.metric.as_str())
        .map(|n| n.tenant)
        .collect())
}

fn resolve(key: &TargetKey) -> Result<Target> {
    let (table, options) =
        policy::protected(key.table, "vector_search reads only tables protected by boundary.protect()")?;
    let scope = policy::plan(&table, &options)?.scope;
    let (dimensions, vector_schema) = vector_column(&table, key.table, &key.embedding)?;
    if catalog::column(&table, &key.id)?.is_none() {
        return Err(BoundaryError::UndefinedColumn(format!(
            "table {} has no column \"{}\"; pass id_column => '<column>'",
            table.display, key.id
        )));
    }
    let search = SearchTable {
        table: table.qualified.clone(),
        id: key.id.clone(),
        embedding: key.embedding.clone(),
        scope,
        vector_schema,
    };
    Ok(Target {
        display: table.display,
        statements: search.statements(key.metric),
        dimensions,
        count_plan: RefCell::new(None),
        exact_plan: RefCell::new(None),
        exact_counted_plan: RefCell::new(None),
        large_scopes: RefCell::new(HashSet::new()),
        tenant_indexes: tenant_indexes(key)?,
    })
}

fn target(key: TargetKey) -> Result<Rc<Target>> {
    forget_stale_targets();
    if let Some(found) = TARGETS.with(|t| t.borrow().get(&key).cloned()) {
        return Ok(found);
    }
    let generation = GENERATION.with(Cell::get);
    let resolved = Rc::new(resolve(&key)?);
    if generation == GENERATION.with(Cell::get) {
        TARGETS.with(|t| t.borrow_mut().insert(key, resolved.clone()));
    }
    Ok(resolved)
}

/// The query's dimensions and whether it is all zeros, read from pgvector's layout
/// (varlena header, int16 dim, int16 unused, float4[dim]).
fn query_shape(query: &AnyElement) -> (i32, bool) {
    // SAFETY: the argument is declared `vector`, so the datum is a pgvector varlena;
    // pg_detoast_datum returns it with a 4-byte header, in memory valid for this call.
    unsafe {
        let detoasted = pg_sys::pg_detoast_datum(query.datum().cast_mut_ptr());
        let base = detoasted.cast::<u8>();
        let dim = base.add(4).cast::<i16>().read_unaligned().max(0);
        let values = base.add(8).cast::<f32>();
        // Element by element: an unaligned datum must not become a &[f32].
        let all_zero = (0..usize::from(dim.unsigned_abs())).all(|i| values.add(i).read_unaligned() == 0.0);
        (i32::from(dim), all_zero)
    }
}

/// Runs `f` with the index-scan settings vector_search needs, then puts the session's own
/// values back, as a function's SET clause would (on error, transaction abort restores them).
/// pgvector before 0.8 has no iterative scan: its HNSW scan stops after ef_search candidates,
/// comes back short more often, and the exact ranking that follows a short result still
/// returns min(k, visible) rows.
fn with_index_settings<T>(ef_search: i32, f: impl FnOnce() -> Result<T>) -> Result<T> {
    load_pgvector();
    let ef_search = CString::new(ef_search.to_string()).expect("digits have no NUL");
    guc::with_nest_level(|| {
        for (name, value) in
            [(c"hnsw.iterative_scan", c"relaxed_order"), (c"hnsw.ef_search", ef_search.as_c_str())]
        {
            if guc::exists(name) {
                guc::set(name, value, pg_sys::GucContext::PGC_USERSET, pg_sys::GucAction::GUC_ACTION_SAVE);
            }
        }
        direct_queries::with_approximate_indexes(f)
    })
}

type Hit = (Option<String>, Option<f64>);

fn hits(table: pgrx::spi::SpiTupleTable) -> Result<Vec<Hit>> {
    table.map(|row| Ok((row.get::<String>(1)?, row.get::<f64>(2)?))).collect()
}

/// The rows of `exact_counted` and how many candidates they were ranked from (0 when none).
fn counted_hits(table: pgrx::spi::SpiTupleTable) -> Result<(Vec<Hit>, i64)> {
    let mut candidates = 0;
    let hits = table
        .map(|row| {
            candidates = row.get::<i64>(3)?.unwrap_or(0);
            Ok((row.get::<String>(1)?, row.get::<f64>(2)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((hits, candidates))
}

/// What decides a boundary's candidate rows: its scope fields.
fn scope_key(boundary: &Boundary) -> String {
    [
        boundary.tenant_id.as_str(),
        boundary.workspace_id.as_str(),
        boundary.user_id.as_str(),
        &boundary.datasource_ids.join("\u{1}"),
    ]
    .join("\u{0}")
}

fn arguments<'a>(query: &AnyElement, boundary: &'a Boundary, limit: i64) -> Vec<DatumWithOid<'a>> {
    vec![
        // SAFETY: the datum is the caller's argument, of the type its oid names.
        unsafe { DatumWithOid::new(*query, query.oid()) },
        boundary.tenant_id.as_str().into(),
        boundary.workspace_id.as_str().into(),
        boundary.datasource_ids.clone().into(),
        boundary.user_id.as_str().into(),
        limit.into(),
    ]
}

fn search(
    tbl: Option<pg_sys::Oid>,
    query: Option<AnyElement>,
    k: Option<i32>,
    metric: Option<&str>,
    embedding_column: Option<&str>,
    id_column: Option<&str>,
) -> Result<(Vec<Hit>, Path)> {
    let boundary = sealed_guc::current()?;
    let null = |what: &str| BoundaryError::NullArgument(format!("{what} must not be NULL"));
    let tbl = tbl.ok_or_else(|| null("tbl"))?;
    let query = query.ok_or_else(|| null("query"))?;
    let k = sql::validate_k(k).map_err(|e| {
        if k.is_none() {
            BoundaryError::NullArgument(e)
        } else {
            BoundaryError::InvalidArgument(e)
        }
    })?;
    let metric =
        Metric::parse(metric.ok_or_else(|| null("metric"))?).map_err(BoundaryError::InvalidArgument)?;
    let identifier = |what: &str, name: Option<&str>| -> Result<String> {
        let name = name.ok_or_else(|| null(what))?;
        catalog::validate_identifier(what, name).map_err(BoundaryError::InvalidArgument)?;
        Ok(name.to_string())
    };
    let key = TargetKey {
        table: tbl,
        embedding: identifier("embedding_column", embedding_column)?,
        id: identifier("id_column", id_column)?,
        metric,
    };
    let target = target(key)?;
    let (dimensions, all_zero) = query_shape(&query);
    if let Some(expected) = target.dimensions.filter(|d| *d != dimensions) {
        return Err(BoundaryError::InvalidArgument(format!(
            "query has {dimensions} dimensions; table {} stores vectors of {expected}",
            target.display
        )));
    }
    if all_zero && metric == Metric::Cosine {
        return Err(BoundaryError::InvalidArgument(
            "query is the zero vector, which has no cosine distance to anything".into(),
        ));
    }

    let cutoff = sql::exact_cutoff(k, gucs::vector_exact_limit());
    let counting = arguments(&query, &boundary, cutoff + 1);
    let ranking = arguments(&query, &boundary, i64::from(k));
    let scope = scope_key(&boundary);
    let seen_large = target.large_scopes.borrow().contains(&scope);
    Spi::connect(|client| {
        let exact = || {
            hits(crate::pg::spi_plans::select_in(
                client,
                &target.exact_plan,
                &target.statements.exact,
                &ranking,
            )?)
        };
        // Either way the answer is exact ranking when the boundary has at most `cutoff`
        // candidates: in one pass that ranks up to cutoff + 1 of them and counts them (most
        // boundaries), or, for one seen with more before, a count first (so a large tenant does
        // not pay for ranking rows it will not use).
        let candidates = if seen_large {
            crate::pg::spi_plans::select_in(client, &target.count_plan, &target.statements.count, &counting)?
                .first()
                .get_one::<i64>()?
                .unwrap_or(0)
        } else {
            let mut ranked_and_counted = arguments(&query, &boundary, i64::from(k));
            ranked_and_counted.push((cutoff + 1).into());
            let (ranked, candidates) = counted_hits(crate::pg::spi_plans::select_in(
                client,
                &target.exact_counted_plan,
                &target.statements.exact_counted,
                &ranked_and_counted,
            )?)?;
            if candidates <= cutoff {
                return Ok((ranked, Path::Exact));
            }
            candidates
        };
        remember_scope_size(&target, scope, candidates > cutoff);
        if candidates <= cutoff {
            return Ok((exact()?, Path::Exact));
        }
        // More than cutoff >= k candidates exist, so anything shorter than k is the index's doing.
        // A graph shared with other tenants needs a wider beam for the same recall.
        let ef_search = if target.tenant_indexes.contains(&boundary.tenant_id) {
            gucs::vector_ef_search_tenant_index()
        } else {
            gucs::vector_ef_search()
        };
        let ef_search = ef_search.max(k).min(1000);
        let nearest = with_index_settings(ef_search, || {
            hits(client.select(target.statements.approximate.as_str(), None, &ranking)?)
        })?;
        if nearest.len() == k as usize {
            return Ok((nearest, Path::Approximate { ef_search }));
        }
        Ok((exact()?, Path::ApproximateThenExact { ef_search }))
    })
}

/// Notes whether a boundary's scope had more candidates than the exact cutoff.
fn remember_scope_size(target: &Target, scope: String, large: bool) {
    let mut large_scopes = target.large_scopes.borrow_mut();
    if !large {
        large_scopes.remove(&scope);
        return;
    }
    if large_scopes.len() >= gucs::remembered_tokens() {
        large_scopes.clear();
    }
    large_scopes.insert(scope);
}

/// The k rows of `tbl` nearest to `query` among those the current boundary may see (its
/// tenant, workspace, datasources and user, and any other policy on the table): exactly
/// min(k, visible rows with an embedding), nearest first, `distance` as pgvector's operator
/// for the metric gives it (`inner_product`: the negated inner product). `id` is the row's
/// id column as text.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION boundary.vector_search(
    tbl regclass,
    query vector,
    k integer,
    metric text DEFAULT 'cosine',
    embedding_column text DEFAULT 'embedding',
    id_column text DEFAULT 'id'
) RETURNS TABLE (id text, distance double precision)
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'vector_search_wrapper';
COMMENT ON FUNCTION boundary.vector_search(regclass, vector, integer, text, text, text) IS
  'Exactly min(k, visible) nearest rows of the current boundary, filtered before ranking.';
"#
)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from this signature
fn vector_search(
    tbl: Option<pg_sys::Oid>,
    query: Option<AnyElement>,
    k: Option<i32>,
    metric: Option<&str>,
    embedding_column: Option<&str>,
    id_column: Option<&str>,
) -> std::result::Result<
    TableIterator<'static, (name!(id, Option<String>), name!(distance, Option<f64>))>,
    ErrorReport,
> {
    let (hits, path) = search(tbl, query, k, metric, embedding_column, id_column)?;
    pgrx::debug1!("agent_boundary vector_search: {}", path.describe(hits.len()));
    Ok(TableIterator::new(hits))
}

/// The indexes vector_search's plans use. Without `tenant`: a b-tree on the scope columns
/// (tenant, workspace, datasource, user) for counting and exact ranking, and one HNSW index on
/// the embedding. With `tenant`: an HNSW index over that tenant's rows only, for a large tenant
/// whose searches should not walk other tenants' graph. Returns the DDL; with `run => false`
/// only returns it (e.g. to run as CREATE INDEX CONCURRENTLY, which a function cannot).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn vector_index(
    tbl: PgRelation,
    metric: default!(&str, "'cosine'"),
    embedding_column: default!(&str, "'embedding'"),
    tenant: default!(Option<&str>, "NULL"),
    m: default!(i32, 16),
    ef_construction: default!(i32, 128),
    run: default!(bool, true),
) -> std::result::Result<SetOfIterator<'static, String>, ErrorReport> {
    let oid = catalog::release(tbl);
    let invalid = BoundaryError::InvalidArgument;
    let metric = Metric::parse(metric).map_err(invalid)?;
    sql::validate_hnsw_options(m, ef_construction).map_err(invalid)?;
    let (table, options) = policy::protected(oid, "run boundary.protect() on it first")?;
    let scope = policy::plan(&table, &options)?.scope;
    let (_, vector_schema) = vector_column(&table, oid, embedding_column)?;
    let partial = tenant.map(|tenant| (scope.tenant.clone(), tenant.to_string()));
    let scope_columns: Vec<String> = scope.columns().into_iter().map(|(c, _)| c.name.clone()).collect();
    let statements = IndexRequest {
        table: table.qualified.clone(),
        relname: table.name.clone(),
        schema: catalog::quote_ident(&table.schema),
        embedding: embedding_column.to_string(),
        metric,
        m,
        ef_construction,
        scope_columns,
        partial,
        vector_schema,
    }
    .statements();
    if run {
        for statement in &statements {
            Spi::run(statement).map_err(BoundaryError::from)?;
        }
    }
    Ok(SetOfIterator::new(statements))
}
