#!/usr/bin/env bash
# The Node.js client helpers (clients/node) against a real server: installs the pinned drivers
# (pg, postgres) with npm, starts a throwaway cluster with the lookalike tenants, runs node --test.
#   bash scripts/node_clients.sh [node --test args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/cluster.sh"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node and npm are needed for the Node.js helper tests (scripts/setup.sh installs them)" >&2
  exit 1
fi
say "installing the helpers' test dependencies (npm, pinned in clients/node/package.json)"
(cd "$ROOT/clients/node" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
install_extension >/dev/null

dir="$ROOT/target/node-clients"
cluster_stop "$dir"; rm -rf "$dir"
port="$(free_port)"
cluster_start "$dir" "$port"
trap 'cluster_stop "$dir"' EXIT
seed_client_fixture "$port" node-2026
cd "$ROOT/clients/node"
# One file at a time: the files share the seeded tables, and their writes would show in the
# other files' exact reads.
node --test --test-concurrency=1 --test-reporter=tap "$@" test/*.test.js 2>&1 | tee "$ROOT/target/node-clients.tap" | grep -E '^(not ok|# (tests|pass|fail|skipped))' || true
grep -q '^# fail 0$' "$ROOT/target/node-clients.tap"
