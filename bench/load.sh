#!/usr/bin/env bash
# Benchmarks and load in one command, with progress:
#   1. bench/rls_overhead.sh   pgbench arms A-D (RLS overhead), writes bench/RESULTS.md
#   2. bench/boundary_overhead.sh   boundary.enter vs set_config, writes bench/RESULTS.md
#   3. tests/pooled_load.rs    16 clients across 1,000 tenants through pgbouncer (transaction
#                              mode), a backend kill and a server restart; asserts nothing
#                              crosses tenants, nothing committed is lost, no boundary is left over
#   bash bench/load.sh           full run (12m21s on 2 cores, 2026-11-24)
#   bash bench/load.sh --quick   CI-sized (correctness only; nothing written to RESULTS.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
if [ "${1:-}" = "--quick" ]; then
  say "1/2 RLS overhead, quick (arms must agree; no failed transactions)"
  bash bench/rls_overhead.sh --quick >/dev/null
  say "2/2 pooled load, 20 s"
  AGENT_BOUNDARY_LOAD_SECONDS=20 cargo test -q --features integration --test pooled_load
  exit 0
fi
say "1/3 RLS overhead (pgbench)"
bash bench/rls_overhead.sh
say "2/3 boundary overhead"
bash bench/boundary_overhead.sh 15
say "3/3 pooled load, 120 s"
install_extension
AGENT_BOUNDARY_LOAD_SECONDS=120 cargo test -q --features integration --test pooled_load -- --nocapture
