-- Minimal grants, applied after every object exists.
--
-- Anyone may call enter/exit and the accessors (policies call them as the querying role), so
-- the schema is usable by PUBLIC. The key and registry tables are for no ordinary role. The
-- agent tables (memories, run_state, cache) are granted to PUBLIC in their modules: their rows
-- are guarded by generated row level security, so a role sees nothing without a boundary. The
-- audit log is granted SELECT only (tenants read their own rows); only the extension writes it.
-- Managing keys, signing, managing the registry and purging are for superusers and for roles
-- they grant explicitly (see README).
GRANT USAGE ON SCHEMA boundary TO PUBLIC;
REVOKE ALL ON boundary.signing_keys, boundary.principals FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION boundary.add_signing_key(text, text, bytea, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.generate_signing_key(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.retire_signing_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.list_signing_keys() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.sign(jsonb, interval, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.register_principal(text, text, text, text, text, text, text[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.revoke(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.purge_expired() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.purge_audit_log(interval) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.blocked_events_total() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.flush_audit_log() FROM PUBLIC;
REVOKE ALL ON SEQUENCE boundary.blocked_events FROM PUBLIC;
-- A trigger function; it fires without EXECUTE, and nobody needs to call it.
REVOKE EXECUTE ON FUNCTION boundary.forget_verified() FROM PUBLIC;
