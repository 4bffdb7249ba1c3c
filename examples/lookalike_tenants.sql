-- The lookalike-tenant fixture: two tenants whose names, workspaces and users look alike, so a
-- boundary bug shows up as a confident wrong answer rather than an error. Runs against any
-- database where `CREATE EXTENSION agent_boundary CASCADE` has been done, as a superuser.
--
--   psql -v ON_ERROR_STOP=1 -f examples/lookalike_tenants.sql <your database>
--
-- It creates: signing key 'demo-2026' (a random HMAC secret, generated in the database),
-- principals for alice@Northstar Dental (admin, pro, us), bob@Northstar Dental (viewer) and
-- alice@Northstar Design (member, free, eu), the login role demo_agent (no BYPASSRLS), and public.tickets, protected
-- by boundary.protect(), with two rows per tenant. Re-running it resets all of that.
\set ON_ERROR_STOP 1
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_agent') THEN
    CREATE ROLE demo_agent LOGIN NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM boundary.list_signing_keys() WHERE kid = 'demo-2026') THEN
    PERFORM boundary.generate_signing_key('demo-2026');
  END IF;
END $$;

-- The principals every test layer uses too.
\ir ../tests/fixtures/lookalike_tenants.sql

DROP TABLE IF EXISTS public.tickets;
CREATE TABLE public.tickets (
    tenant_id text   NOT NULL,
    id        bigint NOT NULL,
    customer  text   NOT NULL,
    note      text   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
SELECT count(*) AS protect_statements FROM boundary.protect('public.tickets');
GRANT SELECT, INSERT, UPDATE ON public.tickets TO demo_agent;
INSERT INTO public.tickets VALUES
    ('northstar-dental', 1, 'Northstar Dental', 'Crown fitting follow-up for Dr. Reyes'),
    ('northstar-dental', 2, 'Northstar Dental', 'Renewal risk: billing dispute over imaging fees'),
    ('northstar-design', 1, 'Northstar Design', 'Logo refresh for the spring campaign'),
    ('northstar-design', 2, 'Northstar Design', 'Renewal risk: slow feedback on brand guide');
