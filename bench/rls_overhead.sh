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
#   bash bench/rls_overhead.sh            full run (1M rows; 5 rounds of 1 s warm-up + 2 s per arm,
#                                         query and mode)
#   bash bench/rls_overhead.sh --quick    100k rows, 1 round of 1 + 1 s, debug build; checks that
#                                         the arms agree, inserts land in the entered tenant and no
#                                         transaction fails; writes no RESULTS
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
quick=0; warmup=1; seconds=2; rounds=5; rows=1000000
if [ "${1:-}" = "--quick" ]; then quick=1; warmup=1; seconds=1; rounds=1; rows=100000; fi
# --quick checks correctness, not speed, so it uses the debug build test.sh has just installed.
[ "$quick" = 1 ] && export BENCH_DEBUG_BUILD=1
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
GRANT SELECT ON bench_tokens TO plain_role, rls_role;
VACUUM ANALYZE;
SQL

arms=(A B C D)
queries=(point latest20 count insert)
declare -A table=([A]=items_plain [B]=items_manual [C]=items_protected [D]=items_protected)
declare -A role=([A]=plain_role [B]=rls_role [C]=rls_role [D]=rls_role)
# Every arm reads its tenant's row of bench_tokens in the statement that sets the tenant: C and D
# need the token, and A and B read the same row, so the arms differ only in enter vs set_config.
declare -A prefix=(
  [A]="SELECT set_config('app.tenant_id', t::text, true) IS NOT NULL FROM bench_tokens WHERE t = :t;"
  [B]="SELECT set_config('app.tenant_id', t::text, true) IS NOT NULL FROM bench_tokens WHERE t = :t;"
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
    # The body records the tenant the transaction meant to write for; C leaves tenant_id to the
    # boundary's column default. Checked after the runs.
    insert)   if [ "$arm" = C ]; then echo "INSERT INTO $t (id, created_at, body) VALUES (nextval('insert_ids'), now(), :t::text);"
              else echo "INSERT INTO $t (tenant_id, id, created_at, body) VALUES (:t, nextval('insert_ids'), now(), :t::text);"; fi ;;
  esac
  echo "COMMIT;"
}

# run ARM QUERY MODE ROUND: one pgbench run of warmup + seconds, keeping its per-transaction log.
run() {
  local arm="$1" query="$2" mode="$3" log="$dir/log-$1-$2-$3-r$4"
  script "$arm" "$query" > "$dir/$arm-$query.sql"
  rm -f "$log".*
  local out
  # The same seed for every arm of a round: they draw the same tenants in the same order.
  out="$("$PGBIN/pgbench" -n -M "$mode" -c 4 -j 2 -T "$((warmup + seconds))" --random-seed="$4" \
         -U "${role[$arm]}" -l --log-prefix="$log" \
         -f "$dir/$arm-$query.sql" 2>&1)" || { echo "$out" >&2; exit 1; }
  grep -q "number of failed transactions: 0 " <<<"$out" || { echo "$out" >&2; echo "pgbench reported failed transactions" >&2; exit 1; }
}

# after_warmup ARM QUERY MODE ROUND: "seconds latency_us" of each transaction that completed after
# the round's warm-up (pgbench log columns: client, transaction, latency us, script, epoch s, us).
after_warmup() {
  cat "$dir/log-$1-$2-$3-r$4".* | awk -v warmup="$warmup" '{ t[NR] = $5 + $6 / 1e6; lat[NR] = $3
      if (NR == 1 || t[NR] < first) first = t[NR] }
    END { for (i = 1; i <= NR; i++) if (t[i] >= first + warmup) printf "%.6f %d\n", t[i] - first - warmup, lat[i] }'
}

# summarize ARM QUERY MODE: "tps min max p50_ms p99_ms" after warm-up: the median, lowest and
# highest of the rounds' TPS, and latency percentiles over every transaction of every round.
summarize() {
  local arm="$1" query="$2" mode="$3" round all="$dir/after-warmup-$1-$2-$3"
  : > "$all"
  local rates=()
  for round in $(seq 1 "$rounds"); do
    after_warmup "$arm" "$query" "$mode" "$round" > "$dir/round.tmp"
    rates+=("$(awk '$1 > last { last = $1 } END { printf "%.1f", NR / (last > 0 ? last : 1) }' "$dir/round.tmp")")
    cat "$dir/round.tmp" >> "$all"
  done
  local tps; tps="$(printf '%s\n' "${rates[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f %.0f %.0f", v[int((NR + 1) / 2)], v[1], v[NR] }')"
  awk '{ print $2 }' "$all" | sort -n | awk -v tps="$tps" '{ v[NR] = $1 } END {
      p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1];
      printf "%s %.3f %.3f\n", tps, p50 / 1000, p99 / 1000 }'
}

# check_inserts_then_remove MODE: every row the insert runs wrote belongs to the tenant its
# transaction meant (for C, the one it entered); then the rows go, so later queries count the
# same rows in every table, and VACUUM keeps index-only scans index-only.
check_inserts_then_remove() {
  local t written wrong
  for t in items_plain items_manual items_protected; do
    read -r written wrong <<<"$(psql_q -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE body <> tenant_id::text)
                                                    FROM $t WHERE id >= 100000000")"
    if [ "$written" -eq 0 ] || [ "$wrong" != 0 ]; then
      echo "$t: $wrong of $written inserted rows carry another tenant (-M $1)" >&2; exit 1
    fi
    psql_q -c "DELETE FROM $t WHERE id >= 100000000" -c "VACUUM ANALYZE $t"
  done
  say "inserts (-M $1) attributed correctly, then removed"
}

# Arms take turns within each round, so drift in a shared machine's speed hits them alike.
declare -A result
total=$(( ${#arms[@]} * ${#queries[@]} * 2 * rounds )); n=0
for mode in simple prepared; do
  for query in "${queries[@]}"; do
    for round in $(seq 1 "$rounds"); do
      for arm in "${arms[@]}"; do
        n=$((n + 1)); say "[$n/$total] round $round: arm $arm, $query, -M $mode (${warmup}s warm-up + ${seconds}s)"
        run "$arm" "$query" "$mode" "$round"
      done
    done
    for arm in "${arms[@]}"; do
      result[$arm-$query-$mode]="$(summarize "$arm" "$query" "$mode")"
    done
    if [ "$query" = insert ]; then check_inserts_then_remove "$mode"; fi
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
  echo "Command: \`bash bench/rls_overhead.sh\` — $(machine). $rows rows over 1,000 Zipf-sized tenants (primary key (tenant_id, id), index (tenant_id, created_at)); pgbench with 4 clients and 2 threads; each cell is $rounds rounds of ${warmup} s warm-up + ${seconds} s measured, the arms taking turns within a round (TPS: median of the rounds; p50/p99: over all their measured transactions; each pgbench run opens new connections, and the warm-up is when a backend first meets most tokens); tenants drawn with \`random_zipfian(1, 1000, 1.01)\`. Each transaction reads its tenant's row of \`bench_tokens\` and, in the same statement, sets \`app.tenant_id\` with \`set_config\` (A, B) or enters the boundary from the pre-signed token in that row (C, D), so the arms differ only in enter vs set_config. Tokens are reused across transactions, as an agent run reuses its token: after a backend's first enter of a token, its verdict is remembered (Boundary overhead measures a fresh token every time). \`agent_boundary.audit_enter = off\` for C and D; the audit row's cost is also in Boundary overhead. Ratios are to arm A: TPS as A/X, latency as X/A (above 1 = slower)."
  echo
  echo "| mode | query | arm | TPS | TPS range over rounds | p50 ms | p99 ms | time per transaction vs A | p50 vs A | p99 vs A |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for mode in simple prepared; do
    for query in "${queries[@]}"; do
      read -r atps _ _ a50 a99 <<<"${result[A-$query-$mode]}"
      for arm in "${arms[@]}"; do
        read -r tps low high p50 p99 <<<"${result[$arm-$query-$mode]}"
        echo "| $mode | $query | $arm | $tps | $low–$high | $p50 | $p99 | $(ratio "$atps" "$tps") | $(ratio "$p50" "$a50") | $(ratio "$p99" "$a99") |"
      done
    done
  done
  echo
  echo "A: no row level security, \`WHERE tenant_id = :t\` by hand. B: a hand-written policy on \`current_setting('app.tenant_id')\`. C: \`boundary.protect\`'s policies. D: C plus the hand-written WHERE. The TPS range is how far one arm moves between rounds on this shared machine; a ratio inside that spread is noise."
}
if [ "$quick" = 1 ]; then
  report
  say "quick run: arms agree, inserts attributed correctly, no transaction failed; not written to bench/RESULTS.md"
else
  report | write_section rls-overhead
fi
