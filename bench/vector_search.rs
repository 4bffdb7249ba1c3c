//! Recall and latency of filtered vector search, arms side by side in one run.
//!
//! Run by `bash bench/vector_search.sh`, which starts a server with a release build and passes
//! its port. Generates clustered synthetic vectors (deterministic), assigns them to tenants with
//! Zipf-skewed sizes, builds the shared indexes with `boundary.vector_index`, then for each
//! query (a tenant from one selectivity bucket, a vector near one of the cluster centres) runs
//! every arm inside that tenant's boundary, as an ordinary role, in rotating order:
//!
//! * post-filter HNSW at ef_search 40 and 200 (the index ranks, row level security filters);
//! * iterative index scans, strict and relaxed order (pgvector 0.8, ef_search 40);
//! * exact ranking of the tenant's rows (the ground truth);
//! * `boundary.vector_search`;
//! * a framework's own `ORDER BY embedding <=> $1 LIMIT 10` on the table with the default
//!   settings (approximate indexes withheld from plans over protected tables).
//!
//! Then it builds per-tenant partial HNSW indexes for the tenants of the two large buckets and
//! compares a direct query on the partial index with vector_search (which now uses it too).
//! Markdown goes to stdout, progress to stderr.

#[path = "../tests/support/mod.rs"]
#[allow(unused_macros)]
mod support;

use futures_util::pin_mut;
use pgvector::Vector;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use support::*;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

const K: usize = 10;
/// Standard deviation of each coordinate around its centre (centres are N(0, 1) per coordinate).
const SPREAD: f32 = 0.6;

struct Settings {
    port: u16,
    vectors: usize,
    dimensions: usize,
    tenants: usize,
    queries_per_bucket: usize,
    centres: usize,
    /// vector_search settings for the agent role, when not the defaults.
    ef_search: Option<usize>,
    exact_limit: Option<usize>,
    /// HNSW build options for every index.
    m: usize,
    ef_construction: usize,
}

impl Settings {
    fn from_args() -> Settings {
        let mut s = Settings {
            port: 0,
            vectors: 200_000,
            dimensions: 128,
            tenants: 1000,
            queries_per_bucket: 200,
            centres: 256,
            ef_search: None,
            exact_limit: None,
            m: 16,
            ef_construction: 128,
        };
        let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
        for pair in args.chunks(2) {
            let value = || pair.get(1).and_then(|v| v.parse::<usize>().ok()).expect("--flag <number>");
            match pair[0].as_str() {
                "--port" => s.port = value() as u16,
                "--vectors" => s.vectors = value(),
                "--dimensions" => s.dimensions = value(),
                "--tenants" => s.tenants = value(),
                "--queries" => s.queries_per_bucket = value(),
                "--ef-search" => s.ef_search = Some(value()),
                "--exact-limit" => s.exact_limit = Some(value()),
                "--m" => s.m = value(),
                "--ef-construction" => s.ef_construction = value(),
                other => panic!("unknown argument {other}"),
            }
        }
        assert!(s.port != 0, "--port is required");
        s
    }
}

/// A point near a randomly chosen centre.
fn around(rng: &mut Rng, centres: &[Vec<f32>]) -> Vec<f32> {
    let centre = &centres[rng.below(centres.len())];
    centre.iter().map(|c| c + SPREAD * rng.normal()).collect()
}

fn tenant_name(i: usize) -> String {
    format!("t{:04}", i + 1)
}

/// Zipf (s = 1) sizes summing to `total`, every tenant at least one row, largest first.
fn zipf_sizes(tenants: usize, total: usize) -> Vec<usize> {
    let weights: Vec<f64> = (1..=tenants).map(|i| 1.0 / i as f64).collect();
    let sum: f64 = weights.iter().sum();
    let mut sizes: Vec<usize> =
        weights.iter().map(|w| ((w / sum) * total as f64).round().max(1.0) as usize).collect();
    let assigned: usize = sizes.iter().sum();
    sizes[0] = (sizes[0] as i64 + total as i64 - assigned as i64) as usize;
    sizes
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Bucket {
    Large,
    Medium,
    Small,
    Tiny,
}

impl Bucket {
    const ALL: [Bucket; 4] = [Bucket::Large, Bucket::Medium, Bucket::Small, Bucket::Tiny];

    fn of(share: f64) -> Bucket {
        match share {
            s if s >= 0.05 => Bucket::Large,
            s if s >= 0.01 => Bucket::Medium,
            s if s >= 0.001 => Bucket::Small,
            _ => Bucket::Tiny,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Bucket::Large => ">=5%",
            Bucket::Medium => "1-5%",
            Bucket::Small => "0.1-1%",
            Bucket::Tiny => "<0.1%",
        }
    }
}

struct Arm {
    name: &'static str,
    /// SET LOCAL statements run (untimed) before the timed query.
    settings: &'static str,
    sql: &'static str,
}

/// RLS (the boundary) does the tenant filtering in every post-filter arm, as it would for an
/// app that relies on it; they opt in to approximate indexes on protected tables
/// (agent_boundary.approximate_direct_vector_queries), and enable_sort = off keeps the planner on
/// the HNSW index for them.
const POST_FILTER: &str = "SELECT id::text FROM bench_docs ORDER BY embedding <=> $1 LIMIT 10";
const EXACT: &str = "SELECT id::text FROM (SELECT id, embedding <=> $1 AS d FROM bench_docs \
                     WHERE tenant_id = $2 OFFSET 0) AS s ORDER BY d LIMIT 10";
const VECTOR_SEARCH: &str = "SELECT id FROM boundary.vector_search('bench_docs', $1, 10)";
const PARTIAL: &str =
    "SELECT id::text FROM bench_docs WHERE tenant_id = $2 ORDER BY embedding <=> $1 LIMIT 10";

const SHARED_ARMS: [Arm; 7] = [
    Arm { name: "exact per-tenant scan (truth)", settings: "", sql: EXACT },
    Arm {
        name: "post-filter HNSW, ef_search 40",
        settings: "SET LOCAL agent_boundary.approximate_direct_vector_queries = on; SET LOCAL enable_sort = off; SET LOCAL hnsw.iterative_scan = off; SET LOCAL hnsw.ef_search = 40",
        sql: POST_FILTER,
    },
    Arm {
        name: "post-filter HNSW, ef_search 200",
        settings: "SET LOCAL agent_boundary.approximate_direct_vector_queries = on; SET LOCAL enable_sort = off; SET LOCAL hnsw.iterative_scan = off; SET LOCAL hnsw.ef_search = 200",
        sql: POST_FILTER,
    },
    Arm {
        name: "iterative scan, strict order",
        settings: "SET LOCAL agent_boundary.approximate_direct_vector_queries = on; SET LOCAL enable_sort = off; SET LOCAL hnsw.iterative_scan = strict_order; SET LOCAL hnsw.ef_search = 40",
        sql: POST_FILTER,
    },
    Arm {
        name: "iterative scan, relaxed order",
        settings: "SET LOCAL agent_boundary.approximate_direct_vector_queries = on; SET LOCAL enable_sort = off; SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = 40",
        sql: POST_FILTER,
    },
    Arm { name: "boundary.vector_search", settings: "SET LOCAL client_min_messages = debug1", sql: VECTOR_SEARCH },
    Arm { name: "a framework's own query, default settings", settings: "", sql: POST_FILTER },
];

const PARTIAL_ARMS: [Arm; 3] = [
    Arm { name: "exact per-tenant scan (truth)", settings: "", sql: EXACT },
    Arm {
        name: "per-tenant partial HNSW, ef_search 100",
        settings:
            "SET LOCAL agent_boundary.approximate_direct_vector_queries = on; SET LOCAL hnsw.ef_search = 100",
        sql: PARTIAL,
    },
    Arm {
        name: "boundary.vector_search",
        settings: "SET LOCAL client_min_messages = debug1",
        sql: VECTOR_SEARCH,
    },
];

/// Every arm list starts with the exact arm, the ground truth for recall.
const TRUTH: usize = 0;

#[derive(Default)]
struct Samples {
    recall: Vec<f64>,
    short: usize,
    millis: Vec<f64>,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

struct Query {
    bucket: Bucket,
    tenant: String,
    vector: Vector,
}

fn progress(start: Instant, message: &str) {
    eprintln!("[{:>6.1}s] {message}", start.elapsed().as_secs_f64());
}

/// Loads the table and builds the shared indexes; returns the centres, the tenant sizes and the
/// index build time in seconds.
async fn load(
    admin: &Client,
    s: &Settings,
    rng: &mut Rng,
    start: Instant,
) -> (Vec<Vec<f32>>, Vec<usize>, f64) {
    admin
        .batch_execute(&format!(
            "{BASE_FIXTURE}
             CREATE ROLE bench_agent LOGIN NOBYPASSRLS;
             SELECT count(boundary.register_principal(format('t%s', lpad(i::text, 4, '0')), 'ws', 'agent', 'member'))
               FROM generate_series(1, {}) AS i;
             CREATE TABLE bench_docs (tenant_id text NOT NULL, id bigint PRIMARY KEY, embedding vector({}) NOT NULL);
             SELECT count(*) FROM boundary.protect('bench_docs');
             GRANT SELECT ON bench_docs TO bench_agent;",
            s.tenants, s.dimensions
        ))
        .await
        .unwrap();
    for (setting, value) in [("vector_ef_search", s.ef_search), ("vector_exact_limit", s.exact_limit)] {
        if let Some(value) = value {
            admin
                .batch_execute(&format!("ALTER ROLE bench_agent SET agent_boundary.{setting} = {value}"))
                .await
                .unwrap();
        }
    }
    let centres: Vec<Vec<f32>> =
        (0..s.centres).map(|_| (0..s.dimensions).map(|_| rng.normal()).collect()).collect();
    let sizes = zipf_sizes(s.tenants, s.vectors);
    let mut owner: Vec<usize> =
        sizes.iter().enumerate().flat_map(|(t, n)| std::iter::repeat_n(t, *n)).collect();
    for i in (1..owner.len()).rev() {
        owner.swap(i, rng.below(i + 1));
    }
    let vector_type = admin.prepare("SELECT $1::vector").await.unwrap().params()[0].clone();
    let sink =
        admin.copy_in("COPY bench_docs (tenant_id, id, embedding) FROM STDIN (FORMAT binary)").await.unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8, vector_type]);
    pin_mut!(writer);
    for (id, tenant) in owner.iter().enumerate() {
        let embedding = Vector::from(around(rng, &centres));
        writer.as_mut().write(&[&tenant_name(*tenant), &(id as i64), &embedding]).await.unwrap();
        if (id + 1) % 50_000 == 0 {
            progress(start, &format!("loaded {} of {} vectors", id + 1, s.vectors));
        }
    }
    writer.finish().await.unwrap();
    admin.batch_execute("VACUUM ANALYZE bench_docs").await.unwrap();
    progress(start, "building the b-tree and the shared HNSW index (boundary.vector_index)");
    let built = Instant::now();
    admin
        .batch_execute(&format!(
            "SELECT count(*) FROM boundary.vector_index('bench_docs', m => {}, ef_construction => {})",
            s.m, s.ef_construction
        ))
        .await
        .unwrap();
    let build_secs = built.elapsed().as_secs_f64();
    progress(start, &format!("indexes built in {build_secs:.1}s"));
    (centres, sizes, build_secs)
}

fn queries(s: &Settings, sizes: &[usize], centres: &[Vec<f32>], rng: &mut Rng) -> Vec<Query> {
    let mut by_bucket: BTreeMap<Bucket, Vec<usize>> = BTreeMap::new();
    for (t, n) in sizes.iter().enumerate() {
        by_bucket.entry(Bucket::of(*n as f64 / s.vectors as f64)).or_default().push(t);
    }
    let mut out = Vec::new();
    for bucket in Bucket::ALL {
        let Some(tenants) = by_bucket.get(&bucket) else { continue };
        for _ in 0..s.queries_per_bucket {
            let tenant = tenants[rng.below(tenants.len())];
            let vector = Vector::from(around(rng, centres));
            out.push(Query { bucket, tenant: tenant_name(tenant), vector });
        }
    }
    out
}

/// Runs every arm for every query (rotating the order) and collects recall against the first
/// arm (the exact scan), short results and latency. Also counts vector_search's plans.
async fn run_arms(
    arms: &[Arm],
    queries: &[&Query],
    s: &Settings,
    start: Instant,
) -> (BTreeMap<(Bucket, usize), Samples>, BTreeMap<(Bucket, String), usize>) {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(s.port).user("bench_agent").dbname("postgres");
    let (agent, notices) = connect_with_notices(config).await.unwrap();
    let vector_type = agent.prepare("SELECT $1::vector").await.unwrap().params()[0].clone();
    let mut samples: BTreeMap<(Bucket, usize), Samples> = BTreeMap::new();
    let mut plans: BTreeMap<(Bucket, String), usize> = BTreeMap::new();
    for (n, q) in queries.iter().enumerate() {
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &app_token(&q.tenant, "ws", "agent", "member", json!({}))).await.unwrap();
        let mut results: Vec<Option<(Vec<String>, f64)>> = (0..arms.len()).map(|_| None).collect();
        for turn in 0..arms.len() {
            let a = (n + turn) % arms.len();
            let arm = &arms[a];
            agent.batch_execute(&format!("SAVEPOINT arm; {}", arm.settings)).await.unwrap();
            notices.lock().unwrap().clear();
            let timer = Instant::now();
            let rows = agent
                .query_typed(arm.sql, &[(&q.vector, vector_type.clone()), (&q.tenant, Type::TEXT)])
                .await
                .unwrap();
            let elapsed = timer.elapsed();
            agent.batch_execute("ROLLBACK TO SAVEPOINT arm").await.unwrap();
            if arm.sql == VECTOR_SEARCH {
                let plan = notices
                    .lock()
                    .unwrap()
                    .iter()
                    .find_map(|m| m.strip_prefix("DEBUG: agent_boundary vector_search: "))
                    .map(|m| m.split(" plan").next().unwrap_or(m).to_string())
                    .unwrap_or_else(|| "unreported".into());
                *plans.entry((q.bucket, plan)).or_default() += 1;
            }
            results[a] = Some((rows.iter().map(|r| r.get::<_, String>(0)).collect(), ms(elapsed)));
        }
        agent.batch_execute("COMMIT").await.unwrap();
        let truth: HashSet<String> = results[TRUTH].as_ref().unwrap().0.iter().cloned().collect();
        for (a, result) in results.into_iter().enumerate() {
            let (ids, millis) = result.unwrap();
            let entry = samples.entry((q.bucket, a)).or_default();
            let found = ids.iter().filter(|id| truth.contains(*id)).count();
            entry.recall.push(if truth.is_empty() { 1.0 } else { found as f64 / truth.len() as f64 });
            entry.short += usize::from(ids.len() < truth.len().min(K));
            entry.millis.push(millis);
        }
        if (n + 1) % 100 == 0 {
            progress(start, &format!("{} of {} queries", n + 1, queries.len()));
        }
    }
    (samples, plans)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn table(arms: &[Arm], buckets: &[Bucket], samples: &BTreeMap<(Bucket, usize), Samples>) -> String {
    let mut out = String::from(
        "| bucket | arm | recall@10 mean | recall@10 p5 | short results | p50 ms | p99 ms | p50 / exact | p99 / exact |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for bucket in buckets {
        let Some(truth) = samples.get(&(*bucket, TRUTH)) else { continue };
        let (t50, t99) = (percentile(&truth.millis, 50.0), percentile(&truth.millis, 99.0));
        for (a, arm) in arms.iter().enumerate() {
            let x = &samples[&(*bucket, a)];
            let (p50, p99) = (percentile(&x.millis, 50.0), percentile(&x.millis, 99.0));
            out += &format!(
                "| {} | {} | {:.3} | {:.2} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                bucket.label(),
                arm.name,
                mean(&x.recall),
                percentile(&x.recall, 5.0),
                100.0 * x.short as f64 / x.millis.len() as f64,
                p50,
                p99,
                p50 / t50,
                p99 / t99
            );
        }
    }
    out
}

fn plan_summary(plans: &BTreeMap<(Bucket, String), usize>) -> String {
    let mut lines = Vec::new();
    for bucket in Bucket::ALL {
        let counts: Vec<String> =
            plans.iter().filter(|((b, _), _)| *b == bucket).map(|((_, p), n)| format!("{p} {n}")).collect();
        if !counts.is_empty() {
            lines.push(format!("{}: {}", bucket.label(), counts.join(", ")));
        }
    }
    lines.join("; ")
}

fn main() {
    let s = Settings::from_args();
    let start = Instant::now();
    let mut rng = Rng(2026);
    block_on(async {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(s.port).user("postgres").dbname("postgres");
        let admin = connect_with(config).await.unwrap();
        progress(
            start,
            &format!("generating and loading {} vectors of {} dimensions", s.vectors, s.dimensions),
        );
        let (centres, sizes, shared_build) = load(&admin, &s, &mut rng, start).await;
        let all = queries(&s, &sizes, &centres, &mut rng);
        let refs: Vec<&Query> = all.iter().collect();
        progress(
            start,
            &format!("{} queries x {} arms on the shared indexes", refs.len(), SHARED_ARMS.len()),
        );
        let (shared, shared_plans) = run_arms(&SHARED_ARMS, &refs, &s, start).await;

        let large: Vec<String> = sizes
            .iter()
            .enumerate()
            .filter(|(_, n)| Bucket::of(**n as f64 / s.vectors as f64) <= Bucket::Medium)
            .map(|(t, _)| tenant_name(t))
            .collect();
        progress(
            start,
            &format!("building per-tenant partial HNSW indexes for the {} tenants >= 1%", large.len()),
        );
        let built = Instant::now();
        for tenant in &large {
            admin
                .query(
                    &format!(
                        "SELECT count(*) FROM boundary.vector_index('bench_docs', tenant => $1, m => {}, ef_construction => {})",
                        s.m, s.ef_construction
                    ),
                    &[tenant],
                )
                .await
                .unwrap();
        }
        admin.batch_execute("ANALYZE bench_docs").await.unwrap();
        let partial_build = built.elapsed().as_secs_f64();
        let partial_index = column(
            &admin,
            &format!(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'bench_docs' AND indexdef LIKE '%{}%'",
                large[0]
            ),
        )
        .await
        .unwrap();
        let probe = format!("'[{}]'", vec!["1"; s.dimensions].join(","));
        let sql = PARTIAL.replace("$2", &format!("'{}'", large[0])).replace("$1", &probe);
        // As the arm runs it: with approximate indexes offered on the protected table.
        admin.batch_execute("SET agent_boundary.approximate_direct_vector_queries = on").await.unwrap();
        let plan = column(&admin, &format!("EXPLAIN (COSTS OFF) {sql}")).await.unwrap().join("\n");
        admin.batch_execute("RESET agent_boundary.approximate_direct_vector_queries").await.unwrap();
        assert!(
            partial_index.len() == 1 && plan.contains(&format!("Index Scan using {} ", partial_index[0])),
            "the partial-index arm must use {partial_index:?}:\n{plan}"
        );
        let large_queries: Vec<&Query> = all.iter().filter(|q| q.bucket <= Bucket::Medium).collect();
        progress(
            start,
            &format!("{} queries x {} arms with partial indexes", large_queries.len(), PARTIAL_ARMS.len()),
        );
        let (partial, partial_plans) = run_arms(&PARTIAL_ARMS, &large_queries, &s, start).await;

        let tenants_in =
            |b: Bucket| sizes.iter().filter(|n| Bucket::of(**n as f64 / s.vectors as f64) == b).count();
        println!(
            "{} vectors of {} dimensions around {} cluster centres; {} tenants with Zipf (s = 1) sizes from {} down to {} rows \
             (tenants per bucket: {}); {} queries per bucket, k = {K}. Every query runs inside its tenant's boundary as an \
             ordinary role, every arm in rotating order; recall is against the exact arm. Indexes: `boundary.vector_index` \
             (b-tree on tenant_id, HNSW m = {}, ef_construction = {}); vector_search with \
             `vector_exact_limit` {}, `vector_ef_search` {} (shared index) and `vector_ef_search_tenant_index` 100 \
             (default; a tenant's own index). Total run {:.0}s.\n",
            s.vectors,
            s.dimensions,
            s.centres,
            s.tenants,
            sizes[0],
            sizes[sizes.len() - 1],
            Bucket::ALL.iter().map(|b| format!("{} {}", b.label(), tenants_in(*b))).collect::<Vec<_>>().join(", "),
            s.queries_per_bucket,
            s.m,
            s.ef_construction,
            s.exact_limit.map_or("3000 (default)".into(), |v| v.to_string()),
            s.ef_search.map_or("400 (default)".into(), |v| v.to_string()),
            start.elapsed().as_secs_f64()
        );
        println!(
            "### Shared indexes (built in {shared_build:.0}s)\n\n{}",
            table(&SHARED_ARMS, &Bucket::ALL, &shared)
        );
        println!("vector_search plans: {}.\n", plan_summary(&shared_plans));
        println!(
            "### With per-tenant partial HNSW indexes (tenants >= 1%, built in {partial_build:.0}s)\n\n{}",
            table(&PARTIAL_ARMS, &[Bucket::Large, Bucket::Medium], &partial)
        );
        println!("vector_search plans: {}.", plan_summary(&partial_plans));
    });
}
