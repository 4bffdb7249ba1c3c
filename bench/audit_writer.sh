#!/usr/bin/env bash
# What an audit row costs whoever writes it, side by side in one run on one server: 20,000
# enters of tokens a backend has never met (each its own trace id, so each writes a row), in
# one transaction per arm, 5 interleaved rounds:
#   none     agent_boundary.audit_enter = off: the enters alone
#   inline   agent_boundary.audit_writer = transaction: each enter inserts its row (one INSERT
#            statement per row, in the entering transaction)
#   queued   the default when preloaded: each enter queues its row; then the time
#            boundary.flush_audit_log() waits for the background writer to write them all
# Reports µs per row: inline − none (the entering backend's cost of writing a row itself), the
# queue's cost to the entering backend (queued − none), and the writer's time per row.
# Writes bench/RESULTS.md (section "Audit writer"). Usage: bash bench/audit_writer.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rows=20000
# A queue that holds every row of a round, and a writer that waits to be asked (the queue is
# written early only when half full).
bench_server audit-writer "agent_boundary.audit_queue_size = '64MB'" "agent_boundary.audit_flush_interval = '60s'" \
  "synchronous_commit = on"

say "signing $rows tokens"
psql_q >/dev/null <<SQL
CREATE EXTENSION agent_boundary CASCADE;
SELECT boundary.generate_signing_key('bench');
SELECT boundary.register_principal('northstar-dental', 'support', 'alice', 'admin', 'pro', 'us',
       ARRAY['search', 'crm'], ARRAY['tickets']);
CREATE ROLE agent LOGIN NOBYPASSRLS;
CREATE ROLE agent_none LOGIN NOBYPASSRLS IN ROLE agent;
CREATE ROLE agent_inline LOGIN NOBYPASSRLS IN ROLE agent;
ALTER ROLE agent SET agent_boundary.max_audit_rows_per_transaction = 1000000;
ALTER ROLE agent_none SET agent_boundary.max_audit_rows_per_transaction = 1000000;
ALTER ROLE agent_inline SET agent_boundary.max_audit_rows_per_transaction = 1000000;
ALTER ROLE agent_none SET agent_boundary.audit_enter = off;
ALTER ROLE agent_inline SET agent_boundary.audit_writer = transaction;
CREATE TABLE tokens (n int PRIMARY KEY, token text NOT NULL);
INSERT INTO tokens SELECT n, boundary.sign(jsonb_build_object('tenant_id', 'northstar-dental',
       'workspace_id', 'support', 'user_id', 'alice', 'role', 'admin', 'trace_id', 'request-' || n,
       'run_id', 'run-' || (n % 97)), '1 hour')
  FROM generate_series(1, $rows) n;
GRANT SELECT ON tokens TO agent;
VACUUM ANALYZE tokens;
SQL

# ms of the last "Time:" line psql printed.
elapsed() { sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
enters_ms() {  # enters_ms ROLE: one transaction entering every token, as ROLE (a fresh backend)
  psql_q -U "$1" <<SQL | elapsed
BEGIN;
\\timing on
SELECT count(boundary.enter(token)) FROM tokens;
\\timing off
COMMIT;
SQL
}
flush_ms() {
  psql_q <<'SQL' | elapsed
\timing on
SELECT boundary.flush_audit_log();
SQL
}

arms=(none inline queued writer)
declare -A runs
for round in 1 2 3 4 5; do
  say "round $round of 5"
  # Each round starts one arm later; the writer's drain always follows its queued arm.
  order=(none inline queued)
  for ((i = 0; i < round - 1; i++)); do order=("${order[@]:1}" "${order[0]}"); done
  for arm in "${order[@]}"; do
    case "$arm" in
      none) runs[none]+=" $(enters_ms agent_none)" ;;
      inline) runs[inline]+=" $(enters_ms agent_inline)" ;;
      queued)
        psql_q -c "SELECT boundary.flush_audit_log()" >/dev/null
        runs[queued]+=" $(enters_ms agent)"
        runs[writer]+=" $(flush_ms)"
        ;;
    esac
  done
done
written="$(psql_q -c "SELECT count(*) FROM boundary.audit_log WHERE event = 'enter'")"
[ "$written" -eq $((rows * 10)) ] || { echo "expected $((rows * 10)) enter rows, found $written" >&2; exit 1; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A med
for arm in "${arms[@]}"; do med[$arm]="$(echo "${runs[$arm]}" | median)"; done
per_row() { awk -v ms="$1" -v n="$rows" 'BEGIN { printf "%.1f", ms * 1000 / n }'; }
per_row_above() { awk -v a="$1" -v b="$2" -v n="$rows" 'BEGIN { printf "%.1f", (a - b) * 1000 / n }'; }
{
  echo "## Audit writer"
  echo
  echo "Command: \`bash bench/audit_writer.sh\` — $(machine). $rows enters of tokens the backend has never met (each its own trace id, so each writes a row) in one transaction per arm, as an ordinary role, \`synchronous_commit = on\`; 5 interleaved rounds, medians (every round's figures in brackets). The library is preloaded; the queue holds a whole round and the writer writes when asked (\`boundary.flush_audit_log()\`)."
  echo
  echo "| arm | ms for $rows enters | µs per row |"
  echo "|---|---|---|"
  echo "| enters, no audit row (\`audit_enter = off\`) | ${med[none]} [${runs[none]# }] | — |"
  echo "| enters writing their own rows (\`audit_writer = transaction\`: one INSERT per row) | ${med[inline]} [${runs[inline]# }] | $(per_row_above "${med[inline]}" "${med[none]}") above no row |"
  echo "| enters queueing their rows (the default) | ${med[queued]} [${runs[queued]# }] | $(per_row_above "${med[queued]}" "${med[none]}") above no row |"
  echo "| the background writer writing the queued rows (one INSERT per 1,000 rows, one commit) | ${med[writer]} [${runs[writer]# }] | $(per_row "${med[writer]}") |"
  echo
  echo "The entering backend pays the queue's row (encode and copy under a lock), not the INSERT; the writer pays the INSERT in its own process, which on a busy server shares the same cores."
} | write_section audit-writer
