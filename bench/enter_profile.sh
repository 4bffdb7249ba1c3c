#!/usr/bin/env bash
# Where a remembered-token transaction (BEGIN; boundary.enter(token); tenant_id(); COMMIT) spends
# its time: perf samples of its backend (cpu-clock, 8 s, one pgbench client, prepared protocol),
# with the audit row committed asynchronously (the default) and synchronously
# (audit_async_commit = off, the behaviour before). Reports TPS and the share of on-CPU samples by
# binary; the WAL flush wait itself is off-CPU, so it shows in TPS, not in the samples.
# Writes bench/RESULTS.md (section "Enter path profile"). Needs perf. Usage: bash bench/enter_profile.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
bench_server enter-profile "shared_buffers = '256MB'"
dir="$BENCH_DIR"
psql_q -c "CREATE EXTENSION agent_boundary CASCADE" -c "SELECT boundary.generate_signing_key('bench')" \
       -c "SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us')" >/dev/null
token="$(psql_q -c "SELECT boundary.sign('{\"tenant_id\": \"northstar-dental\", \"workspace_id\": \"support\", \"user_id\": \"alice\", \"role\": \"admin\"}', '1 hour')")"
cat > "$dir/enter.sql" <<'SQL'
BEGIN;
SELECT boundary.enter(:token);
SELECT boundary.tenant_id();
COMMIT;
SQL
profile() {  # profile NAME [PGOPTIONS]: prints "tps|share by binary"
  local name="$1" out pid
  PGOPTIONS="${2:-}" "$PGBIN/pgbench" -n -M prepared -c 1 -T 12 -D token="$token" -f "$dir/enter.sql" > "$dir/$name.pgbench" 2>&1 &
  local bench=$!
  sleep 2
  pid="$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND state IS NOT NULL LIMIT 1")"
  perf record -F 2999 -g -p "$pid" -o "$dir/$name.perf" -- sleep 8 >/dev/null 2>&1
  wait "$bench"
  out="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/$name.pgbench")"
  printf '%.0f|%s\n' "$out" "$(perf report -i "$dir/$name.perf" --stdio --no-children --sort dso -g none 2>/dev/null \
    | awk '/%/ && $1+0 >= 0.5 { printf "%s%s %s", sep, $2, $1; sep = ", " }')"
}
say "profiling the enter path, audit row committed asynchronously (default)"
IFS='|' read -r async_tps async_share < <(profile async)
say "profiling the enter path, audit row committed synchronously"
IFS='|' read -r sync_tps sync_share < <(profile sync "-c agent_boundary.audit_async_commit=off")
{
  echo "## Enter path profile"
  echo
  echo "Command: \`bash bench/enter_profile.sh\` — $(machine). One pgbench client, prepared protocol, \`BEGIN; boundary.enter(token); tenant_id(); COMMIT\` with a remembered token; perf (cpu-clock, 2999 Hz) on the backend for 8 s."
  echo
  echo "| audit row | transactions/s | µs per transaction | on-CPU samples by binary |"
  echo "|---|---|---|---|"
  echo "| committed asynchronously (default) | $async_tps | $(awk -v t="$async_tps" 'BEGIN { printf "%.0f", 1e6 / t }') | $async_share |"
  echo "| committed synchronously (\`audit_async_commit = off\`, as before) | $sync_tps | $(awk -v t="$sync_tps" 'BEGIN { printf "%.0f", 1e6 / t }') | $sync_share |"
  echo
  echo "The extension's own code is a few percent of the backend's CPU either way; the rest is PostgreSQL executing the statements and the audit INSERT, and the kernel (loopback network, and WAL writes when the commit waits). The wait for the WAL flush is off-CPU: it shows as the difference in transactions per second."
} | write_section enter-profile
