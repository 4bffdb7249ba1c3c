-- The registry decides who may enter, and how much of a token's request survives.
SELECT boundary.register_principal('northstar-dental', 'support', 'bob', 'member', 'pro', 'us',
       ARRAY['search'], ARRAY['tickets']);
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "bob",
                       "role": "owner", "tool_ids": ["search", "crm"]}') AS bob \gset
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "bob",
                       "role": "member", "region": "eu"}') AS bob_eu \gset
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "mallory",
                       "role": "viewer"}') AS mallory \gset

BEGIN;
SELECT boundary.enter(:'bob') ->> 'role' AS role_capped_by_registry, boundary.tool_ids() AS tools;
ROLLBACK;
SELECT boundary.enter(:'bob_eu');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter(:'mallory');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.revoke('northstar-dental', 'support', 'bob') AS newly_revoked;
SELECT boundary.enter(:'bob');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.revoke('northstar-dental', 'support', 'bob') AS newly_revoked;
SELECT boundary.revoke('no-such-tenant');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.revoke('northstar-dental', NULL, 'bob');
\echo :LAST_ERROR_SQLSTATE

-- Registry input is validated; values are bound, never spliced into SQL.
SELECT boundary.register_principal('', 'support', 'u', 'member');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.register_principal(repeat('t', 257), 'support', 'u', 'member');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.register_principal(E'tab\there', 'support', 'u', 'member');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.register_principal('t', 'support', 'u', 'root');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.register_principal('t', 'support', 'u', 'member', 'gold');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.register_principal('t', 'support', 'u', 'member', 'free', 'mars');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.register_principal('x''); DROP TABLE boundary.principals; --', 'w', 'u', 'viewer');
SELECT tenant_id, role FROM boundary.principals WHERE user_id = 'u';

-- Keys: strong enough, never reused, usable for what they claim.
SELECT boundary.add_signing_key('weak', 'HS256', 'short secret'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.add_signing_key('regress-k1', 'HS256', convert_to(repeat('s', 40), 'UTF8'));
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.add_signing_key('bad id!', 'HS256', convert_to(repeat('s', 40), 'UTF8'));
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.add_signing_key('alg-none', 'none', convert_to(repeat('s', 40), 'UTF8'));
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.generate_signing_key('ed', 'EdDSA');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.retire_signing_key('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT kid, alg, can_sign, retired_at IS NOT NULL AS retired FROM boundary.list_signing_keys() ORDER BY kid;

-- sign(): complete claims only, a bounded ttl, and it owns iat/exp/aud.
SELECT boundary.sign('{"tenant_id": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.sign('{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer", "exp": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.sign('{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer"}', '2 hours');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.sign('{"tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "viewer"}', '0 seconds');
\echo :LAST_ERROR_SQLSTATE

-- Session scope must be asked for and allowed.
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin"}') AS dental \gset
SELECT boundary.enter(:'dental', 'session');
\echo :LAST_ERROR_SQLSTATE
SELECT boundary.enter(:'dental', 'forever');
\echo :LAST_ERROR_SQLSTATE
SET agent_boundary.allow_session_scope = on;
SELECT boundary.enter(:'dental', 'session') ->> 'scope' AS scope;
SELECT boundary.tenant_id() AS still_set_in_the_next_statement;
SELECT boundary.exit();
SELECT boundary.is_active();
RESET agent_boundary.allow_session_scope;

-- Citus only: without it there is one copy of the extension's tables already.
SELECT boundary.distribute_own_tables();
\echo :LAST_ERROR_SQLSTATE

-- Who may do what.
SELECT p.proname, has_function_privilege('regress_agent', p.oid, 'EXECUTE') AS agent_may_execute
  FROM pg_proc p WHERE p.pronamespace = 'boundary'::regnamespace ORDER BY p.proname;
SELECT c.relname, has_table_privilege('regress_agent', c.oid, 'SELECT') AS agent_may_read
  FROM pg_class c WHERE c.relnamespace = 'boundary'::regnamespace AND c.relkind = 'r' ORDER BY c.relname;
