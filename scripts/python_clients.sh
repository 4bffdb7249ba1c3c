#!/usr/bin/env bash
# The Python client adapters (clients/python) against a real server: installs the pinned drivers
# and the agent frameworks into the project venv, starts a throwaway cluster with the lookalike
# tenants (frameworks' tables scoped in schema agents), runs pytest.
#   bash scripts/python_clients.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/cluster.sh"

say "installing the adapters' test dependencies into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/clients/python/requirements-test.txt" \
  -r "$ROOT/clients/python/requirements-frameworks.txt"
install_extension >/dev/null

dir="$ROOT/target/python-clients"
cluster_stop "$dir"; rm -rf "$dir"
port="$(free_port)"
# The frameworks' tables are born in schema agents (the app role's first schema) and scoped there.
cluster_start "$dir" "$port" "shared_preload_libraries = 'agent_boundary'" \
  "agent_boundary.auto_protect_schemas = 'agents'" "agent_boundary.auto_protect_add_columns = 'tenant'" \
  "agent_boundary.auto_protect_shared_tables = 'checkpoint_migrations, store_migrations, vector_migrations'"
trap 'cluster_stop "$dir"' EXIT
psql=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
secret="$("${psql[@]}" <<SQL
CREATE EXTENSION agent_boundary CASCADE;
\i $ROOT/tests/fixtures/lookalike_tenants.sql
CREATE ROLE app LOGIN;
CREATE SCHEMA agents AUTHORIZATION app;
ALTER ROLE app SET search_path = agents, public;
CREATE TABLE notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL);
INSERT INTO notes (tenant_id, body) VALUES ('northstar-dental', 'dental: crown follow-up'),
                                           ('northstar-design', 'design: brand refresh');
SELECT count(*) FROM boundary.protect('notes') \\g /dev/null
GRANT SELECT, INSERT ON notes TO app;
GRANT USAGE ON SEQUENCE notes_id_seq TO app;
SELECT boundary.generate_signing_key('python-2026');
SQL
)"
export AGENT_BOUNDARY_APP_DSN="postgresql://app@127.0.0.1:$port/postgres"
export AGENT_BOUNDARY_ADMIN_DSN="postgresql://postgres@127.0.0.1:$port/postgres"
export AGENT_BOUNDARY_SECRET="${secret##*$'\n'}" AGENT_BOUNDARY_KID="python-2026"
cd "$ROOT/clients/python"
PYTHONPATH="$ROOT/clients/python" "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests "$@"
