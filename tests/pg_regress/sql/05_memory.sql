-- Agent memory, run state and cache: keys, stores, promotion, refusals.
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin", "run_id": "run-42"}') AS dental \gset
SELECT boundary.sign('{"tenant_id": "northstar-design", "workspace_id": "support", "user_id": "alice",
                       "role": "member", "run_id": "run-42"}') AS design \gset
-- The key encoding: injective, escaped, usable from any client.
SELECT boundary.compose_key('a:b', 'c') AS one, boundary.compose_key('a', 'b:c') AS other;
SET ROLE regress_agent;

BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
SELECT boundary.memory_key('renewal') AS user_key, boundary.memory_key('tone', 'workspace') AS workspace_key;
SELECT boundary.memory_set('renewal', '{"date": "2027-01-31", "risk": "billing dispute"}');
SELECT boundary.memory_set('tone', '"brief and formal"', 'workspace');
SELECT name, scope, value FROM boundary.memory_list();
-- Run state: this run's scratchpad, not durable memory until promoted.
SELECT boundary.run_state_set('draft', '{"reply": "offer a discount?"}', '10 minutes') > now() AS expires_later;
SELECT boundary.run_state_get('draft') AS run_state, boundary.memory_get('draft') AS memory;
SELECT boundary.promote('draft');
SELECT boundary.memory_get('draft') AS memory_after_promote;
-- The cache: the key carries tenant, workspace, role, datasources, prompt version, input.
SELECT boundary.cache_key('answers', 'When is the renewal?', 'v1') AS ck \gset
SELECT :'ck' AS cache_key;
SELECT boundary.cache_put(:'ck', '{"answer": "January 31"}') > now() AS stored;
SELECT boundary.cache_get(:'ck') AS hit,
       boundary.cache_get(boundary.cache_key('answers', 'When is the renewal?', 'v2')) AS other_prompt_version;
COMMIT;

-- The lookalike tenant: same user name, same memory name, same question; none of Dental's data.
BEGIN;
SELECT boundary.enter(:'design') IS NOT NULL AS entered;
SELECT boundary.memory_get('renewal') AS renewal, boundary.memory_get('tone', 'workspace') AS tone;
SELECT count(*) AS visible_memories FROM boundary.memories;
SELECT boundary.cache_get(:'ck');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Bad input: a clear error, nothing written.
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
SAVEPOINT s;
SELECT boundary.memory_set('', '1');
ROLLBACK TO s;
SELECT boundary.memory_set('crm:notes', '1');
ROLLBACK TO s;
SELECT boundary.memory_set(repeat('n', 300), '1');
ROLLBACK TO s;
SELECT boundary.memory_set('notes', 'not json');
ROLLBACK TO s;
SELECT boundary.memory_set('notes', '"\u0000"');
ROLLBACK TO s;
SELECT boundary.run_state_set('notes', '1', '1 month');
ROLLBACK TO s;
SELECT count(*) AS memories FROM boundary.memories;
ROLLBACK;
RESET ROLE;
SELECT boundary.memory_get('renewal');
\echo :LAST_ERROR_SQLSTATE
