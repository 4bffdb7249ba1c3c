#!/usr/bin/env bash
# Filtered vector search, recall and latency, arms side by side in one run (bench/vector_search.rs):
# 200,000 synthetic vectors of 128 dimensions, 1,000 tenants with Zipf-skewed sizes, 200 queries
# per selectivity bucket. Writes the "Filtered vector search" section of bench/RESULTS.md.
#   bash bench/vector_search.sh                       the full run (about 10 minutes on 2 cores)
#   bash bench/vector_search.sh --vectors 20000 --queries 20    a smoke run (not written to RESULTS.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_server vector-search "shared_buffers = '1GB'" "maintenance_work_mem = '1GB'" \
  "max_parallel_maintenance_workers = 1" "jit = off"

say "building the benchmark client (release)"
cargo bench --no-run -q --features integration --bench vector_search
out="$ROOT/target/bench-vector-search/report.md"
say "running (progress below)"
cargo bench -q --features integration --bench vector_search -- --port "$PGPORT" "$@" > "$out"
if [ $# -gt 0 ]; then
  cat "$out"
  say "custom arguments: not written to bench/RESULTS.md"
  exit 0
fi
{
  echo "## Filtered vector search"
  echo
  echo "Command: \`bash bench/vector_search.sh\` — $(machine); pgvector $(psql_q -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")."
  echo
  cat "$out"
} | write_section vector-search
