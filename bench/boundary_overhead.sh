#!/usr/bin/env bash
# The price of the boundary itself, side by side in one run on one server:
#   1. per-call cost of an accessor (boundary.tenant_id()) vs current_setting() on a plain GUC,
#      evaluated once per row over 1M rows;
#   2. per-transaction cost of boundary.enter(token) vs set_config(..., true), with pgbench in
#      prepared mode, 1 and 4 clients: a token the backend has entered before (its verdict is
#      remembered; its audit row written once a minute per backend) with that row queued for the
#      background writer (the default, the library preloaded), written by the entering
#      transaction (audit_writer = transaction), and without audit rows; and a fresh token every
#      transaction (JWT verify + seal; the key and the registry row are remembered; an audit row
#      each), queued and inline. synchronous_commit is on, as on a production server.
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
# Distinct tokens (each its own trace id) for the fresh-token arm: drawn at random from 300,000,
# a backend rarely sees one twice, and then only within its last 1,024 verdicts would it help.
fresh_tokens=300000
say "signing $fresh_tokens tokens"
psql_q >/dev/null <<SQL
CREATE TABLE fresh_tokens (n int PRIMARY KEY, token text NOT NULL);
INSERT INTO fresh_tokens SELECT n, boundary.sign(jsonb_build_object('tenant_id', 'northstar-dental',
       'workspace_id', 'support', 'user_id', 'alice', 'role', 'admin', 'trace_id', 'trace-' || n), '1 hour')
  FROM generate_series(1, $fresh_tokens) n;
VACUUM ANALYZE fresh_tokens;
SQL

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
say "boundary.enter vs set_config, ${seconds}s per arm (pgbench -M prepared -c 1)"
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
cat > "$dir/enter_fresh.sql" <<SQL
\\set n random(1, $fresh_tokens)
BEGIN;
SELECT boundary.enter(token) IS NOT NULL FROM fresh_tokens WHERE n = :n;
SELECT boundary.tenant_id();
COMMIT;
SQL
cat > "$dir/set_config_row.sql" <<SQL
\\set n random(1, $fresh_tokens)
BEGIN;
SELECT set_config('app.tenant_id', 'northstar-dental', true) IS NOT NULL FROM fresh_tokens WHERE n = :n;
SELECT current_setting('app.tenant_id');
COMMIT;
SQL
tps() {  # tps SCRIPT CLIENTS: one pgbench run of $round_seconds; prints its TPS
  local out
  out="$("$PGBIN/pgbench" -n -M prepared -c "$2" -j "$2" -T "$round_seconds" -D token="$token" -D tenant=northstar-dental -f "$1" 2>&1)" || { echo "$out" >&2; exit 1; }
  grep -q "number of failed transactions: 0 " <<<"$out" || { echo "$out" >&2; exit 1; }
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out"
}
# Five rounds in which the arms take turns, so drift in a shared machine's speed hits them alike;
# each arm's figure is the median of its rounds.
rounds=5; round_seconds=$(( (seconds + rounds - 1) / rounds ))
declare -A runs=()
# arm name, script, PGOPTIONS
arms=(
  "set set_config.sql -c agent_boundary.audit_enter=on"
  "enter enter.sql -c agent_boundary.audit_enter=on"
  "inline enter.sql -c agent_boundary.audit_writer=transaction"
  "unaudited enter.sql -c agent_boundary.audit_enter=off"
  "set_row set_config_row.sql -c agent_boundary.audit_enter=on"
  "fresh enter_fresh.sql -c agent_boundary.audit_enter=on"
  "fresh_inline enter_fresh.sql -c agent_boundary.audit_writer=transaction"
)
for round in $(seq 1 "$rounds"); do
  say "round $round of $rounds (${round_seconds}s per arm)"
  for c in 1 4; do
    # Each round starts one arm later, so no arm always follows the same one.
    for turn in "${!arms[@]}"; do
      read -r arm script options <<<"${arms[$(( (turn + round) % ${#arms[@]} ))]}"
      runs[$arm$c]+=" $(PGOPTIONS="$options" tps "$dir/$script" $c)"
    done
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f", v[int((NR + 1) / 2)] }'; }
declare -A med=()
for arm in "${!runs[@]}"; do
  # shellcheck disable=SC2086
  med[$arm]=$(median ${runs[$arm]})
done

# Milliseconds per million calls are nanoseconds per call.
per_call_ns() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a - b }'; }
{
  echo "## Boundary overhead"
  echo
  echo "Command: \`bash bench/boundary_overhead.sh $seconds\` — $(machine). Transactions/s: 1 and 4 clients (pgbench -j as many threads), prepared protocol, \`synchronous_commit = on\`, median of $rounds rounds of ${round_seconds} s in which the arms take turns, each round starting one arm later."
  echo
  echo "| measure | boundary | baseline | ratio |"
  echo "|---|---|---|---|"
  echo "| 1M-row filter calling the accessor per row: \`boundary.tenant_id()\` vs \`current_setting('app.tenant_id')\` (best of 5, ms) | $acc_ms | $cur_ms | $(ratio "$acc_ms" "$cur_ms") |"
  echo "| accessor cost per call over a constant-compare filter (ns) | $(per_call_ns "$acc_ms" "$base_ms") | $(per_call_ns "$cur_ms" "$base_ms") | $(ratio "$(per_call_ns "$acc_ms" "$base_ms")" "$(per_call_ns "$cur_ms" "$base_ms")") |"
  for c in 1 4; do
    echo "| $c client(s), transactions/s: \`BEGIN; boundary.enter(token); tenant_id(); COMMIT\` vs \`BEGIN; set_config(...); current_setting(); COMMIT\`, the same token every time, audit on (default: a row per boundary per backend per minute, queued for the background writer) | ${med[enter$c]} | ${med[set$c]} | $(ratio "${med[set$c]}" "${med[enter$c]}")x the time per transaction |"
    echo "| $c client(s), the same with \`agent_boundary.audit_writer = transaction\` (the entering transaction writes the row, committed asynchronously) | ${med[inline$c]} | ${med[set$c]} | $(ratio "${med[set$c]}" "${med[inline$c]}")x the time per transaction |"
    echo "| $c client(s), the same with \`agent_boundary.audit_enter = off\` (no audit row) | ${med[unaudited$c]} | ${med[set$c]} | $(ratio "${med[set$c]}" "${med[unaudited$c]}")x the time per transaction |"
    echo "| $c client(s), a fresh token every transaction, read from a table in the entering statement (baseline: set_config reading the same row), audit on (default: a row each, queued) | ${med[fresh$c]} | ${med[set_row$c]} | $(ratio "${med[set_row$c]}" "${med[fresh$c]}")x the time per transaction |"
    echo "| $c client(s), the same with \`agent_boundary.audit_writer = transaction\` | ${med[fresh_inline$c]} | ${med[set_row$c]} | $(ratio "${med[set_row$c]}" "${med[fresh_inline$c]}")x the time per transaction |"
  done
  echo
  echo "A policy \`tenant_id = boundary.tenant_id()\` pays the per-call cost once per index scan (the accessor is the index key) and once per row in a sequential scan. The first \`boundary.enter\` of a token in a backend verifies the JWT, reads the key and the registry row (each remembered until \`boundary.signing_keys\` or \`boundary.principals\` change), narrows and seals the result; later enters of the same token reuse that verdict after checking the token's times again. By default \`enter\` also writes an audit row, at most once per boundary per backend per \`agent_boundary.audit_enter_interval\` (60 s; the enters in between are counted into the next row's \`repeats\`), so the same-token arms write one row a minute per backend and the fresh-token arms (a trace id per token) one per transaction. The server preloads the library, so by default the row goes to a queue in shared memory that a background worker writes every \`agent_boundary.audit_flush_interval\` (200 ms) in one transaction, and the request stays read-only; with \`audit_writer = transaction\` the entering transaction inserts the row, and commits without waiting for the WAL flush when that row is its only write (\`agent_boundary.audit_async_commit\`). The ratios are for transactions that do nothing else."
} | write_section boundary-overhead
