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
seed_client_fixture "$port" python-2026 \
  "CREATE SCHEMA agents AUTHORIZATION app; ALTER ROLE app SET search_path = agents, public;"
cd "$ROOT/clients/python"
PYTHONPATH="$ROOT/clients/python" "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests "$@"
