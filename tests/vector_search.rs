//! Filtered vector search from a real client (tokio-postgres + the `pgvector` crate) against a
//! real server, with the lookalike tenants: Northstar Design's vectors sit closer to the query
//! than any of Northstar Dental's, and some of Dental's own rows sit in a datasource outside
//! its boundary.

#[macro_use]
mod support;

use libtest_mimic::Arguments;
use pgvector::Vector;
use std::collections::HashSet;
use support::*;

const DIMENSIONS: usize = 16;
const DENTAL_ROWS: i64 = 300;
const DENTAL_HIDDEN_ROWS: i64 = 20;
const DESIGN_ROWS: i64 = 6000;

const FIXTURE: &str = "
CREATE ROLE agent LOGIN NOBYPASSRLS;
CREATE TABLE public.notes (
    tenant_id     text   NOT NULL,
    workspace_id  text   NOT NULL,
    datasource_id text   NOT NULL,
    id            bigint PRIMARY KEY,
    embedding     vector(16)
);
SELECT count(*) FROM boundary.protect('public.notes');
GRANT SELECT ON public.notes TO agent;";

/// `center` plus uniform noise of up to `spread` on every coordinate.
fn near(rng: &mut Rng, center: &[f32], spread: f32) -> Vec<f32> {
    center.iter().map(|c| c + (rng.uniform() as f32 - 0.5) * 2.0 * spread).collect()
}

fn query() -> Vec<f32> {
    (0..DIMENSIONS).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect()
}

/// Row `id`'s tenant, datasource and embedding. Design's rows and Dental's hidden rows are
/// tight around the query; Dental's visible rows are spread wider, so every one is farther.
fn rows() -> Vec<(&'static str, &'static str, i64, Vec<f32>)> {
    let mut rng = Rng(7);
    let q = query();
    let mut out = Vec::new();
    for id in 1..=DENTAL_ROWS {
        out.push(("northstar-dental", "tickets", id, near(&mut rng, &q, 0.9)));
    }
    for id in DENTAL_ROWS + 1..=DENTAL_ROWS + DENTAL_HIDDEN_ROWS {
        out.push(("northstar-dental", "crm-notes", id, near(&mut rng, &q, 0.01)));
    }
    for id in 10_001..=10_000 + DESIGN_ROWS {
        out.push(("northstar-design", "tickets", id, near(&mut rng, &q, 0.05)));
    }
    out
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

/// The k ids nearest to the query among Dental's rows in its own datasource, computed here.
fn dental_truth(k: usize) -> Vec<String> {
    let q = query();
    let mut visible: Vec<(f64, i64)> = rows()
        .into_iter()
        .filter(|(tenant, source, _, _)| *tenant == "northstar-dental" && *source == "tickets")
        .map(|(_, _, id, v)| (cosine_distance(&q, &v), id))
        .collect();
    visible.sort_by(|a, b| a.partial_cmp(b).unwrap());
    visible.into_iter().take(k).map(|(_, id)| id.to_string()).collect()
}

fn set(ids: &[String]) -> HashSet<&str> {
    ids.iter().map(String::as_str).collect()
}

fn load() {
    block_on(async {
        let admin = cluster().connect("postgres").await;
        admin.batch_execute("BEGIN").await.unwrap();
        let insert =
            admin.prepare("INSERT INTO public.notes VALUES ($1, 'support', $2, $3, $4)").await.unwrap();
        for (tenant, source, id, embedding) in rows() {
            admin.execute(&insert, &[&tenant, &source, &id, &Vector::from(embedding)]).await.unwrap();
        }
        admin
            .batch_execute(
                "COMMIT; SELECT count(*) FROM boundary.vector_index('public.notes'); ANALYZE public.notes",
            )
            .await
            .unwrap();
    });
}

/// Runs vector_search as `token`'s boundary after `settings`; returns the ids and the plan
/// vector_search reported (DEBUG1).
async fn search(token: &str, settings: &str, k: i32) -> Result<(Vec<String>, String), tokio_postgres::Error> {
    let (agent, notices) = connect_with_notices(cluster().config("agent")).await.unwrap();
    agent.batch_execute("BEGIN").await?;
    enter(&agent, token).await?;
    agent.batch_execute(&format!("{settings}; SET LOCAL client_min_messages = debug1")).await?;
    let rows = agent
        .query("SELECT id FROM boundary.vector_search('public.notes', $1, $2)", &[&Vector::from(query()), &k])
        .await?;
    agent.batch_execute("COMMIT").await?;
    let plan = notices
        .lock()
        .unwrap()
        .iter()
        .find_map(|n| n.strip_prefix("DEBUG: agent_boundary vector_search: ").map(str::to_string))
        .unwrap_or_default();
    Ok((rows.iter().map(|r| r.get::<_, String>(0)).collect(), plan))
}

/// The plan vector_search reports for Dental's ten with the exact cutoff at 0: pgvector 0.8's
/// iterative scan finds them behind Design's nearer rows; an older pgvector's scan stops after
/// ef_search candidates (all Design's, filtered out) and the exact ranking fills in.
async fn approximate_plan() -> &'static str {
    let admin = cluster().connect("postgres").await;
    let iterative = column(
        &admin,
        "SELECT (pg_catalog.string_to_array(extversion, '.')::int[] >= '{0,8}')::text FROM pg_catalog.pg_extension
          WHERE extname = 'vector'",
    )
    .await
    .unwrap();
    if iterative == ["true"] {
        "approximate plan, 10 rows, ef_search 400"
    } else {
        "approximate, short, then exact plan, 10 rows, ef_search 400"
    }
}

async fn design_rows_closer_to_the_query_never_appear() {
    let design_ids: HashSet<String> = (10_001..=10_000 + DESIGN_ROWS).map(|id| id.to_string()).collect();
    let truth = dental_truth(10);
    for (settings, plan) in [
        ("SELECT 1", "exact plan, 10 rows"),
        (
            // enable_sort = off keeps the planner on the HNSW index rather than b-tree + sort.
            "SET LOCAL agent_boundary.vector_exact_limit = 0; SET LOCAL enable_sort = off",
            approximate_plan().await,
        ),
    ] {
        let (ids, reported) = search(&dental_alice(), settings, 10).await.unwrap();
        assert_eq!(reported, plan);
        assert_eq!(ids.len(), 10, "{settings}");
        assert!(ids.iter().all(|id| !design_ids.contains(id)), "{settings}: {ids:?}");
        if plan.starts_with("exact") {
            assert_eq!(set(&ids), set(&truth), "the exact plan ranks every candidate");
        } else {
            let found = ids.iter().filter(|id| truth.contains(id)).count();
            assert!(found >= 8, "index recall@10 on Dental's rows: {found}/10");
        }
    }
    // The lookalike tenant gets its own nearest rows (all closer than any of Dental's).
    let (ids, _) = search(&design_alice(), "SELECT 1", 10).await.unwrap();
    assert_eq!(ids.len(), 10);
    assert!(ids.iter().all(|id| design_ids.contains(id)), "{ids:?}");
}

async fn k_above_the_visible_rows_returns_every_visible_row_once() {
    for settings in ["SELECT 1", "SET LOCAL agent_boundary.vector_exact_limit = 0"] {
        let (ids, plan) = search(&dental_alice(), settings, 1000).await.unwrap();
        assert_eq!(plan, "exact plan, 300 rows", "k = 1000 covers the 300 candidates: {settings}");
        assert_eq!(ids.len(), DENTAL_ROWS as usize);
        assert_eq!(set(&ids), set(&dental_truth(1000)));
    }
}

async fn a_datasource_outside_the_boundary_never_appears() {
    let admin = cluster().connect("postgres").await;
    // As the owner sees it (superuser, no policies): Dental's crm-notes rows are nearest of all.
    let nearest_dental = column(
        &admin,
        "SELECT datasource_id FROM public.notes WHERE tenant_id = 'northstar-dental'
          ORDER BY embedding <=> (SELECT embedding FROM public.notes WHERE id = 301) LIMIT 1",
    )
    .await
    .unwrap();
    assert_eq!(nearest_dental, ["crm-notes"]);
    let (ids, _) = search(&dental_alice(), "SELECT 1", 50).await.unwrap();
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| id.parse::<i64>().unwrap() <= DENTAL_ROWS), "{ids:?}");
}

/// One backend and one boundary (300 candidates) on either side of the exact cutoff, back and
/// forth: each call takes the path the candidate count calls for, whatever the backend
/// remembers of earlier calls (which only decides whether it counts before ranking).
async fn the_path_follows_the_candidate_count_whatever_the_backend_remembers() {
    let (agent, notices) = connect_with_notices(cluster().config("agent")).await.unwrap();
    let truth = dental_truth(10);
    let approximate = approximate_plan().await;
    for (limit, expected) in [
        (3000, "exact plan, 10 rows"),
        (50, approximate),
        (50, approximate),
        (3000, "exact plan, 10 rows"),
        (3000, "exact plan, 10 rows"),
        (50, approximate),
    ] {
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &dental_alice()).await.unwrap();
        agent
            .batch_execute(&format!(
                "SET LOCAL agent_boundary.vector_exact_limit = {limit}; SET LOCAL enable_sort = off; \
                 SET LOCAL client_min_messages = debug1"
            ))
            .await
            .unwrap();
        let rows = agent
            .query("SELECT id FROM boundary.vector_search('public.notes', $1, 10)", &[&Vector::from(query())])
            .await
            .unwrap();
        agent.batch_execute("COMMIT").await.unwrap();
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let plan = notices
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|n| n.strip_prefix("DEBUG: agent_boundary vector_search: ").map(str::to_string))
            .unwrap_or_default();
        assert_eq!((limit, plan.as_str()), (limit, expected));
        assert_eq!(ids.len(), 10);
        if expected.starts_with("exact") {
            assert_eq!(set(&ids), set(&truth), "exact ranking of every candidate");
        }
    }
}

async fn an_index_that_comes_back_short_is_backed_by_an_exact_ranking() {
    let starved = "SET LOCAL agent_boundary.vector_exact_limit = 50; SET LOCAL enable_sort = off; \
                   SET LOCAL agent_boundary.vector_ef_search = 10; SET LOCAL hnsw.max_scan_tuples = 1";
    let (ids, plan) = search(&dental_alice(), starved, 10).await.unwrap();
    assert_eq!(plan, "approximate, short, then exact plan, 10 rows, ef_search 10");
    assert_eq!(set(&ids), set(&dental_truth(10)));
}

async fn a_tenant_with_its_own_index_is_searched_with_a_narrower_beam() {
    // Created and used inside one transaction that rolls back, so parallel trials never see it.
    let (owner, notices) = connect_with_notices(cluster().config("postgres")).await.unwrap();
    owner.batch_execute("BEGIN").await.unwrap();
    let ddl = column(&owner, "SELECT boundary.vector_index('public.notes', tenant => 'northstar-dental')")
        .await
        .unwrap();
    assert!(ddl[0].ends_with("WHERE \"tenant_id\" = 'northstar-dental'::text"), "{ddl:?}");
    owner.batch_execute("SET LOCAL ROLE agent").await.unwrap();
    enter(&owner, &dental_alice()).await.unwrap();
    owner
        .batch_execute(
            "SET LOCAL agent_boundary.vector_exact_limit = 0; SET LOCAL client_min_messages = debug1",
        )
        .await
        .unwrap();
    let rows = owner
        .query("SELECT id FROM boundary.vector_search('public.notes', $1, 10)", &[&Vector::from(query())])
        .await
        .unwrap();
    owner.batch_execute("ROLLBACK").await.unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(set(&ids), set(&dental_truth(10)), "a graph of Dental's rows alone finds the true neighbours");
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "DEBUG: agent_boundary vector_search: approximate plan, 10 rows, ef_search 100"),
        "{:?}",
        notices.lock().unwrap()
    );
}

async fn bad_input_is_refused_with_its_sqlstate() {
    let agent = cluster().connect("agent").await;
    agent.batch_execute("BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    let call = "SELECT id FROM boundary.vector_search('public.notes', $1, $2)";
    assert_refused(
        agent.query(call, &[&Vector::from(vec![1.0f32; 3]), &10i32]).await,
        "22023",
        "query has 3 dimensions; table public.notes stores vectors of 16",
    );
    agent.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    assert_refused(agent.query(call, &[&None::<Vector>, &10i32]).await, "22004", "query must not be NULL");
    agent.batch_execute("ROLLBACK; BEGIN").await.unwrap();
    enter(&agent, &dental_alice()).await.unwrap();
    assert_refused(
        agent.query(call, &[&Vector::from(query()), &i32::MAX]).await,
        "22023",
        "k is 2147483647; vector_search returns at most 10000 rows",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_refused(
        agent.query(call, &[&Vector::from(query()), &10i32]).await,
        "42501",
        "no agent boundary is set",
    );
}

const DIRECT: &str = "SELECT id::text FROM public.notes ORDER BY embedding <=> $1 LIMIT 10";

/// A framework's own search, `ORDER BY embedding <=> $1 LIMIT k` on the table (no vector_search),
/// as `token`'s boundary after `settings`: the ids and the plan.
async fn direct(agent: &Client, token: &str, settings: &str) -> (Vec<String>, String) {
    agent.batch_execute("BEGIN").await.unwrap();
    enter(agent, token).await.unwrap();
    agent.batch_execute(settings).await.unwrap();
    let q = Vector::from(query());
    let ids = agent.query(DIRECT, &[&q]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect();
    let plan: Vec<String> = agent
        .query(&format!("EXPLAIN (COSTS OFF) {DIRECT}"), &[&q])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    agent.batch_execute("COMMIT").await.unwrap();
    (ids, plan.join("\n"))
}

/// The HNSW index on Design's 6,000 rows, all nearer the query than any of Dental's, ranks a beam
/// of Design's rows: row level security then leaves Dental nothing. The planner is not offered
/// it on a protected table, so the query ranks Dental's own rows exactly, under any plan cache.
async fn a_frameworks_own_search_ranks_the_boundarys_rows_exactly() {
    let admin = cluster().connect("postgres").await;
    let hnsw = column(&admin, "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'public.notes'::regclass AND a.amname = 'hnsw'")
        .await
        .unwrap();
    assert_eq!(hnsw.len(), 1, "{hnsw:?}");
    let agent = cluster().connect("agent").await;
    let truth = dental_truth(10);
    // enable_sort = off would push the planner onto the HNSW index if it were on offer.
    for settings in ["SELECT 1", "SET LOCAL enable_sort = off"] {
        let (ids, plan) = direct(&agent, &dental_alice(), settings).await;
        assert_eq!(ids, truth, "{settings}: {plan}");
        assert!(!plan.contains(&hnsw[0]), "{settings}: {plan}");
    }
    // Offered the index (the opt-in setting), the same query comes back short: the gap closed.
    let (ids, plan) = direct(
        &agent,
        &dental_alice(),
        "SET LOCAL agent_boundary.approximate_direct_vector_queries = on; SET LOCAL enable_sort = off",
    )
    .await;
    assert!(plan.contains(&hnsw[0]), "{plan}");
    assert!(ids.len() < 10, "{ids:?}");
    // One prepared statement, its generic plan reused across tenants and transactions.
    let prepared = agent.prepare(DIRECT).await.unwrap();
    let design_ids: HashSet<String> = (10_001..=10_000 + DESIGN_ROWS).map(|id| id.to_string()).collect();
    for round in 0..8 {
        let (token, dental) = if round % 2 == 0 { (dental_alice(), true) } else { (design_alice(), false) };
        agent.batch_execute("BEGIN").await.unwrap();
        enter(&agent, &token).await.unwrap();
        let ids: Vec<String> = agent
            .query(&prepared, &[&Vector::from(query())])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        agent.batch_execute("COMMIT").await.unwrap();
        if dental {
            assert_eq!(ids, truth, "round {round}");
        } else {
            assert_eq!(ids.len(), 10, "round {round}");
            assert!(ids.iter().all(|id| design_ids.contains(id)), "round {round}: {ids:?}");
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    start_shared_cluster("vector_search", FIXTURE);
    load();
    let trials = trials![
        design_rows_closer_to_the_query_never_appear,
        k_above_the_visible_rows_returns_every_visible_row_once,
        a_datasource_outside_the_boundary_never_appears,
        the_path_follows_the_candidate_count_whatever_the_backend_remembers,
        an_index_that_comes_back_short_is_backed_by_an_exact_ranking,
        a_tenant_with_its_own_index_is_searched_with_a_narrower_beam,
        bad_input_is_refused_with_its_sqlstate,
        a_frameworks_own_search_ranks_the_boundarys_rows_exactly,
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    stop_shared_cluster();
    conclusion.exit_if_failed();
}
