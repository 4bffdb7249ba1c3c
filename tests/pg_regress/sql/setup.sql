-- Runs once when the regression database is created: the extension, one signing key with a
-- fixed test secret, two lookalike tenants, an ordinary role, and a table with a tenant policy.
CREATE EXTENSION agent_boundary CASCADE;
SELECT boundary.add_signing_key('regress-k1', 'HS256', convert_to('regress-secret-0123456789-abcdefghij', 'UTF8'));
\i ../../fixtures/lookalike_tenants.sql
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_agent') THEN
    CREATE ROLE regress_agent NOLOGIN NOBYPASSRLS;
  END IF;
END $$;
CREATE TABLE tickets (tenant_id text NOT NULL, id bigint NOT NULL, subject text NOT NULL,
                      PRIMARY KEY (tenant_id, id));
ALTER TABLE tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tickets
    USING (tenant_id = boundary.tenant_id()) WITH CHECK (tenant_id = boundary.tenant_id());
GRANT SELECT, INSERT ON tickets TO regress_agent;
INSERT INTO tickets VALUES
    ('northstar-dental', 1, 'Crown fitting follow-up'),
    ('northstar-dental', 2, 'Renewal risk: billing dispute'),
    ('northstar-design', 1, 'Logo refresh for spring'),
    ('northstar-design', 2, 'Renewal risk: slow feedback');
