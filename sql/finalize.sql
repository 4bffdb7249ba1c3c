-- Minimal grants, applied after every object exists.
--
-- Anyone may call enter/exit and the accessors (policies call them as the querying role), so
-- the schema is usable by PUBLIC. Tables hold keys and the registry: no ordinary role reads
-- them. Managing keys, signing and managing the registry are for superusers and for roles they
-- grant explicitly (see README, "Key holders and registry admins").
GRANT USAGE ON SCHEMA boundary TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA boundary FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION boundary.add_signing_key(text, text, bytea, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.generate_signing_key(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.retire_signing_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.list_signing_keys() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.sign(jsonb, interval, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.register_principal(text, text, text, text, text, text, text[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION boundary.revoke(text, text, text) FROM PUBLIC;
