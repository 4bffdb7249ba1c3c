-- A guided tour of the agent boundary, run by scripts/demo.sh after lookalike_tenants.sql.
\set ON_ERROR_STOP 0
\set QUIET 1
\pset footer off
\echo
\echo '== 0. public.tickets is protected: generated policies, FORCEd, and the lint finds nothing.'
SELECT policyname, permissive, cmd FROM pg_policies WHERE tablename = 'tickets' ORDER BY policyname;
SELECT count(*) AS lint_findings FROM boundary.unprotected_tables();
\echo
\echo '== 1. Trusted code signs a boundary token for alice @ Northstar Dental.'
\echo '      (Here with boundary.sign(); an app server uses any JWT library and the same key.)'
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin", "trace_id": "demo-trace-1"}', '5 minutes') AS dental_token \gset
\echo
\echo '== 2. The agent role enters it for one transaction and reads tickets: only Dental rows.'
SET ROLE demo_agent;
BEGIN;
SELECT boundary.enter(:'dental_token') ->> 'tenant_id' AS entered,
       boundary.role() AS role, boundary.region() AS region, boundary.tool_ids() AS tools;
SELECT id, customer, note FROM public.tickets ORDER BY id;
COMMIT;
\echo
\echo '== 3. A forged token: Dental''s token with its payload swapped for Northstar Design.'
SELECT split_part(:'dental_token', '.', 1) || '.' ||
       rtrim(translate(encode(convert_to(
         '{"tenant_id":"northstar-design","workspace_id":"support","user_id":"alice","role":"admin","exp":4102444800}',
         'UTF8'), 'base64'), E'+/\n', '-_'), '=') || '.' ||
       split_part(:'dental_token', '.', 3) AS forged_token \gset
SELECT boundary.enter(:'forged_token');
\echo '   SQLSTATE' :LAST_ERROR_SQLSTATE
\echo
\echo '== 4. Setting the boundary setting directly, the way a prompt-injected data agent might.'
SET agent_boundary.boundary = 'tenant_id=northstar-design';
\echo '   SQLSTATE' :LAST_ERROR_SQLSTATE
SELECT set_config('agent_boundary.boundary', :'dental_token', false);
\echo '   SQLSTATE' :LAST_ERROR_SQLSTATE
\echo
\echo '== 5. COMMIT ended the boundary: reading without one fails inside PostgreSQL.'
SELECT id, note FROM public.tickets;
\echo '   SQLSTATE' :LAST_ERROR_SQLSTATE
RESET ROLE;
\echo
\echo '== 6. Vector search: Design''s chunks are nearer to the question, yet Dental gets exactly'
\echo '      its own 2 nearest (filtered before ranking, not after).'
SET client_min_messages = warning;
DROP TABLE IF EXISTS public.ticket_chunks;
RESET client_min_messages;
CREATE TABLE public.ticket_chunks (tenant_id text NOT NULL, id bigint PRIMARY KEY, chunk text NOT NULL,
                                   embedding vector(3) NOT NULL);
SELECT count(*) AS protect_statements FROM boundary.protect('public.ticket_chunks');
GRANT SELECT ON public.ticket_chunks TO demo_agent;
INSERT INTO public.ticket_chunks VALUES
    ('northstar-dental', 1, 'Renewal risk: billing dispute over imaging fees', '[1, 0.3, 0]'),
    ('northstar-dental', 2, 'Crown fitting follow-up for Dr. Reyes', '[1, 0.9, 0]'),
    ('northstar-dental', 3, 'Chairside scanner training', '[0, 1, 0]'),
    ('northstar-design', 4, 'Renewal risk: slow feedback on brand guide', '[1, 0.01, 0]'),
    ('northstar-design', 5, 'Renewal call moved to Friday', '[1, 0.02, 0]');
SELECT count(*) AS index_statements FROM boundary.vector_index('public.ticket_chunks');
SET ROLE demo_agent;
BEGIN;
SELECT boundary.enter(:'dental_token') ->> 'tenant_id' AS entered;
SELECT s.id, round(s.distance::numeric, 3) AS distance, c.chunk
  FROM boundary.vector_search('public.ticket_chunks', '[1, 0, 0]', 2) AS s
  JOIN public.ticket_chunks c ON c.id = s.id::bigint
 ORDER BY s.distance;
COMMIT;
RESET ROLE;
