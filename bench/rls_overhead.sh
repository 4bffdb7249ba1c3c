#!/usr/bin/env bash
# Row level security overhead with pgbench, arms side by side in one run on one server:
#   A  a role without RLS and a hand-written WHERE tenant_id = $1 (set_config per transaction)
#   B  hand-written RLS on current_setting('app.tenant_id') (set_config per transaction)
#   C  policies from boundary.protect (boundary.enter per transaction)
#   D  C plus the explicit WHERE
# Queries: point lookup, latest 20, count(*) per tenant, INSERT; -M simple and -M prepared.
# 1M rows (Zipf-sized tenants, 1,000 of them, primary key (tenant_id, id)); tenants drawn with
# random_zipfian. Reports TPS and p50/p99 latency as ratios to A, and writes the "RLS overhead"
# section of bench/RESULTS.md.
#   bash bench/rls_overhead.sh            full run (1M rows, 10 s per arm and query and mode)
#   bash bench/rls_overhead.sh --quick    100k rows, 2 s each; checks the arms agree; no RESULTS
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
quick=0; seconds=10; rows=1000000
if [ "${1:-}" = "--quick" ]; then quick=1; seconds=2; rows=100000; fi
bench_server rls-overhead "shared_buffers = '512MB'" "jit = off" "max_connections = 50"
dir="$BENCH_DIR"

say "loading $rows rows into three copies of the table (plain, hand-written RLS, boundary.protect)"
psql_q >/dev/null <<SQL
CREATE EXTENSION agent_boundary CASCADE;
SELECT boundary.generate_signing_key('bench');
CREATE ROLE plain_role LOGIN NOBYPASSRLS;
CREATE ROLE rls_role LOGIN NOBYPASSRLS;
-- enter()'s own cost, audit row included, is measured by bench/boundary_overhead.sh.
ALTER ROLE rls_role SET agent_boundary.audit_enter = off;
CREATE TABLE tenant_sizes AS
  SELECT t, greatest(1, round($rows * (1.0 / t) / (SELECT sum(1.0 / g) FROM generate_series(1, 1000) g)))::int AS n
    FROM generate_series(1, 1000) t;
CREATE TABLE items_plain (tenant_id bigint NOT NULL, id bigint NOT NULL, created_at timestamptz NOT NULL,
                          body text NOT NULL, PRIMARY KEY (tenant_id, id));
INSERT INTO items_plain SELECT s.t, g, now() - g * interval '1 second', md5(g::text)
  FROM tenant_sizes s, generate_series(1, s.n) g;
CREATE INDEX ON items_plain (tenant_id, created_at);
CREATE TABLE items_manual (LIKE items_plain INCLUDING ALL);
INSERT INTO items_manual SELECT * FROM items_plain;
ALTER TABLE items_manual ENABLE ROW LEVEL SECURITY;
ALTER TABLE items_manual FORCE ROW LEVEL SECURITY;
CREATE POLICY manual ON items_manual USING (tenant_id = current_setting('app.tenant_id')::bigint)
  WITH CHECK (tenant_id = current_setting('app.tenant_id')::bigint);
CREATE TABLE items_protected (LIKE items_plain INCLUDING ALL);
INSERT INTO items_protected SELECT * FROM items_plain;
SELECT count(*) FROM boundary.protect('items_protected');
CREATE SEQUENCE insert_ids START 100000000;
GRANT SELECT, INSERT ON items_plain TO plain_role;
GRANT SELECT, INSERT ON items_manual, items_protected TO rls_role;
GRANT USAGE ON SEQUENCE insert_ids TO plain_role, rls_role;
SELECT count(boundary.register_principal(t::text, 'ws', 'agent', 'member')) FROM generate_series(1, 1000) t;
CREATE TABLE bench_tokens (t int PRIMARY KEY, token text NOT NULL);
INSERT INTO bench_tokens SELECT t, boundary.sign(jsonb_build_object('tenant_id', t::text, 'workspace_id', 'ws',
       'user_id', 'agent', 'role', 'member'), '1 hour') FROM generate_series(1, 1000) t;
GRANT SELECT ON bench_tokens TO rls_role;
VACUUM ANALYZE;
SQL

arms=(A B C D)
queries=(point latest20 count insert)
declare -A table=([A]=items_plain [B]=items_manual [C]=items_protected [D]=items_protected)
declare -A role=([A]=plain_role [B]=rls_role [C]=rls_role [D]=rls_role)
declare -A prefix=(
  [A]="SELECT set_config('app.tenant_id', :t::text, true);"
  [B]="SELECT set_config('app.tenant_id', :t::text, true);"
  [C]="SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = :t;"
  [D]="SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = :t;")
script() {  # script ARM QUERY
  local arm="$1" query="$2" t="${table[$1]}" where="" and=""
  if [ "$arm" = A ] || [ "$arm" = D ]; then where="WHERE tenant_id = :t"; and="tenant_id = :t AND"; fi
  printf '\\set t random_zipfian(1, 1000, 1.01)\n\\set id random(1, 10)\nBEGIN;\n%s\n' "${prefix[$arm]}"
  case "$query" in
    point)    echo "SELECT body FROM $t WHERE $and id = :id;" ;;
    latest20) echo "SELECT id, created_at FROM $t $where ORDER BY created_at DESC LIMIT 20;" ;;
    count)    echo "SELECT count(*) FROM $t $where;" ;;
    insert)   if [ "$arm" = C ]; then echo "INSERT INTO $t (id, created_at, body) VALUES (nextval('insert_ids'), now(), 'x');"
              else echo "INSERT INTO $t (tenant_id, id, created_at, body) VALUES (:t, nextval('insert_ids'), now(), 'x');"; fi ;;
  esac
  echo "COMMIT;"
}

# run ARM QUERY MODE: prints "tps p50_ms p99_ms" from pgbench's per-transaction log.
run() {
  local arm="$1" query="$2" mode="$3" log="$dir/log-$1-$2-$3"
  script "$arm" "$query" > "$dir/$arm-$query.sql"
  rm -f "$log".*
  local out
  out="$("$PGBIN/pgbench" -n -M "$mode" -c 4 -j 2 -T "$seconds" -U "${role[$arm]}" -l --log-prefix="$log" \
         -f "$dir/$arm-$query.sql" 2>&1)" || { echo "$out" >&2; exit 1; }
  grep -q "number of failed transactions: 0 " <<<"$out" || { echo "$out" >&2; echo "pgbench reported failed transactions" >&2; exit 1; }
  local tps; tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")"
  cat "$log".* | awk '{print $3}' | sort -n | awk -v tps="$tps" '{ v[NR] = $1 } END {
      p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1];
      printf "%.0f %.3f %.3f\n", tps, p50 / 1000, p99 / 1000 }'
}

declare -A result
total=$(( ${#arms[@]} * ${#queries[@]} * 2 )); n=0
for mode in simple prepared; do
  for query in "${queries[@]}"; do
    for arm in "${arms[@]}"; do
      n=$((n + 1)); say "[$n/$total] arm $arm, $query, -M $mode (${seconds}s)"
      result[$arm-$query-$mode]="$(run "$arm" "$query" "$mode")"
    done
  done
done

# The arms must answer alike, or the comparison means nothing: every tenant's count(*) through
# A's WHERE equals the count through C's policies (run as the agent role inside each boundary).
say "checking that arms A and C see the same rows for 20 tenants"
for t in 1 2 3 5 8 13 21 34 55 89 144 233 377 500 610 700 800 900 987 1000; do
  a="$(psql_q -U plain_role -c "SELECT count(*) FROM items_plain WHERE tenant_id = $t AND id < 100000000")"
  c="$(psql_q -U rls_role -c "BEGIN; SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = $t;
        SELECT count(*) FROM items_protected WHERE id < 100000000; COMMIT;" | sed -n 2p)"
  [ "$a" = "$c" ] || { echo "tenant $t: A sees $a rows, C sees $c" >&2; exit 1; }
done
say "arms agree"

report() {
  echo "## RLS overhead"
  echo
  echo "Command: \`bash bench/rls_overhead.sh\` — $(machine). $rows rows over 1,000 Zipf-sized tenants (primary key (tenant_id, id), index (tenant_id, created_at)); pgbench with 4 clients and 2 threads, ${seconds} s per cell; tenants drawn with \`random_zipfian(1, 1000, 1.01)\`. Each transaction sets \`app.tenant_id\` with \`set_config\` (A, B) or enters a boundary from a pre-signed token (C, D; \`agent_boundary.audit_enter = off\`, the audit row's cost is in Boundary overhead). Ratios are to arm A: TPS as A/X, latency as X/A (above 1 = slower)."
  echo
  echo "| mode | query | arm | TPS | p50 ms | p99 ms | time per transaction vs A | p50 vs A | p99 vs A |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for mode in simple prepared; do
    for query in "${queries[@]}"; do
      read -r atps a50 a99 <<<"${result[A-$query-$mode]}"
      for arm in "${arms[@]}"; do
        read -r tps p50 p99 <<<"${result[$arm-$query-$mode]}"
        echo "| $mode | $query | $arm | $tps | $p50 | $p99 | $(ratio "$atps" "$tps") | $(ratio "$p50" "$a50") | $(ratio "$p99" "$a99") |"
      done
    done
  done
  echo
  echo "A: no row level security, \`WHERE tenant_id = :t\` by hand. B: a hand-written policy on \`current_setting('app.tenant_id')\`. C: \`boundary.protect\`'s policies. D: C plus the hand-written WHERE."
}
if [ "$quick" = 1 ]; then
  report
  say "quick run: arms agree and no transaction failed; not written to bench/RESULTS.md"
else
  report | write_section rls-overhead
fi
