#!/usr/bin/env bash
# The price of the boundary itself, side by side in one run on one server:
#   1. per-call cost of an accessor (boundary.tenant_id()) vs current_setting() on a plain GUC,
#      evaluated once per row over 1M rows;
#   2. per-transaction cost of boundary.enter(token) (JWT verify + key and registry lookups +
#      seal) vs set_config(..., true), with pgbench in prepared mode, one client.
# Writes bench/RESULTS.md (section "Boundary overhead"). Usage: bash bench/boundary_overhead.sh [seconds per arm]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seconds="${1:-15}"
bench_server boundary-overhead
dir="$BENCH_DIR"

psql_q -c "CREATE EXTENSION agent_boundary CASCADE" \
       -c "SELECT boundary.generate_signing_key('bench')" \
       -c "SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us', ARRAY['search'], ARRAY['tickets'])" >/dev/null
token="$(psql_q -c "SELECT boundary.sign('{\"tenant_id\": \"northstar-dental\", \"workspace_id\": \"support\", \"user_id\": \"alice\", \"role\": \"admin\"}', '1 hour')")"

# 1. accessor vs current_setting, per row (best of 5 runs each, interleaved).
say "accessor vs current_setting over 1M rows"
accessor_sql="BEGIN; SELECT boundary.enter('$token') IS NOT NULL; SET app.tenant_id = 'northstar-dental';
  EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT count(*) FROM generate_series(1, 1000000) g WHERE boundary.tenant_id() <> g::text;
  EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT count(*) FROM generate_series(1, 1000000) g WHERE current_setting('app.tenant_id') <> g::text;
  EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT count(*) FROM generate_series(1, 1000000) g WHERE 'northstar-dental' <> g::text;
  COMMIT;"
best() { sort -n | head -1; }
acc=(); cur=(); base=()
for _ in 1 2 3 4 5; do
  mapfile -t t < <(psql_q -c "$accessor_sql" | sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p')
  acc+=("${t[0]}"); cur+=("${t[1]}"); base+=("${t[2]}")
done
acc_ms=$(printf '%s\n' "${acc[@]}" | best); cur_ms=$(printf '%s\n' "${cur[@]}" | best); base_ms=$(printf '%s\n' "${base[@]}" | best)

# 2. enter vs set_config per transaction.
say "boundary.enter vs set_config, ${seconds}s each (pgbench -M prepared -c 1)"
cat > "$dir/enter.sql" <<'SQL'
BEGIN;
SELECT boundary.enter(:token);
SELECT boundary.tenant_id();
COMMIT;
SQL
cat > "$dir/set_config.sql" <<'SQL'
BEGIN;
SELECT set_config('app.tenant_id', :tenant, true);
SELECT current_setting('app.tenant_id');
COMMIT;
SQL
tps() { "$PGBIN/pgbench" -n -M prepared -c 1 -T "$seconds" -D token="$token" -D tenant=northstar-dental -f "$1" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
enter_tps=$(tps "$dir/enter.sql" | xargs printf '%.0f'); set_tps=$(tps "$dir/set_config.sql" | xargs printf '%.0f')
unaudited_tps=$(PGOPTIONS="-c agent_boundary.audit_enter=off" tps "$dir/enter.sql" | xargs printf '%.0f')

# Milliseconds per million calls are nanoseconds per call.
per_call_ns() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a - b }'; }
{
  echo "## Boundary overhead"
  echo
  echo "Command: \`bash bench/boundary_overhead.sh $seconds\` — $(machine)."
  echo
  echo "| measure | boundary | baseline | ratio |"
  echo "|---|---|---|---|"
  echo "| 1M-row filter calling the accessor per row: \`boundary.tenant_id()\` vs \`current_setting('app.tenant_id')\` (best of 5, ms) | $acc_ms | $cur_ms | $(ratio "$acc_ms" "$cur_ms") |"
  echo "| accessor cost per call over a constant-compare filter (ns) | $(per_call_ns "$acc_ms" "$base_ms") | $(per_call_ns "$cur_ms" "$base_ms") | $(ratio "$(per_call_ns "$acc_ms" "$base_ms")" "$(per_call_ns "$cur_ms" "$base_ms")") |"
  echo "| transactions/s: \`BEGIN; boundary.enter(token); tenant_id(); COMMIT\` vs \`BEGIN; set_config(...); current_setting(); COMMIT\` | $enter_tps | $set_tps | $(ratio "$set_tps" "$enter_tps")x the time per transaction |"
  echo "| the same with \`agent_boundary.audit_enter = off\` (no audit row, so no WAL flush at commit) | $unaudited_tps | $set_tps | $(ratio "$set_tps" "$unaudited_tps")x the time per transaction |"
  echo
  echo "A policy \`tenant_id = boundary.tenant_id()\` pays the per-call cost once per index scan (the accessor is the index key) and once per row in a sequential scan. \`boundary.enter\` verifies the JWT, reads the key and the registry, and seals the result, and (by default) appends an \`enter\` row to the audit log, which turns a read-only transaction into one that flushes WAL at commit; the ratios are for a transaction that does nothing else."
} | write_section boundary-overhead
