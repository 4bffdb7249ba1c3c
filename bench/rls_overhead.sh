#!/usr/bin/env bash
# The price of tenant isolation on the traffic agent backends have, arms side by side in one run
# on one server. 10,000 tenants of Zipf-distributed size (1M rows), one token per tenant, tenants
# drawn with random_zipfian; every transaction reads its token row and sets the tenant in that
# same statement, then runs the query:
#   A  no row level security: set_config + a hand-written WHERE tenant_id = :t (the baseline)
#   E  boundary.enter, then the same hand-written WHERE on the same unprotected table: the price
#      of enter alone (verify or remember, audit row)
#   C  boundary.enter and boundary.protect's policies, no WHERE: the default configuration
#   Q  C with agent_boundary.audit_enter = off
#   F  C with a fresh token every transaction (each with its own trace id, so its own audit row)
# Queries: point lookup, latest 20, INSERT, ten point lookups after one enter; -M simple and
# -M prepared, 4 clients; the point lookup also with 1 client and on new connections (-C).
# Connections are pooled (one pgbench run holds them) and warm, as a pool's long-lived server
# connections are: each run's first seconds are a warm-up left out of the figures, in which every
# client first meets the 1,024 most popular tenants once each (a pooled backend that has served
# traffic for a while has met them), then draws Zipf tenants. New connections (-C) start cold.
# Reports the median and spread of TPS over rounds, p50/p99 latency, ratios to A; writes the
# "RLS overhead" section of bench/RESULTS.md.
#   bash bench/rls_overhead.sh            full run (5 rounds of 3 s warm-up + 2 s per cell)
#   bash bench/rls_overhead.sh --quick    100k rows, 1 round of 1 + 1 s, debug build; checks that
#                                         the arms agree, inserts land in the entered tenant and no
#                                         transaction fails; writes no RESULTS
#   bash bench/rls_overhead.sh --cell "point prepared 4 pooled"
#                                         one cell (query mode clients connections), 3 rounds,
#                                         release build; prints the table, writes no RESULTS
#   BENCH_SWEEP=N                         warm-up sweep of the N most popular tenants (1024)
#   BENCH_SETTINGS="name = value"         one more postgresql.conf line for the server
#                                         (e.g. "agent_boundary.remembered_tokens = 16384")
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
quick=0; warmup=5; seconds=2; rounds=5; rows=1000000; tenants=10000; fresh=200000; sweep=${BENCH_SWEEP:-1024}
only_cell=""
if [ "${1:-}" = "--quick" ]; then quick=1; warmup=1; seconds=1; rounds=1; rows=100000; fresh=5000; sweep=100; fi
if [ "${1:-}" = "--cell" ]; then only_cell="$2"; rounds=3; fi
# --quick checks correctness, not speed, so it uses the debug build test.sh has just installed.
[ "$quick" = 1 ] && export BENCH_DEBUG_BUILD=1
bench_server rls-overhead "shared_buffers = '512MB'" "jit = off" "max_connections = 50" "synchronous_commit = on" ${BENCH_SETTINGS:+"$BENCH_SETTINGS"}
dir="$BENCH_DIR"
started=$SECONDS

say "loading $rows rows over $tenants tenants into a plain and a protected table; signing $tenants + $fresh tokens"
psql_q >/dev/null <<SQL
CREATE EXTENSION agent_boundary CASCADE;
SELECT boundary.generate_signing_key('bench');
CREATE ROLE plain_role LOGIN NOBYPASSRLS;
CREATE ROLE rls_role LOGIN NOBYPASSRLS;
CREATE ROLE quiet_role LOGIN NOBYPASSRLS IN ROLE rls_role;
ALTER ROLE quiet_role SET agent_boundary.audit_enter = off;
CREATE TABLE tenant_sizes AS
  SELECT t, greatest(1, round($rows * (1.0 / t) / (SELECT sum(1.0 / g) FROM generate_series(1, $tenants) g)))::int AS n
    FROM generate_series(1, $tenants) t;
CREATE TABLE items_plain (tenant_id bigint NOT NULL, id bigint NOT NULL, created_at timestamptz NOT NULL,
                          body text NOT NULL, PRIMARY KEY (tenant_id, id));
INSERT INTO items_plain SELECT s.t, g, now() - g * interval '1 second', md5(g::text)
  FROM tenant_sizes s, generate_series(1, s.n) g;
CREATE INDEX ON items_plain (tenant_id, created_at);
CREATE TABLE items_protected (LIKE items_plain INCLUDING ALL);
INSERT INTO items_protected SELECT * FROM items_plain;
SELECT count(*) FROM boundary.protect('items_protected');
CREATE SEQUENCE insert_ids START 100000000;
GRANT SELECT, INSERT ON items_plain TO plain_role;
GRANT SELECT, INSERT ON items_protected TO rls_role;
GRANT USAGE ON SEQUENCE insert_ids TO plain_role, rls_role;
SELECT count(boundary.register_principal(t::text, 'ws', 'agent', 'member')) FROM generate_series(1, $tenants) t;
CREATE TABLE bench_tokens (t int PRIMARY KEY, token text NOT NULL);
INSERT INTO bench_tokens SELECT t, boundary.sign(jsonb_build_object('tenant_id', t::text, 'workspace_id', 'ws',
       'user_id', 'agent', 'role', 'member', 'trace_id', 'run-' || t), '1 hour') FROM generate_series(1, $tenants) t;
-- Fresh tokens: tenants drawn Zipf-like (the inverse of the size CDF), one trace id each; a
-- transaction picks one uniformly, so a backend almost never meets the same token twice.
CREATE TABLE fresh_tokens (n int PRIMARY KEY, t int NOT NULL, token text NOT NULL);
CREATE TABLE tenant_cdf AS SELECT t, sum(n) OVER (ORDER BY t) AS upto FROM tenant_sizes;
CREATE INDEX ON tenant_cdf (upto);
ANALYZE tenant_cdf;
INSERT INTO fresh_tokens
  SELECT d.n, c.t, boundary.sign(jsonb_build_object('tenant_id', c.t::text, 'workspace_id', 'ws',
         'user_id', 'agent', 'role', 'member', 'trace_id', 'request-' || d.n), '1 hour')
    FROM (SELECT n, random() * (SELECT max(upto) FROM tenant_cdf) AS u FROM generate_series(1, $fresh) n) d
    CROSS JOIN LATERAL (SELECT t FROM tenant_cdf WHERE upto >= d.u ORDER BY upto LIMIT 1) c;
GRANT SELECT ON bench_tokens, fresh_tokens TO plain_role, rls_role;
VACUUM ANALYZE;
SQL
say "loaded in $((SECONDS - started)) s"

arms=(A E C Q F)
queries=(point latest20 insert ten)
declare -A table=([A]=items_plain [E]=items_plain [C]=items_protected [Q]=items_protected [F]=items_protected)
declare -A role=([A]=plain_role [E]=plain_role [C]=rls_role [Q]=quiet_role [F]=rls_role)
# Each arm reads one token row in the statement that sets the tenant (A reads it and ignores the
# token), so the arms differ only in how the tenant is set. F reads its tenant back into :t so its
# INSERT can say which tenant it meant.
declare -A prefix=(
  [A]="SELECT set_config('app.tenant_id', t::text, true) IS NOT NULL FROM bench_tokens WHERE t = :t;"
  [E]="SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = :t;"
  [C]="SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = :t;"
  [Q]="SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = :t;"
  [F]="SELECT boundary.enter(token) IS NOT NULL AS entered, t FROM fresh_tokens WHERE n = :n \\gset")
script() {  # script ARM QUERY
  local arm="$1" query="$2" t="${table[$1]}" where="" and=""
  case "$arm" in A|E) where="WHERE tenant_id = :t"; and="tenant_id = :t AND" ;; esac
  # :warmed counts this client's sweep (pgbench keeps a client's variables between transactions).
  printf '\\if :warmed < :sweep\n\\set warmed :warmed + 1\n\\set t :warmed\n\\else\n\\set t random_zipfian(1, %d, 1.01)\n\\endif\n' "$tenants"
  printf '\\set n random(1, %d)\n\\set id random(1, 10)\nBEGIN;\n%s\n' "$fresh" "${prefix[$arm]}"
  case "$query" in
    point)    echo "SELECT body FROM $t WHERE $and id = :id;" ;;
    latest20) echo "SELECT id, created_at FROM $t $where ORDER BY created_at DESC LIMIT 20;" ;;
    ten)      for i in 1 2 3 4 5 6 7 8 9 10; do echo "SELECT body FROM $t WHERE $and id = $i;"; done ;;
    # The body records the tenant the transaction meant to write for; the protected arms leave
    # tenant_id to the boundary's column default. Checked after the runs.
    insert)   case "$arm" in
                A|E) echo "INSERT INTO $t (tenant_id, id, created_at, body) VALUES (:t, nextval('insert_ids'), now(), :t::text);" ;;
                *)   echo "INSERT INTO $t (id, created_at, body) VALUES (nextval('insert_ids'), now(), :t::text);" ;;
              esac ;;
  esac
  echo "COMMIT;"
}

# The cells: "query mode clients connections" (connections: pooled, or new for each transaction).
cells=()
for mode in simple prepared; do for query in "${queries[@]}"; do cells+=("$query $mode 4 pooled"); done; done
cells+=("point prepared 1 pooled" "point prepared 4 new")
# The quick run checks correctness (every arm, every kind of statement, both protocols and
# connection kinds), not speed.
[ "$quick" = 1 ] && cells=("point simple 4 pooled" "insert prepared 4 pooled" "ten prepared 4 pooled" "point prepared 4 new")
[ "$only_cell" != "" ] && cells=("$only_cell")

# run ARM CELL ROUND: one pgbench run of warm-up + measured seconds, keeping its per-transaction log.
run() {
  local arm="$1" query mode clients conn; read -r query mode clients conn <<<"$2"
  local log="$dir/log-$arm-${2// /-}-r$3" out new=() swept="$sweep"
  [ "$conn" = new ] && new=(-C) && swept=0
  script "$arm" "$query" > "$dir/$arm-$query.sql"
  rm -f "$log".*
  # The same seed for every arm of a round: they draw the same tenants in the same order.
  out="$("$PGBIN/pgbench" -n -M "$mode" -c "$clients" -j "$clients" "${new[@]}" -T "$((warmup + seconds))" \
         --random-seed="$3" -D warmed=0 -D sweep="$swept" -U "${role[$arm]}" -l --log-prefix="$log" -f "$dir/$arm-$query.sql" 2>&1)" \
    || { echo "$out" >&2; exit 1; }
  grep -q "number of failed transactions: 0 " <<<"$out" || { echo "$out" >&2; echo "pgbench reported failed transactions" >&2; exit 1; }
}

# after_warmup ARM CELL ROUND: "seconds latency_us" of each transaction that completed in the
# measured window (pgbench log columns: client, transaction, latency us, script, epoch s, us),
# after a first line "window SECONDS". The window starts when the warm-up is over and every
# client has finished its sweep, whichever is later (a slow arm's sweep can outlast the warm-up:
# its figures must not mix in first meetings), and ends with the run; it must last 1 s at least.
after_warmup() {
  local swept="$sweep"; [[ "$2" == *" new" ]] && swept=0
  cat "$dir/log-$1-${2// /-}-r$3".* | awk -v warmup="$warmup" -v seconds="$seconds" -v sweep="$swept" -v what="$1, $2, round $3" '
    { t[NR] = $5 + $6 / 1e6; lat[NR] = $3
      if (NR == 1 || t[NR] < first) first = t[NR]
      if ($2 < sweep && t[NR] > swept_at) swept_at = t[NR] }
    END { start = first + warmup; if (swept_at > start) start = swept_at
          window = first + warmup + seconds - start
          if (window < 1) { printf "%s: the sweep of %d tenants left %.2f s to measure\n", what, sweep, window > "/dev/stderr"; exit 1 }
          printf "window %.6f\n", window
          for (i = 1; i <= NR; i++) if (t[i] > start) printf "%.6f %d\n", t[i] - start, lat[i] }'
}

# summarize ARM CELL: "tps min max p50_ms p99_ms": the median, lowest and highest TPS of the
# rounds, and latency percentiles over every measured transaction of every round.
summarize() {
  local all="$dir/after-warmup" round rates=()
  : > "$all"
  for round in $(seq 1 "$rounds"); do
    after_warmup "$1" "$2" "$round" > "$dir/round.tmp" || exit 1
    rates+=("$(awk 'NR == 1 { window = $2; next } END { printf "%.1f", (NR - 1) / window }' "$dir/round.tmp")")
    sed 1d "$dir/round.tmp" >> "$all"
  done
  local tps; tps="$(printf '%s\n' "${rates[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f %.0f %.0f", v[int((NR + 1) / 2)], v[1], v[NR] }')"
  awk '{ print $2 }' "$all" | sort -n | awk -v tps="$tps" '{ v[NR] = $1 } END {
      p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1];
      printf "%s %.3f %.3f\n", tps, p50 / 1000, p99 / 1000 }'
}

# check_inserts_then_remove: every row the insert runs wrote belongs to the tenant its
# transaction meant (for the protected arms, the one it entered); then the rows go, so every
# arm reads the same rows, and VACUUM keeps index-only scans index-only.
check_inserts_then_remove() {
  local t written wrong
  for t in items_plain items_protected; do
    read -r written wrong <<<"$(psql_q -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE body <> tenant_id::text)
                                                    FROM $t WHERE id >= 100000000")"
    if [ "$written" -eq 0 ] || [ "$wrong" != 0 ]; then
      echo "$t: $wrong of $written inserted rows carry another tenant" >&2; exit 1
    fi
    psql_q -c "DELETE FROM $t WHERE id >= 100000000" -c "VACUUM ANALYZE $t"
  done
  say "inserts attributed correctly, then removed"
}

# Arms take turns within each round, so drift in a shared machine's speed hits them alike, and
# each round starts one arm later, so no arm always follows the same one (the writes of the arm
# before, and their background work, land on the next).
declare -A result
total=$(( ${#arms[@]} * ${#cells[@]} * rounds )); n=0
for cell in "${cells[@]}"; do
  for round in $(seq 1 "$rounds"); do
    for turn in "${!arms[@]}"; do
      arm="${arms[$(( (turn + round) % ${#arms[@]} ))]}"
      n=$((n + 1)); say "[$n/$total] round $round: arm $arm, $cell (${warmup}s warm-up + ${seconds}s)"
      run "$arm" "$cell" "$round"
    done
  done
  for arm in "${arms[@]}"; do result[$arm-$cell]="$(summarize "$arm" "$cell")"; done
  case "$cell" in insert*) check_inserts_then_remove ;; esac
done

# The arms must answer alike, or the comparison means nothing: every tenant's count(*) through
# A's WHERE equals the count through C's policies (run as the agent role inside each boundary).
say "checking that arms A and C see the same rows for 20 tenants"
for t in 1 2 3 5 8 13 21 34 55 89 144 377 987 1597 2584 4181 6765 8000 9999 10000; do
  a="$(psql_q -U plain_role -c "SELECT count(*) FROM items_plain WHERE tenant_id = $t AND id < 100000000")"
  c="$(psql_q -U rls_role -c "BEGIN; SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = $t;
        SELECT count(*) FROM items_protected WHERE id < 100000000; COMMIT;" | sed -n 2p)"
  [ "$a" = "$c" ] || { echo "tenant $t: A sees $a rows, C sees $c" >&2; exit 1; }
done
say "arms agree"
# How many enter rows the audited arms' transactions (warm-ups included) wrote.
audit_rows="$(psql_q -c "SELECT count(*) FROM boundary.audit_log WHERE event = 'enter'")"
entered="$(cat "$dir"/log-[ECF]-* | wc -l)"

report() {
  echo "## RLS overhead"
  echo
  echo "Command: \`bash bench/rls_overhead.sh\` — $(machine). $rows rows over $tenants Zipf-sized tenants (primary key (tenant_id, id), index (tenant_id, created_at)), tenants drawn with \`random_zipfian(1, $tenants, 1.01)\`, one token per tenant (its own trace id), \`synchronous_commit = on\`. Each cell is $rounds rounds of ${warmup} s warm-up + ${seconds} s measured on one pgbench run's connections (pooled: held for the run, warm: in the warm-up each client first meets the $sweep most popular tenants once, then draws Zipf tenants, as a pool's long-lived connection has, and the measured window starts only once every client has finished that sweep; new: \`-C\`, a connection per transaction, cold), the arms taking turns within a round with the same random seed, each round starting one arm later. TPS: median of the rounds, with the lowest and highest; p50/p99: over all measured transactions. Ratios are to arm A: time per transaction (A's TPS / the arm's) and latency (the arm's / A's); above 1 = slower. Total run $((SECONDS - started)) s."
  echo
  echo "| query | mode | clients | connections | arm | TPS | TPS range | p50 ms | p99 ms | time per transaction vs A | p50 vs A | p99 vs A |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for cell in "${cells[@]}"; do
    read -r query mode clients conn <<<"$cell"
    read -r atps _ _ a50 a99 <<<"${result[A-$cell]}"
    for arm in "${arms[@]}"; do
      read -r tps low high p50 p99 <<<"${result[$arm-$cell]}"
      echo "| $query | $mode | $clients | $conn | $arm | $tps | $low–$high | $p50 | $p99 | $(ratio "$atps" "$tps") | $(ratio "$p50" "$a50") | $(ratio "$p99" "$a99") |"
    done
  done
  echo
  echo "A: no row level security, \`set_config\` and \`WHERE tenant_id = :t\` by hand. E: \`boundary.enter\`, then A's query on A's table (the price of entering alone). C: \`boundary.enter\` and \`boundary.protect\`'s policies, the default configuration (audit trail on). Q: C with \`agent_boundary.audit_enter = off\`. F: C with a fresh token every transaction, each with its own trace id. ten: one enter (or set_config), then ten point lookups. The $entered transactions of E, C and F (warm-ups included) wrote $audit_rows \`enter\` rows: one per boundary per backend per \`agent_boundary.audit_enter_interval\` (60 s), so one per transaction for F, whose every token has its own trace id. The TPS range is how far one arm moves between rounds on this shared machine; a ratio inside it is noise."
}
if [ "$only_cell" != "" ]; then
  report
elif [ "$quick" = 1 ]; then
  report
  say "quick run: arms agree, inserts attributed correctly, no transaction failed; not written to bench/RESULTS.md"
else
  report | write_section rls-overhead
fi
