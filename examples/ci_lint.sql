-- Fail a CI job when any table could leak across tenants. Run against your database:
--   psql -X -v ON_ERROR_STOP=1 -f examples/ci_lint.sql "$DATABASE_URL"
-- Prints every finding with its fix; exits non-zero (3) if there was any.
\set ON_ERROR_STOP 1
SELECT object, problem, fix FROM boundary.unprotected_tables();
DO $$
DECLARE
    findings bigint := (SELECT count(*) FROM boundary.unprotected_tables());
BEGIN
    IF findings > 0 THEN
        RAISE EXCEPTION 'agent_boundary lint: % finding(s), listed above with their fixes', findings;
    END IF;
END
$$;
