#!/usr/bin/env bash
# Demo: build and install agent_boundary into the embedded PostgreSQL 18 (+ pgvector), start a
# server on a local port, seed two lookalike tenants, run the guided tour, and leave the server
# running. Idempotent: re-running rebuilds, re-seeds and re-runs the tour.
#   bash scripts/demo.sh          set up and run the tour
#   bash scripts/demo.sh stop     stop the demo server
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/cluster.sh"

dir="$ROOT/target/demo"
if [ "${1:-}" = "stop" ]; then
  cluster_stop "$dir"
  say "demo server stopped (data kept in $dir; delete it to start from scratch)"
  exit 0
fi

install_extension  # debug build
port="$(cluster_port "$dir" 2>/dev/null || true)"
port="${port:-${AGENT_BOUNDARY_DEMO_PORT:-55432}}"
say "starting the demo server on 127.0.0.1:$port (data in $dir)"
cluster_stop "$dir"   # pick up a freshly installed library
# Preloaded, as the README's deployment rules ask (connect-time forgery check, audit writer).
cluster_start "$dir" "$port" "shared_preload_libraries = 'agent_boundary'"

psql_demo() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }
PGOPTIONS="-c client_min_messages=warning" psql_demo -d postgres -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS agent_demo WITH (FORCE)" -c "CREATE DATABASE agent_demo" >/dev/null
say "seeding Northstar Dental and Northstar Design (examples/lookalike_tenants.sql)"
psql_demo -d agent_demo -v ON_ERROR_STOP=1 -c "CREATE EXTENSION agent_boundary CASCADE" \
  -f "$ROOT/examples/lookalike_tenants.sql" >/dev/null 2>&1
psql_demo -d agent_demo -f "$ROOT/examples/demo.sql" 2>&1

cat <<MSG

The demo server is still running. Connect with:
  $PGBIN/psql "host=127.0.0.1 port=$port user=postgres dbname=agent_demo"
Then try, for example:
  SELECT boundary.sign('{"tenant_id": "northstar-design", "workspace_id": "support", "user_id": "alice", "role": "member"}') AS t \\gset
  SET ROLE demo_agent; BEGIN; SELECT boundary.enter(:'t'); SELECT * FROM tickets; COMMIT;
Stop it with:
  bash scripts/demo.sh stop
MSG
