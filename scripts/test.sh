#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or an existing checkout. Installs what is
# missing (scripts/setup.sh), checks style, then runs every layer against real servers it starts:
#   0. style gates: cargo fmt --check, cargo clippy --all-targets -D warnings, shellcheck
#   1. pure-Rust unit tests and #[pg_test] units inside PostgreSQL (cargo pgrx test)
#   2. the schema check (scripts/schema.sh) and the SQL regression files, the user-visible
#      contract (scripts/regress.sh)
#   3. integration tests from a real client, with pgbouncer (cargo test --test ...; the upgrade
#      test gets the previous release's build from scripts/previous_release.sh), the Python
#      client adapters with the real drivers (scripts/python_clients.sh) and the Node.js helpers
#      with node-postgres and postgres.js (scripts/node_clients.sh)
#   4. the RLS benchmark's quick run (bench/rls_overhead.sh --quick): pgbench arms A, E, C, Q, F,
#      checking that they agree and that inserts land in the entered tenant (correctness, not speed)
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/cluster.sh"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
unset RUST_BACKTRACE   # the test servers inherit it and would print backtraces in error DETAIL
export AGENT_BOUNDARY_PGBIN="$PGBIN"   # the integration tests' servers
logs="$ROOT/target/test-logs"
mkdir -p "$logs"

count() { grep -Eo 'test result: ok\. [0-9]+ passed' "$1" | awk '{s += $4} END {print s + 0}'; }

# step LOG FILTER CMD...: run CMD, appending its output to LOG and showing the lines that match
# FILTER as they come; returns CMD's own exit status (not the filter's).
step() {
  local log="$1" filter="$2"; shift 2
  "$@" 2>&1 | tee -a "$log" | { grep -E "$filter" || true; }
  return "${PIPESTATUS[0]}"
}

say "0/4 style gates: rustfmt, clippy (warnings are errors), shellcheck"
cargo fmt --check || { echo "cargo fmt --check failed: run cargo fmt" >&2; exit 1; }
: > "$logs/clippy.log"
# shellcheck disable=SC2086  # PG_FEATURES is a list of cargo arguments
step "$logs/clippy.log" '^(warning|error)' \
  cargo clippy --all-targets $PG_FEATURES --features "pg_test integration" -- -D warnings \
  || { echo "clippy failed; see $logs/clippy.log" >&2; exit 1; }
shellcheck scripts/*.sh bench/*.sh .ci/run || { echo "shellcheck failed" >&2; exit 1; }

say "1/4 unit tests and #[pg_test] units (cargo pgrx test pg$PG_MAJOR)"
pgdata="$ROOT/target/pgrx-test-data"
mkdir -p "$pgdata" && { [ "$(id -u)" != 0 ] || chown postgres "$pgdata"; }
runas=(); [ "$(id -u)" = 0 ] && runas=(--runas postgres)
: > "$logs/pgrx-test.log"
step "$logs/pgrx-test.log" '^ *(Compiling|Finished|Running)|^test |test result' \
  cargo pgrx test "pg$PG_MAJOR" "${runas[@]}" --pgdata "$pgdata/pg$PG_MAJOR" \
  || { echo "cargo pgrx test failed; see $logs/pgrx-test.log" >&2; exit 1; }
units=$(count "$logs/pgrx-test.log")

install_extension  # debug build
say "2/4 schema check (scripts/schema.sh) and SQL regression files (scripts/regress.sh)"
bash "$ROOT/scripts/schema.sh" || exit 1
: > "$logs/regress.log"
step "$logs/regress.log" '^(ok|FAILED|regress:|[-+@ ])' bash "$ROOT/scripts/regress.sh" \
  || { echo "SQL regression files differ; see $logs/regress.log" >&2; exit 1; }
regress=$(grep -c '^ok ' "$logs/regress.log")

say "3/4 integration tests from a real client (tokio-postgres, pgbouncer)"
# The upgrade test replaces the previous release's own build with this one under a running server.
AGENT_BOUNDARY_PREVIOUS_PGBIN="$(bash "$ROOT/scripts/previous_release.sh")" || exit 1
export AGENT_BOUNDARY_PREVIOUS_PGBIN
integration_log="$logs/integration.log"
: > "$integration_log"
for target in tests/*.rs; do
  name="$(basename "$target" .rs)"
  # shellcheck disable=SC2086  # PG_FEATURES is a list of cargo arguments
  step "$integration_log" '^ *(Compiling|Finished|Running)|^test |test result|panicked|left:|right:|skipped' \
    cargo test $PG_FEATURES --features integration --test "$name" \
    || { echo "integration tests $name failed; see $integration_log" >&2; exit 1; }
done
integration=$(count "$integration_log")
# Tests whose component is missing here (Citus) are reported as ignored, never as passed.
skipped=$(grep -Eo 'test result: ok\. [0-9]+ passed; [0-9]+ failed; [0-9]+ ignored' "$integration_log" \
  | awk '{s += $8} END {print s + 0}')
# The Python client adapters, driven by the real drivers (psycopg, psycopg_pool, SQLAlchemy,
# asyncpg) against a server with the lookalike tenants.
python_log="$logs/python-clients.log"
: > "$python_log"
step "$python_log" '==>|passed|failed|error|Error' bash "$ROOT/scripts/python_clients.sh" \
  || { echo "the Python adapter tests failed; see $python_log" >&2; exit 1; }
python_clients=$(grep -Eo '^[0-9]+ passed' "$python_log" | awk '{s += $1} END {print s + 0}')
# The Node.js helpers, driven by node-postgres and postgres.js.
node_log="$logs/node-clients.log"
: > "$node_log"
step "$node_log" '==>|^not ok|^# (pass|fail)' bash "$ROOT/scripts/node_clients.sh" \
  || { echo "the Node.js helper tests failed; see $node_log" >&2; exit 1; }
node_clients=$(grep -Eo '^# pass [0-9]+' "$node_log" | awk '{s += $3} END {print s + 0}')

say "4/4 RLS benchmark, quick run (bench/rls_overhead.sh --quick)"
: > "$logs/bench-quick.log"
step "$logs/bench-quick.log" '==> (checking|arms agree|inserts|quick run)' bash "$ROOT/bench/rls_overhead.sh" --quick \
  || { echo "the quick benchmark run failed; see $logs/bench-quick.log" >&2; exit 1; }

total=$((units + regress + integration + python_clients + node_clients + 1))
echo
echo "All tests passed on PostgreSQL $PG_MAJOR: $total in total"
echo "  $units unit + #[pg_test] tests, $regress SQL regression files, $integration integration tests,"
echo "  $python_clients Python adapter and framework tests (psycopg, psycopg_pool, SQLAlchemy, asyncpg;"
echo "    LangGraph, langchain-postgres, LlamaIndex, mem0),"
echo "  $node_clients Node.js helper tests (node-postgres, postgres.js),"
echo "  1 quick benchmark run (5 arms x 4 kinds of transaction, checked for agreement and attribution)"
if [ "$skipped" -gt 0 ]; then
  echo "Skipped, not counted: $skipped integration tests whose component is not installed here:"
  grep -E 'skipped, not passed' "$integration_log" | sed 's/^/  /'
fi
