-- Filtered vector search: only the boundary's rows are ranked, exactly min(k, visible) come back.
CREATE TABLE kb_chunks (
    tenant_id     text   NOT NULL,
    workspace_id  text   NOT NULL,
    datasource_id text   NOT NULL,
    id            bigint PRIMARY KEY,
    chunk         text   NOT NULL,
    embedding     vector(3)
);
SELECT count(*) AS protect_statements FROM boundary.protect('kb_chunks');
GRANT SELECT ON kb_chunks TO regress_agent;
CREATE TABLE plain_vectors (tenant_id text, id bigint, embedding vector(3));
GRANT SELECT ON plain_vectors TO regress_agent;
-- Design's chunks are nearer to the question than any of Dental's; Dental's 'billing' chunk is
-- in a datasource outside Dental's boundary.
INSERT INTO kb_chunks VALUES
    ('northstar-dental', 'support', 'kb',      1, 'Renewal terms for imaging',   '[1, 0.3, 0]'),
    ('northstar-dental', 'support', 'tickets', 2, 'Crown fitting follow-up',     '[1, 0.6, 0]'),
    ('northstar-dental', 'support', 'billing', 3, 'Dental invoice dispute',      '[1, 0, 0]'),
    ('northstar-design', 'support', 'tickets', 4, 'Renewal terms for branding',  '[1, 0.01, 0]'),
    ('northstar-design', 'support', 'tickets', 5, 'Spring campaign brief',       '[1, 0.02, 0]');
SELECT * FROM boundary.vector_index('kb_chunks');
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice", "role": "admin"}') AS dental \gset
SET ROLE regress_agent;

BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
SELECT s.id, round(s.distance::numeric, 4) AS distance, c.chunk
  FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 2) s JOIN kb_chunks c ON c.id = s.id::bigint;
-- k above the visible rows: every visible row, once.
SELECT count(*) AS rows FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 100);
SELECT id, round(distance::numeric, 4) AS l2 FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 2, 'l2');
SELECT id, distance AS negated_inner_product
  FROM boundary.vector_search('kb_chunks', '[1, 1, 0]', 2, 'inner_product');
COMMIT;

-- Bad input: a clear error with its SQLSTATE.
\set VERBOSITY sqlstate
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
SAVEPOINT s;
SELECT * FROM boundary.vector_search('kb_chunks', '[1, 0]', 2);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 0);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 100000);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('kb_chunks', NULL, 2);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 2, 'hamming');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 2, embedding_column => 'chunk');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('tickets', '[1, 0, 0]', 2);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT * FROM boundary.vector_search('plain_vectors', '[1, 0, 0]', 2);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
SELECT * FROM boundary.vector_search('kb_chunks', '[1, 0, 0]', 2);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
\set VERBOSITY default
RESET ROLE;
DROP TABLE kb_chunks, plain_vectors;
