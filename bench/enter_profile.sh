#!/usr/bin/env bash
# Where an enter's time goes, and what is left of it: one pgbench client, prepared protocol, three
# transactions of the same shape, each for 10 s with perf (cpu-clock) on its backend for 8 s:
#   baseline    BEGIN; set_config('app.tenant_id', ...); tenant setting read back; COMMIT
#   remembered  BEGIN; boundary.enter(token) with a token this backend verified before (its
#               enter row written within agent_boundary.audit_enter_interval); tenant_id(); COMMIT
#   first       the same with a token this backend has never met (one of 150,000, each with its own
#               trace id): signature check, claims, registry, seal, and the audit row
#   unaudited   first, as a role with agent_boundary.audit_enter = off: the verification alone
# Reports microseconds per transaction and above the baseline, the share of on-CPU samples by
# binary, and the extension's hottest functions. The server preloads the library, so a first
# meeting's audit row is queued for the background writer (another process). The WAL flush wait of an inline audit
# row is off-CPU: it shows in the time per transaction, not in the samples.
# Writes bench/RESULTS.md (section "Enter path profile"). Needs perf. Usage: bash bench/enter_profile.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
bench_server enter-profile "shared_buffers = '256MB'" "synchronous_commit = on"
dir="$BENCH_DIR"
tokens=150000
psql_q >/dev/null <<SQL
CREATE EXTENSION agent_boundary CASCADE;
SELECT boundary.generate_signing_key('bench');
SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us');
CREATE ROLE agent LOGIN NOBYPASSRLS;
CREATE ROLE unaudited_agent LOGIN NOBYPASSRLS IN ROLE agent;
ALTER ROLE unaudited_agent SET agent_boundary.audit_enter = off;
CREATE TABLE tokens (n int PRIMARY KEY, token text NOT NULL);
INSERT INTO tokens SELECT n, boundary.sign(jsonb_build_object('tenant_id', 'northstar-dental',
       'workspace_id', 'support', 'user_id', 'alice', 'role', 'admin', 'trace_id', 'request-' || n), '1 hour')
  FROM generate_series(1, $tokens) n;
GRANT SELECT ON tokens TO agent;
VACUUM ANALYZE tokens;
SQL
# Every arm reads one token row, so the arms differ only in what they do with it.
cat > "$dir/baseline.sql" <<SQL
\\set n random(1, $tokens)
BEGIN;
SELECT set_config('app.tenant_id', 'northstar-dental', true) IS NOT NULL FROM tokens WHERE n = :n;
SELECT current_setting('app.tenant_id');
COMMIT;
SQL
sed 's/^\\set n .*/\\set n 1/; s/set_config.*IS NOT NULL/boundary.enter(token) IS NOT NULL/; s/current_setting.*/boundary.tenant_id();/' \
  "$dir/baseline.sql" > "$dir/remembered.sql"
# A client's variables live between its transactions: :k walks the tokens, each met once.
sed 's/^\\set n .*/\\set k :k + 1/; s/:n/:k/; s/set_config.*IS NOT NULL/boundary.enter(token) IS NOT NULL/; s/current_setting.*/boundary.tenant_id();/' \
  "$dir/baseline.sql" > "$dir/first.sql"
cp "$dir/first.sql" "$dir/unaudited.sql"

profile() {  # profile ARM: prints "tps|share by binary|hottest extension functions"
  local arm="$1" pid tps user=agent
  [ "$arm" = unaudited ] && user=unaudited_agent
  "$PGBIN/pgbench" -n -M prepared -c 1 -T 10 -D k=0 -U "$user" -f "$dir/$arm.sql" > "$dir/$arm.pgbench" 2>&1 &
  local bench=$!
  sleep 1
  pid="$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND state IS NOT NULL LIMIT 1")"
  perf record -F 2999 -g -p "$pid" -o "$dir/$arm.perf" -- sleep 8 >/dev/null 2>&1
  wait "$bench"
  grep -q "number of failed transactions: 0 " "$dir/$arm.pgbench" || { cat "$dir/$arm.pgbench" >&2; exit 1; }
  tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/$arm.pgbench")"
  local processed; processed="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/$arm.pgbench")"
  [ "$processed" -le "$tokens" ] || { echo "the $arm arm ran $processed transactions, more than the $tokens tokens" >&2; exit 1; }
  printf '%.0f|%s|%s\n' "$tps" \
    "$(perf report -i "$dir/$arm.perf" --stdio --no-children --sort dso -g none 2>/dev/null \
       | awk '/%/ && $1+0 >= 0.5 { printf "%s%s %s", sep, $2, $1; sep = ", " }')" \
    "$(perf report -i "$dir/$arm.perf" --stdio --no-children --dsos agent_boundary.so --sort sym -g none 2>/dev/null \
       | awk '/%/ && $1+0 >= 0.2 && n < 4 { $1 = $1; pct = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); sub(/::h[0-9a-f]+$/, "");
                                             printf "%s`%s` %s", sep, $0, pct; sep = ", "; n++ }')"
}
declare -A tps share hot
arms=(baseline remembered first unaudited)
for arm in "${arms[@]}"; do
  say "profiling the $arm arm"
  IFS='|' read -r "tps[$arm]" "share[$arm]" "hot[$arm]" < <(profile "$arm")
done
rows="$(psql_q -c "SELECT count(*) FROM boundary.audit_log WHERE event = 'enter'")"
# Memory a remembered verdict takes: the backend's resident memory before and after entering
# 4,096 tokens it has not met (the default agent_boundary.remembered_tokens), audit off.
say "measuring memory per remembered token"
rss_kb="(pg_catalog.regexp_match(pg_catalog.pg_read_file('/proc/' || pg_catalog.pg_backend_pid() || '/status'), 'VmRSS:\s+(\d+) kB'))[1]::bigint"
remembered_bytes="$(psql_q <<SQL | tail -1
SET agent_boundary.audit_enter = off;
BEGIN; SELECT boundary.enter(token) IS NOT NULL FROM tokens WHERE n = 1; COMMIT;
SELECT $rss_kb AS before_kb \gset
BEGIN;
DO \$\$ DECLARE t text; BEGIN FOR t IN SELECT token FROM tokens WHERE n > $tokens - 4096 LOOP PERFORM boundary.enter(t); END LOOP; END \$\$;
COMMIT;
SELECT ($rss_kb - :before_kb) * 1024 / 4096;
SQL
)"
token_bytes="$(psql_q -c "SELECT avg(octet_length(token))::int FROM tokens")"
# Instructions per first meeting, which unlike time do not move with the machine's load: a
# single-user backend under callgrind enters N never-met tokens in one transaction (audit off),
# minus the same with 2; valgrind runs SHA-256 in software (no SHA extensions), so the count
# includes more hashing than the CPU above executes.
instructions=""
if command -v valgrind >/dev/null; then
  cluster_stop "$BENCH_DIR"
  enters() {  # enters N: instructions of a backend that enters N fresh tokens
    printf '%s\n' "SET agent_boundary.audit_enter = off;" "BEGIN;" \
      "DO \$\$ DECLARE t text; BEGIN FOR t IN SELECT token FROM tokens WHERE n > $tokens - $1 LOOP PERFORM boundary.enter(t); END LOOP; END \$\$;" \
      "COMMIT;" > "$dir/enters.sql"
    as_server_user valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PGBIN/postgres" --single -D "$dir/data" postgres \
      < "$dir/enters.sql" 2>&1 | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,
  }
  say "counting instructions per first enter (callgrind)"
  many="$(enters 2000)"; few="$(enters 2)"
  instructions="$(( (many - few) / 1998 ))"
fi
us() { awk -v t="$1" 'BEGIN { printf "%.0f", 1e6 / t }'; }
above() { awk -v t="$1" -v b="${tps[baseline]}" 'BEGIN { printf "%+.0f", 1e6 / t - 1e6 / b }'; }
{
  echo "## Enter path profile"
  echo
  echo "Command: \`bash bench/enter_profile.sh\` — $(machine). One pgbench client, prepared protocol, \`synchronous_commit = on\`, 10 s per arm with perf (cpu-clock, 2999 Hz) on the backend for 8 s. Each transaction reads one token row, then: baseline \`set_config\` and \`current_setting\`; remembered: \`boundary.enter\` with the token this backend verified before, and \`tenant_id()\`; first: the same with one of $tokens tokens (each its own trace id) the backend has never met; unaudited: first, as a role with \`agent_boundary.audit_enter = off\`. The arms wrote $rows \`enter\` rows."
  echo
  echo "| arm | transactions/s | µs per transaction | µs above baseline | on-CPU samples by binary | hottest in agent_boundary.so (share of all samples) |"
  echo "|---|---|---|---|---|---|"
  for arm in "${arms[@]}"; do
    echo "| $arm | ${tps[$arm]} | $(us "${tps[$arm]}") | $(above "${tps[$arm]}") | ${share[$arm]} | ${hot[$arm]:-—} |"
  done
  echo
  echo "Memory per remembered token: $remembered_bytes bytes (the backend's resident memory after entering 4,096 never-met tokens of $token_bytes bytes on average, audit off, minus before; the default \`agent_boundary.remembered_tokens\` holds that many)."
  echo
  [ -z "$instructions" ] || { echo "Instructions per first enter (\`valgrind --tool=callgrind\`, a single-user backend entering 2,000 never-met tokens in one transaction with \`audit_enter = off\`, minus the same with 2; valgrind runs SHA-256 in software): $instructions."; echo; }
  echo "A remembered token costs a hash lookup, the time checks, one setting and the function call's own SECURITY DEFINER and search_path switch; a first meeting adds the signature check, the claims, the registry read and the seal (unaudited), and its audit row (first − unaudited): the server preloads the library, so the row is queued in shared memory and the background writer inserts it in its own process, which this profile of the backend does not sample (with \`agent_boundary.audit_writer = transaction\` the backend inserts it and commits, +211 µs on 2026-12-01 before the writer existed: first +293, unaudited +82). The rest of each transaction is PostgreSQL and the kernel (loopback network) as in the baseline."
} | write_section enter-profile
