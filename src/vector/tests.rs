// `#[pg_test]` units for vector_search and vector_index, searched as the ordinary role
// `agent_tester` (a superuser would bypass the policies).
//
// Included into a `#[pg_schema] mod tests` by the parent module: the attribute cannot
// be put on a module that lives in its own file, and pgrx runs these in schema "tests".

use crate::test_support::*;
use pgrx::prelude::*;
use serde_json::json;

/// `docs` with dental rows near [1,0,0], design rows nearer still, and a dental row in a
/// datasource outside every boundary.
fn docs_fixture() {
    fixture();
    Spi::run(
        "CREATE TABLE public.docs (tenant_id text NOT NULL, workspace_id text NOT NULL,
                                   datasource_id text NOT NULL, id bigint PRIMARY KEY,
                                   embedding vector(3));
         SELECT count(*) FROM boundary.protect('public.docs');
         GRANT SELECT ON public.docs TO agent_tester;
         INSERT INTO public.docs VALUES
           ('northstar-dental', 'support', 'tickets', 1, '[1,0.2,0]'),
           ('northstar-dental', 'support', 'kb',      2, '[1,0.4,0]'),
           ('northstar-dental', 'support', 'tickets', 3, '[1,0.8,0]'),
           ('northstar-dental', 'support', 'secret',  4, '[1,0,0]'),
           ('northstar-dental', 'sales',   'tickets', 5, '[1,0,0]'),
           ('northstar-design', 'support', 'tickets', 6, '[1,0,0]'),
           ('northstar-design', 'support', 'tickets', 7, '[1,0.01,0]'),
           ('northstar-dental', 'support', 'tickets', 8, NULL);
         SELECT count(*) FROM boundary.vector_index('public.docs');",
    )
    .unwrap();
}

/// Whether the installed pgvector has iterative index scans (0.8 and later; the PostgreSQL 16
/// package the suite also runs on ships 0.6.2). Its settings exist once pgvector is loaded.
fn pgvector_scans_iteratively() -> bool {
    one::<bool>("SELECT pg_catalog.current_setting('hnsw.iterative_scan', true) IS NOT NULL").unwrap()
}

fn ids(sql: &str) -> String {
    one::<String>(&format!(
        "SELECT coalesce(string_agg(id, ',' ORDER BY distance, id), '') FROM ({sql}) s"
    ))
    .unwrap()
}

#[pg_test]
fn only_the_boundarys_rows_are_ranked_even_when_others_are_closer() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 2)"), "1,2");
    assert_eq!(
        ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 10)"),
        "1,2,3",
        "k above the visible rows: all of them, no more (NULL embeddings are not candidates)"
    );
}

// One transaction serves one principal, so the lookalike tenant gets its own test.
#[pg_test]
fn the_lookalike_tenant_ranks_only_its_own_rows() {
    docs_fixture();
    as_agent("northstar-design", "alice", "member", json!({}));
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 5)"), "6,7");
}

#[pg_test]
fn a_narrowed_datasource_list_narrows_the_candidates() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({"datasource_ids": ["kb"]}));
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 3)"), "2");
}

#[pg_test]
fn every_metric_ranks_within_the_boundary() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    for (metric, query, want) in [
        ("cosine", "[1,0,0]", "1,2,3"),
        ("l2", "[1,0,0]", "1,2,3"),
        ("inner_product", "[1,1,0]", "3,2,1"),
    ] {
        let got = ids(&format!(
            "SELECT * FROM boundary.vector_search('public.docs', '{query}', 3, '{metric}')"
        ));
        assert_eq!(got, want, "{metric}");
    }
    assert_eq!(
        one::<f64>(
            "SELECT distance FROM boundary.vector_search('public.docs', '[2,0,0]', 1, 'inner_product')"
        ),
        Some(-2.0),
        "inner_product reports pgvector's negated inner product"
    );
    let l2 = one::<f64>("SELECT distance FROM boundary.vector_search('public.docs', '[1,0,0]', 1, 'l2')")
        .unwrap();
    assert!((l2 - 0.2).abs() < 1e-6, "{l2}");
}

#[pg_test]
fn the_index_path_and_its_exact_fallback_still_return_exactly_k() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    Spi::run("SET LOCAL agent_boundary.vector_exact_limit = 0; SET LOCAL enable_seqscan = off").unwrap();
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 2)"), "1,2");
    // An index scan allowed to read one tuple comes back short; the exact ranking fills in
    // (tests/vector_search.rs asserts that this path is the one taken). The limit is a setting
    // of pgvector 0.8; an older pgvector has no way to cut the scan short here.
    if pgvector_scans_iteratively() {
        Spi::run("SET LOCAL hnsw.max_scan_tuples = 1; SET LOCAL enable_sort = off").unwrap();
        assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 3)"), "1,2,3");
    }
}

#[pg_test]
fn session_settings_are_left_as_they_were() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    let iterative = pgvector_scans_iteratively();
    Spi::run("SET LOCAL agent_boundary.vector_exact_limit = 0; SET hnsw.ef_search = 77").unwrap();
    if iterative {
        Spi::run("SET hnsw.iterative_scan = off").unwrap();
    }
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 2)"), "1,2");
    assert_eq!(one::<String>("SHOW hnsw.ef_search").unwrap(), "77");
    if iterative {
        assert_eq!(one::<String>("SHOW hnsw.iterative_scan").unwrap(), "off");
    }
    // Also after a call that failed inside a subtransaction.
    assert_eq!(
        try_sql("SELECT * FROM boundary.vector_search('public.docs', '[1,0]', 2)"),
        "22023: query has 2 dimensions; table public.docs stores vectors of 3"
    );
    assert_eq!(one::<String>("SHOW hnsw.ef_search").unwrap(), "77");
}

#[pg_test]
fn bad_input_gets_a_clear_error() {
    docs_fixture();
    Spi::run(
        "CREATE TABLE public.plain (tenant_id text, id int, embedding vector(3));
         GRANT SELECT ON public.plain TO agent_tester;
         CREATE TABLE public.texty (tenant_id text, id int, embedding text);
         SELECT count(*) FROM boundary.protect('public.texty');
         GRANT SELECT ON public.texty TO agent_tester;",
    )
    .unwrap();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    let search = |args: &str| try_sql(&format!("SELECT * FROM boundary.vector_search({args})"));
    assert_eq!(
        search("'public.docs', '[1,0,0,0]', 1"),
        "22023: query has 4 dimensions; table public.docs stores vectors of 3"
    );
    assert_eq!(search("'public.docs', '[1,0,0]', 0"), "22023: k must be positive, got 0");
    assert_eq!(search("'public.docs', '[1,0,0]', -1"), "22023: k must be positive, got -1");
    assert_eq!(
        search("'public.docs', '[1,0,0]', 2000000000"),
        "22023: k is 2000000000; vector_search returns at most 10000 rows"
    );
    assert_eq!(search("'public.docs', '[1,0,0]', NULL"), "22004: k must not be NULL");
    assert_eq!(search("'public.docs', NULL, 1"), "22004: query must not be NULL");
    assert_eq!(search("NULL, '[1,0,0]', 1"), "22004: tbl must not be NULL");
    assert_eq!(
        search("'public.docs', '[0,0,0]', 1"),
        "22023: query is the zero vector, which has no cosine distance to anything"
    );
    assert_eq!(
        search("'public.docs', '[1,0,0]', 1, 'hamming'"),
        "22023: unknown metric \"hamming\"; use cosine, l2 or inner_product"
    );
    assert_eq!(
        search("'public.plain', '[1,0,0]', 1"),
        "55000: table public.plain is not protected; vector_search reads only tables protected by boundary.protect()"
    );
    assert_eq!(
        search("'public.docs', '[1,0,0]', 1, embedding_column => 'vec'"),
        "42703: table public.docs has no column \"vec\"; pass embedding_column => '<column>'"
    );
    assert_eq!(
        search("'public.docs', '[1,0,0]', 1, id_column => 'doc_id'"),
        "42703: table public.docs has no column \"doc_id\"; pass id_column => '<column>'"
    );
    assert_eq!(
        search("'public.texty', '[1,0,0]', 1"),
        "42804: column \"embedding\" of table public.texty is text; vector_search ranks vector columns"
    );
    assert_eq!(
        search("'public.docs', '[1,0,0]', 1, embedding_column => repeat('e', 64)"),
        "22023: embedding_column is 64 bytes long; PostgreSQL identifiers are at most 63"
    );
    assert_eq!(search("'public.nope', '[1,0,0]', 1"), "42P01: relation \"public.nope\" does not exist");
    Spi::run("RESET ROLE; SELECT boundary.exit(); SET ROLE agent_tester").unwrap();
    assert_eq!(search("'public.docs', '[1,0,0]', 1"), "42501: no agent boundary is set");
}

#[pg_test]
fn a_renamed_column_is_noticed_on_the_next_call() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 1)"), "1");
    Spi::run("RESET ROLE; ALTER TABLE public.docs RENAME COLUMN embedding TO vec; SET ROLE agent_tester")
        .unwrap();
    assert_eq!(
        try_sql("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 1)"),
        "42703: table public.docs has no column \"embedding\"; pass embedding_column => '<column>'"
    );
    assert_eq!(ids("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 1, embedding_column => 'vec')"), "1");
}

#[pg_test]
fn identifiers_cannot_inject_sql() {
    docs_fixture();
    as_agent("northstar-dental", "alice", "admin", json!({}));
    assert_eq!(
        try_sql("SELECT * FROM boundary.vector_search('public.docs', '[1,0,0]', 1, id_column => 'id\" FROM public.docs; --')"),
        "42703: table public.docs has no column \"id\" FROM public.docs; --\"; pass id_column => '<column>'"
    );
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(
        try_sql("SELECT boundary.vector_index('public.docs', tenant => $$x'; DROP TABLE public.docs; --$$, run => false)"),
        "ok"
    );
    let ddl = one::<String>(
        "SELECT ddl FROM boundary.vector_index('public.docs', tenant => $$x'; DROP TABLE public.docs; --$$, run => false) ddl",
    )
    .unwrap();
    assert!(ddl.ends_with("WHERE \"tenant_id\" = 'x''; DROP TABLE public.docs; --'::text"), "{ddl}");
    assert_eq!(one::<i64>("SELECT count(*) FROM public.docs"), Some(8));
}

#[pg_test]
fn a_partial_index_serves_its_tenant() {
    docs_fixture();
    Spi::run("SELECT count(*) FROM boundary.vector_index('public.docs', tenant => 'northstar-dental')")
        .unwrap();
    let partial = one::<String>(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'docs'
           AND indexdef LIKE '%USING hnsw%WHERE (tenant_id = ''northstar-dental''::text)'",
    )
    .expect("the partial index exists");
    // Eight rows: only disabled alternatives make any index the planner's choice.
    Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off").unwrap();
    let query =
        "SELECT id FROM public.docs WHERE tenant_id = 'northstar-dental' ORDER BY embedding <=> '[1,0,0]' LIMIT 1";
    // A direct query on the protected table is not offered approximate indexes (vector_search's
    // own statement is), unless the session opts in.
    let plan = explain(query);
    assert!(!plan.contains(&partial), "{plan}");
    Spi::run("SET LOCAL agent_boundary.approximate_direct_vector_queries = on").unwrap();
    let plan = explain(query);
    assert!(plan.contains(&format!("Index Scan using {partial} on docs")), "{plan}");
    assert_eq!(
        try_sql("SELECT boundary.vector_index('public.docs', m => 80)"),
        "22023: ef_construction (128) must be at least 2 * m (160)"
    );
    assert_eq!(
        try_sql("SELECT boundary.vector_index('public.docs', 'cosine', 'tenant_id')"),
        "42804: column \"tenant_id\" of table public.docs is text; vector_search ranks vector columns"
    );
}
