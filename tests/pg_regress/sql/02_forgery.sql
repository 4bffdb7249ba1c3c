-- Nobody sets the boundary GUC except boundary.enter(): not an ordinary role, not a superuser,
-- not with a genuine token, not with a sealed value copied from SHOW.
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin"}') AS dental \gset
SET ROLE regress_agent;
SELECT boundary.is_active();
SET agent_boundary.boundary = 'forged';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('agent_boundary.boundary', 'forged', true);
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('agent_boundary.boundary', :'dental', true);
\echo :LAST_ERROR_SQLSTATE
RESET agent_boundary.boundary;
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_agent SET agent_boundary.boundary = 'forged';
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION pg_temp.forge() RETURNS text LANGUAGE sql
    SET agent_boundary.boundary = 'forged' AS 'SELECT boundary.tenant_id()';
\echo :LAST_ERROR_SQLSTATE
SHOW agent_boundary.boundary;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A superuser passes the permission check but not the seal check.
SET agent_boundary.boundary = 'forged';
\echo :LAST_ERROR_SQLSTATE
SET agent_boundary.boundary = :'dental';
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_agent SET agent_boundary.boundary = :'dental';
\echo :LAST_ERROR_SQLSTATE

-- A sealed value is not a token. (That it verifies only in the backend that sealed it needs
-- two sessions: see tests/boundary.rs.)
BEGIN;
SELECT boundary.enter(:'dental') ->> 'tenant_id' AS entered;
SELECT current_setting('agent_boundary.boundary') AS sealed \gset
SELECT boundary.enter(:'sealed');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- The reserved prefix: invented agent_boundary.* names are refused, not kept as placeholders.
SET agent_boundary.tenant_id = 'northstar-design';
\echo :LAST_ERROR_SQLSTATE

-- Malformed, oversized, NUL-carrying, unknown-key and retired-key tokens.
SELECT boundary.enter('');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter('not a token');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter('a.b.c');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter(repeat('x', 100000));
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter(E'eyJ\000');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter(split_part(:'dental', '.', 1) || '.' || split_part(:'dental', '.', 2) || '.AAAA');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.generate_signing_key('regress-k2') IS NOT NULL AS made_second_key;
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin"}', '1 minute', 'regress-k2') AS signed_with_k2 \gset
SELECT boundary.retire_signing_key('regress-k2');
SELECT boundary.enter(:'signed_with_k2');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.is_active();
