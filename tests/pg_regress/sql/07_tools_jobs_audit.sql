-- Tool-argument checks, job snapshots and resume, the audit trail, and an approval recipe.
CREATE TABLE crm_tickets (
    tenant_id     text    NOT NULL,
    id            bigint  PRIMARY KEY,
    subject       text    NOT NULL,
    refund_amount numeric NOT NULL DEFAULT 0
);
SELECT count(*) AS protect_statements FROM boundary.protect('crm_tickets');
GRANT SELECT, UPDATE ON crm_tickets TO regress_agent;
INSERT INTO crm_tickets VALUES
    ('northstar-dental', 10, 'Imaging invoice disputed', 0),
    ('northstar-design', 20, 'Brand guide feedback', 0);
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "alice",
                       "role": "admin", "trace_id": "regress-trace", "allow_jobs": true}') AS dental \gset
SET ROLE regress_agent;

-- assert_in: the row's id inside the boundary; one error for "other tenant's", "missing", "malformed".
\set VERBOSITY sqlstate
-- (First: enter() outside a transaction block warns, or fails where clients ask it to.)
SELECT boundary.enter(:'dental') IS NOT NULL AS entered_for_one_statement;
SET agent_boundary.enter_requires_transaction_block = on;
SELECT boundary.enter(:'dental');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
RESET agent_boundary.enter_requires_transaction_block;
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
SELECT boundary.assert_in('crm_tickets', '10') AS inside;
SAVEPOINT s;
SELECT boundary.assert_in('crm_tickets', '20');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT boundary.assert_in('crm_tickets', '30');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT boundary.assert_in('crm_tickets', 'ten');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT boundary.assert_in('crm_tickets', '10', id_column => 'ticket_no');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
-- Ids as drivers pass them: integer, bigint and uuid parameters find the same check.
SELECT boundary.assert_in('crm_tickets', 10) AS int_id, boundary.assert_in('crm_tickets', 10::bigint) AS bigint_id;
SELECT boundary.assert_in('crm_tickets', 20::bigint);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT boundary.assert_in('crm_tickets', '8e3c1f56-3b4a-4c1e-9d57-0f6b1d2c9a10'::uuid);
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT boundary.assert_tool('crm') AS tool, boundary.assert_datasource('tickets') AS datasource;
SELECT boundary.assert_tool('payments');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
SELECT boundary.assert_datasource('billing');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK TO s;
-- A job token for the queue; a worker resumes it (here, in a later transaction).
SELECT boundary.snapshot('15 minutes') AS job \gset
COMMIT;
SELECT boundary.assert_tool('crm');
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
BEGIN;
SELECT boundary.resume(:'job') ->> 'tenant_id' AS resumed_tenant, boundary.run_id() LIKE 'run-%' AS has_run_id;
SELECT id, subject FROM crm_tickets;
COMMIT;
-- Outside a transaction block the resumed boundary ends with its statement, as enter's does.
\set VERBOSITY default
SELECT boundary.resume(:'job') ->> 'tenant_id' AS resumed_for_one_statement;
RESET ROLE;
-- The registry changes while the job waits: resume is refused, with the reason.
SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'member', 'pro', 'us',
       ARRAY['search', 'crm'], ARRAY['tickets', 'kb']);
SET ROLE regress_agent;
\set VERBOSITY default
BEGIN;
SELECT boundary.resume(:'job');
ROLLBACK;
RESET ROLE;
SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us',
       ARRAY['search', 'crm'], ARRAY['tickets', 'kb']);

-- The audit trail: metadata only, append-only, each tenant sees its own rows.
SELECT event, tenant_id, user_id, trace_id, tool_ids, datasource_ids, blocked_count, resource
  FROM boundary.audit_log WHERE trace_id = 'regress-trace' OR event IN ('protect', 'unprotect') ORDER BY id;
SELECT boundary.blocked_events_total() >= 5 AS refusals_counted_despite_rollbacks;
\set VERBOSITY sqlstate
DELETE FROM boundary.audit_log;
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
\set VERBOSITY default

-- Risk tiers: a sensitive write (a refund) needs an approval recorded in the database first.
-- Approvals live in a protected table: anyone may ask (an unapproved row of their own), only an
-- owner or admin approves, never their own request; each approval is used once.
CREATE TABLE approvals (
    tenant_id    text   NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action       text   NOT NULL,
    resource     text   NOT NULL,
    requested_by text   NOT NULL DEFAULT boundary.user_id(),
    approved_by  text,
    approved_at  timestamptz
);
CREATE TABLE approval_uses (
    tenant_id   text   NOT NULL,
    approval_id bigint NOT NULL REFERENCES approvals,
    used_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, approval_id)
);
SELECT count(*) AS protect_statements FROM boundary.protect('approvals', user_column => '',
       write_roles => '{owner,admin,member}');
SELECT count(*) AS protect_statements FROM boundary.protect('approval_uses', write_roles => '{owner,admin,member}');
CREATE POLICY approvals_request ON approvals AS RESTRICTIVE FOR INSERT
    WITH CHECK (requested_by = boundary.user_id() AND approved_by IS NULL AND approved_at IS NULL);
CREATE POLICY approvals_approver ON approvals AS RESTRICTIVE FOR UPDATE
    USING (boundary.role() IN ('owner', 'admin') AND approved_at IS NULL)
    WITH CHECK (approved_by = boundary.user_id() AND approved_by <> requested_by);
-- Columns: an approver sets only who approved and when, so a request cannot be rewritten.
GRANT SELECT, INSERT (action, resource) ON approvals TO regress_agent;
GRANT UPDATE (approved_by, approved_at) ON approvals TO regress_agent;
GRANT SELECT, INSERT ON approval_uses TO regress_agent;
-- search_path ends in pg_temp and every name is qualified: a temporary "approvals" the agent
-- creates is never consulted.
CREATE FUNCTION require_approval() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    approval bigint;
BEGIN
    -- Runs as the writer, so the approvals it can see are its own tenant's.
    SELECT a.id INTO approval FROM public.approvals a
     WHERE a.action = TG_ARGV[0] AND a.resource = TG_TABLE_NAME || ':' || NEW.id
       AND a.approved_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM public.approval_uses u WHERE u.approval_id = a.id)
     ORDER BY a.id LIMIT 1;
    IF approval IS NULL THEN
        RAISE EXCEPTION 'approval required: % on %:%', TG_ARGV[0], TG_TABLE_NAME, NEW.id
              USING ERRCODE = '42501';
    END IF;
    -- Used once: a concurrent second use waits here, then fails on the key.
    INSERT INTO public.approval_uses (approval_id) VALUES (approval);
    RETURN NEW;
END $$;
CREATE TRIGGER refund_needs_approval BEFORE UPDATE OF refund_amount ON crm_tickets
    FOR EACH ROW EXECUTE FUNCTION require_approval('refund');
SELECT boundary.register_principal('northstar-dental', 'support', 'agentbot', 'member', 'pro', 'us',
       ARRAY['crm'], ARRAY['tickets']);
SELECT boundary.sign('{"tenant_id": "northstar-dental", "workspace_id": "support", "user_id": "agentbot", "role": "member"}') AS bot \gset
SET ROLE regress_agent;
\set VERBOSITY sqlstate
BEGIN;
SELECT boundary.enter(:'bot') IS NOT NULL AS entered;
UPDATE crm_tickets SET refund_amount = 120 WHERE id = 10;
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
-- The agent cannot bring its own approval: not as an approved row ...
BEGIN;
SELECT boundary.enter(:'bot') IS NOT NULL AS entered;
INSERT INTO approvals (action, resource, approved_by, approved_at)
    VALUES ('refund', 'crm_tickets:10', 'alice', now());
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
-- ... nor as a temporary table that shadows the real one.
BEGIN;
SELECT boundary.enter(:'bot') IS NOT NULL AS entered;
CREATE TEMPORARY TABLE approvals (id bigint, action text, resource text, approved_at timestamptz) ON COMMIT DROP;
INSERT INTO pg_temp.approvals VALUES (1, 'refund', 'crm_tickets:10', now());
UPDATE crm_tickets SET refund_amount = 120 WHERE id = 10;
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SELECT boundary.enter(:'bot') IS NOT NULL AS entered;
INSERT INTO approvals (action, resource) VALUES ('refund', 'crm_tickets:10') RETURNING id, requested_by;
UPDATE approvals SET approved_by = 'agentbot', approved_at = now() RETURNING id;   -- a member cannot approve
COMMIT;
\set VERBOSITY default
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;   -- alice, an admin, approves
UPDATE approvals SET approved_by = boundary.user_id(), approved_at = now() WHERE resource = 'crm_tickets:10';
COMMIT;
BEGIN;
SELECT boundary.enter(:'bot') IS NOT NULL AS entered;
UPDATE crm_tickets SET refund_amount = 120 WHERE id = 10;
SELECT id, refund_amount FROM crm_tickets;
COMMIT;
-- The approval is spent: a second refund needs a new one.
\set VERBOSITY sqlstate
BEGIN;
SELECT boundary.enter(:'bot') IS NOT NULL AS entered;
UPDATE crm_tickets SET refund_amount = 240 WHERE id = 10;
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
-- An admin cannot approve their own request, nor rewrite who asked.
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
INSERT INTO approvals (action, resource) VALUES ('refund', 'crm_tickets:10');
UPDATE approvals SET approved_by = boundary.user_id(), approved_at = now() WHERE approved_at IS NULL;
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
INSERT INTO approvals (action, resource) VALUES ('refund', 'crm_tickets:10');
UPDATE approvals SET requested_by = 'someone-else' WHERE approved_at IS NULL;
\echo :LAST_ERROR_SQLSTATE :LAST_ERROR_MESSAGE
ROLLBACK;
\set VERBOSITY default
RESET ROLE;
DROP TABLE crm_tickets, approval_uses, approvals;
DROP FUNCTION require_approval();

-- A superuser can turn off enter/exit rows (refusals and the other events are still recorded).
SET agent_boundary.audit_enter = off;
SELECT count(*) AS enter_rows_before FROM boundary.audit_log WHERE event = 'enter' \gset
BEGIN;
SELECT boundary.enter(:'dental') IS NOT NULL AS entered;
SELECT boundary.exit();
COMMIT;
SELECT count(*) - :enter_rows_before AS new_enter_rows FROM boundary.audit_log WHERE event = 'enter';
RESET agent_boundary.audit_enter;
