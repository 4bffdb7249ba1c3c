-- The user-visible contract of boundary.enter(), the accessors and boundary.exit().
-- Tokens change every run (iat/exp), so they live in psql variables and are never printed.
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin", "tool_ids": ["crm", "delete_everything"], "trace_id": "tr-1",
                       "run_id": "run-1", "prompt_version": "v3"}') AS dental \gset
SELECT boundary.sign('{"tenant_id": "northstar-design", "workspace_id": "support", "user_id": "alice",
                       "role": "admin"}') AS design \gset
SET ROLE regress_agent;

-- No boundary: every accessor and every protected read fails closed.
SELECT boundary.is_active();
SELECT boundary.tenant_id();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tickets;
\echo :LAST_ERROR_SQLSTATE

-- Enter: the boundary as the registry narrowed it (tool delete_everything is not allowed).
BEGIN;
SELECT jsonb_pretty(boundary.enter(:'dental') - 'issued_at' - 'expires_at' - 'granted_at');
SELECT boundary.tenant_id(), boundary.workspace_id(), boundary.user_id(), boundary.role(),
       boundary.plan(), boundary.region();
SELECT boundary.tool_ids(), boundary.datasource_ids(), boundary.trace_id(), boundary.run_id(),
       boundary.prompt_version(), boundary.memory_namespace();
SELECT (boundary.current() ->> 'expires_at')::timestamptz > now() AS not_expired;
SELECT id, subject FROM tickets ORDER BY id;

-- A transaction serves one principal: entering another is refused, even in a savepoint; rolling
-- the savepoint back leaves the outer boundary as it was.
SAVEPOINT s;
SELECT boundary.enter(:'design') ->> 'role' AS other_principal;
ROLLBACK TO SAVEPOINT s;
SELECT boundary.tenant_id();

-- exit() removes it for the rest of the transaction.
SELECT boundary.exit();
SELECT boundary.is_active();
SELECT * FROM tickets;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- COMMIT ends the boundary.
BEGIN;
SELECT boundary.enter(:'design') ->> 'tenant_id' AS entered;
SELECT boundary.role() AS narrowed_role;
SELECT id, subject FROM tickets ORDER BY id;
COMMIT;
SELECT count(*) FROM tickets;
\echo :LAST_ERROR_SQLSTATE

-- Outside a transaction block the boundary lasts one statement, and enter() warns.
SELECT boundary.enter(:'design') ->> 'tenant_id' AS entered;
SELECT boundary.is_active();
RESET ROLE;
