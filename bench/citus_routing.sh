#!/usr/bin/env bash
# Protected queries on Citus, arms side by side in one run on a coordinator and two workers
# started from the embedded PostgreSQL (skipped, with one line saying so, when Citus is not
# installed there; see docs/operations.md for building it). 100,000 rows over 1,000 tenants in a
# table distributed by tenant (32 shards), one client, prepared; every transaction reads its
# tenant's token row and enters (or sets) its tenant in that statement, then reads one row by id:
#   A  no row level security: set_config + a hand-written WHERE tenant_id = :t (the baseline)
#   H  boundary.enter and the policies, the tenant also written by hand in WHERE
#   R  boundary.enter and the policies, no tenant in WHERE (routed by agent_boundary)
#   Q  R as a role whose enters write no audit row (agent_boundary.audit_enter = off)
#   M  R with agent_boundary.route_to_tenant_shard = off (every shard)
# and two writes of one small jsonb value by key, on the deployment boundary.distribute_own_tables()
# makes (keys and registry on every node, the stores distributed by tenant):
#   P  no row level security: set_config + an upsert into a distributed key-value table by hand
#   S  boundary.enter + boundary.memory_set (the policies, the write guard's mark carried to the
#      tenant's worker: two more SET LOCAL round trips)
# Reports TPS (median of rounds, range), the tasks (shard queries) each arm's plan has, and ratios
# to A (S to P); writes the "Citus routing" section of bench/RESULTS.md.
#   bash bench/citus_routing.sh [seconds per arm and round, default 5]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seconds="${1:-5}"; rounds=3; tenants=1000; rows=100000

if [ ! -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
  say "citus_routing: skipped, Citus is not installed in the PostgreSQL at $PGBIN"
  exit 0
fi
install_extension --release
started=$SECONDS
dir="$ROOT/target/bench-citus-routing"
key="$dir/cluster.key"
nodes=(coordinator worker1 worker2)
for node in "${nodes[@]}"; do cluster_stop "$dir/$node"; done
rm -rf "$dir"; mkdir -p "$dir"
head -c 48 /dev/urandom | base64 > "$key"
[ "$(id -u)" != 0 ] || chown -R postgres "$dir"
chmod 600 "$key"
ports=()
for node in "${nodes[@]}"; do
  port="$(free_port)"; ports+=("$port")
  cluster_start "$dir/$node" "$port" "shared_preload_libraries = 'citus,agent_boundary'" \
    "max_prepared_transactions = 20" "agent_boundary.cluster_seal_key_file = '$key'" "jit = off"
done
trap 'for node in "${nodes[@]}"; do cluster_stop "$dir/$node"; done' EXIT
export PGHOST=127.0.0.1 PGUSER=postgres PGDATABASE=postgres PGPORT="${ports[0]}"
for port in "${ports[@]}"; do psql_q -p "$port" -c "CREATE EXTENSION citus" >/dev/null; done

say "loading $rows rows over $tenants tenants, distributed by tenant"
psql_q >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]});
SELECT citus_add_node('127.0.0.1', ${ports[1]});
SELECT citus_add_node('127.0.0.1', ${ports[2]});
CREATE EXTENSION agent_boundary CASCADE;
SELECT boundary.distribute_own_tables();
SELECT boundary.generate_signing_key('bench');
CREATE ROLE plain_role LOGIN NOBYPASSRLS;
CREATE ROLE rls_role LOGIN NOBYPASSRLS;
CREATE ROLE spread_role LOGIN NOBYPASSRLS IN ROLE rls_role;
CREATE ROLE quiet_role LOGIN NOBYPASSRLS IN ROLE rls_role;
ALTER ROLE quiet_role SET agent_boundary.audit_enter = off;
ALTER ROLE spread_role SET agent_boundary.route_to_tenant_shard = off;
SET citus.enable_unsafe_triggers = on;
CREATE TABLE items_plain (tenant_id text NOT NULL, id bigint NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, id));
SELECT create_distributed_table('items_plain', 'tenant_id');
INSERT INTO items_plain SELECT (g % $tenants)::text, g, md5(g::text) FROM generate_series(1, $rows) g;
CREATE TABLE items (LIKE items_plain INCLUDING ALL);
SELECT count(*) FROM boundary.protect('items');
SELECT create_distributed_table('items', 'tenant_id');
INSERT INTO items SELECT * FROM items_plain;
CREATE TABLE kv_plain (tenant_id text NOT NULL, key text NOT NULL, value jsonb NOT NULL, PRIMARY KEY (tenant_id, key));
SELECT create_distributed_table('kv_plain', 'tenant_id');
GRANT SELECT, INSERT, UPDATE ON kv_plain TO plain_role;
GRANT SELECT ON items_plain TO plain_role;
GRANT SELECT ON items TO rls_role;
SELECT boundary.register_principal(t::text, 'w', 'u', 'member', 'pro', 'us', ARRAY[]::text[], ARRAY[]::text[])
  FROM generate_series(0, $tenants - 1) t;
CREATE TABLE bench_tokens (t int PRIMARY KEY, token text NOT NULL);
INSERT INTO bench_tokens SELECT t, boundary.sign(jsonb_build_object('tenant_id', t::text, 'workspace_id', 'w',
       'user_id', 'u', 'role', 'member'), '1 hour') FROM generate_series(0, $tenants - 1) t;
GRANT SELECT ON bench_tokens TO plain_role, rls_role;
ANALYZE;
SQL
for port in "${ports[@]}"; do
  psql_q -p "$port" -c "REVOKE EXECUTE ON FUNCTION pg_catalog.master_run_on_worker(text[], integer[], text[], boolean) FROM PUBLIC" >/dev/null
done

# Each transaction draws a row id, whose tenant is id % tenants (A and H name it, R and M do not;
# pgbench passes :t as a text parameter, which Citus prunes on as it does on a constant).
pick='\set id random(1, '"$rows"')
\set t :id % '"$tenants"
printf '%s\nBEGIN;\nSELECT set_config('"'"'app.tenant_id'"'"', t::text, true) FROM bench_tokens WHERE t = :t;\nSELECT body FROM items_plain WHERE tenant_id = :t AND id = :id;\nCOMMIT;\n' "$pick" > "$dir/A.sql"
enter='SELECT boundary.enter(token) IS NOT NULL FROM bench_tokens WHERE t = :t;'
printf '%s\nBEGIN;\n%s\nSELECT body FROM items WHERE tenant_id = :t AND id = :id;\nCOMMIT;\n' "$pick" "$enter" > "$dir/H.sql"
printf '%s\nBEGIN;\n%s\nSELECT body FROM items WHERE id = :id;\nCOMMIT;\n' "$pick" "$enter" > "$dir/R.sql"
cp "$dir/R.sql" "$dir/M.sql"
cp "$dir/R.sql" "$dir/Q.sql"
upsert='INSERT INTO kv_plain VALUES (:t, '"'"'k'"'"' || :id % 100, '"'"'{"n": 1}'"'"') ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value;'
printf '%s\nBEGIN;\nSELECT set_config('"'"'app.tenant_id'"'"', t::text, true) FROM bench_tokens WHERE t = :t;\n%s\nCOMMIT;\n' "$pick" "$upsert" > "$dir/P.sql"
memory_set='SELECT boundary.memory_set('"'"'k'"'"' || :id % 100, '"'"'{"n": 1}'"'"');'
printf '%s\nBEGIN;\n%s\n%s\nCOMMIT;\n' "$pick" "$enter" "$memory_set" > "$dir/S.sql"
declare -A role=([A]=plain_role [H]=rls_role [R]=rls_role [Q]=quiet_role [M]=spread_role [P]=plain_role [S]=rls_role)
arms=(A H R Q M P S)

# The tasks each arm's query has inside tenant 7's boundary (or with its tenant set).
tasks() {
  local sql
  case "$1" in
    A) sql="BEGIN; SELECT set_config('app.tenant_id', '7', true); EXPLAIN SELECT body FROM items_plain WHERE tenant_id = '7' AND id = 7; COMMIT;" ;;
    H) sql="BEGIN; ${enter//:t/7}; EXPLAIN SELECT body FROM items WHERE tenant_id = '7' AND id = 7; COMMIT;" ;;
    P) sql="${upsert//:t/\'7\'}"; sql="BEGIN; EXPLAIN ${sql//:id/7} COMMIT;" ;;
    S) echo "—"; return ;;
    *) sql="BEGIN; ${enter//:t/7}; EXPLAIN SELECT body FROM items WHERE id = 7; COMMIT;" ;;
  esac
  psql_q -U "${role[$1]}" -c "$sql" | sed -n 's/^ *Task Count: //p'
}
declare -A task_count
for arm in "${arms[@]}"; do task_count[$arm]="$(tasks "$arm")"; done
for arm in R H P; do
  [ "${task_count[$arm]}" = 1 ] || { echo "arm $arm runs on ${task_count[$arm]} shards, not 1" >&2; exit 1; }
done

declare -A tps
for round in $(seq 1 "$rounds"); do
  for turn in "${!arms[@]}"; do
    arm="${arms[$(( (turn + round) % ${#arms[@]} ))]}"
    say "round $round: arm $arm (${seconds}s)"
    out="$("$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$seconds" --random-seed="$round" -U "${role[$arm]}" -f "$dir/$arm.sql" 2>&1)" \
      || { echo "$out" >&2; exit 1; }
    grep -q "number of failed transactions: 0 " <<<"$out" || { echo "$out" >&2; exit 1; }
    tps[$arm]+="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out") "
  done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
range() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f–%.0f", lo, hi }'; }
a_tps="$(median <<<"${tps[A]}")"
{
  echo "## Citus routing"
  echo
  echo "Command: \`bash bench/citus_routing.sh $seconds\` — $(machine); Citus $(psql_q -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), a coordinator and two workers on this machine. $rows rows over $tenants tenants in a table distributed by tenant (32 shards), one pgbench client, prepared; each transaction reads its tenant's token row (a table on the coordinator) and enters its boundary with it (A: sets the tenant with \`set_config\`), then reads one row by id. $rounds rounds of ${seconds} s, the arms taking turns, each round starting one arm later. TPS: median of the rounds, with the lowest and highest. Total run $((SECONDS - started)) s."
  echo
  echo "| arm | query | shard queries | TPS | TPS range | time per transaction vs A |"
  echo "|---|---|---|---|---|---|"
  declare -A what=(
    [A]="no row level security: \`WHERE tenant_id = :t AND id = :id\` by hand"
    [H]="enter + policies, \`WHERE tenant_id = :t AND id = :id\` by hand"
    [R]="enter + policies, \`WHERE id = :id\` (routed to the tenant's shard)"
    [Q]="R without audit rows (\`agent_boundary.audit_enter = off\`)"
    [M]="R with \`agent_boundary.route_to_tenant_shard = off\`"
    [P]="no row level security: an upsert of one jsonb value by key into a distributed table, by hand"
    [S]="enter + \`boundary.memory_set(key, value)\` (memories distributed by tenant)"
  )
  for arm in "${arms[@]}"; do
    m="$(median <<<"${tps[$arm]}")"
    echo "| $arm | ${what[$arm]} | ${task_count[$arm]} | $(printf '%.0f' "$m") | $(range <<<"${tps[$arm]}") | $(ratio "$a_tps" "$m") |"
  done
  echo
  echo "R and H reach one shard, the tenant's; M, the same query without routing, reaches every shard. The policies apply on the shard in every arm (H and R differ only in who wrote the tenant into the query). The boundary reaches the workers as \`agent_boundary.cluster_boundary\` (docs/operations.md). R and Q differ only in the audit trail: each pgbench run is a new backend meeting up to $tenants tenants, so nearly every transaction of R writes an \`enter\` row (one per boundary per backend per minute), which the node's audit writer inserts into the audit log, distributed by tenant, in one distributed transaction every 200 ms. Writes: S takes $(ratio "$(median <<<"${tps[P]}")" "$(median <<<"${tps[S]}")") the time of P per transaction; besides the policies and the write guard, memory_set marks the boundary carried to the workers before its write and unmarks it after (two \`SET LOCAL\` round trips to the tenant's worker). The TPS range is how far one arm moves between rounds on this shared machine; a ratio inside it is noise."
} | write_section citus-routing
