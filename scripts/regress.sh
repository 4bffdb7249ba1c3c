#!/usr/bin/env bash
# SQL regression tests: tests/pg_regress/sql/*.sql in, tests/pg_regress/expected/*.out out.
#
# The layout is `cargo pgrx regress`'s, but that command cannot run as root, and the pg_regress
# binary shipped in the embedded PostgreSQL wheel crashes in the dynamic loader. So this runs
# each file the way pg_regress does (psql -X -a -q, fixed locale/timezone, setup.sql first,
# then the numbered files in order, one database) and diffs the output.
#   scripts/regress.sh            run and compare (exit 1 on any difference)
#   scripts/regress.sh --accept   run, then copy actual output over expected/ (review the diff!)
set -euo pipefail
# Changes nothing on the machine: run scripts/setup.sh (or scripts/test.sh) once first.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/cluster.sh"

src="$ROOT/tests/pg_regress"
work="$ROOT/target/pg_regress"
cluster_stop "$work/cluster"
rm -rf "$work" && mkdir -p "$work/results"
port="$(free_port)"
cluster_start "$work/cluster" "$port"
trap 'cluster_stop "$work/cluster"' EXIT

export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGAPPNAME=pg_regress
export PGTZ=UTC PGDATESTYLE="ISO, MDY" LC_MESSAGES=C LANG=C.UTF-8
"$PGBIN/psql" -X -q -d postgres -c "CREATE DATABASE agent_boundary_regress TEMPLATE template0" >/dev/null

tests=(setup)
for file in "$src"/sql/[0-9]*.sql; do tests+=("$(basename "$file" .sql)"); done
failed=()
for t in "${tests[@]}"; do
  # From sql/, so that \i of the shared fixture (../../fixtures/) resolves.
  (cd "$src/sql" && "$PGBIN/psql" -X -a -q -d agent_boundary_regress < "$t.sql") > "$work/results/$t.out" 2>&1 || true
  if diff -u "$src/expected/$t.out" "$work/results/$t.out" > "$work/results/$t.diff" 2>&1; then
    printf 'ok     %s\n' "$t"
    rm -f "$work/results/$t.diff"
  else
    printf 'FAILED %s\n' "$t"
    failed+=("$t")
  fi
done

if [ "${1:-}" = "--accept" ]; then
  cp "$work"/results/*.out "$src/expected/"
  say "copied results over tests/pg_regress/expected/; review them with git diff"
  exit 0
elif [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do cat "$work/results/$t.diff"; done
  echo "regress: ${#failed[@]} of ${#tests[@]} files differ" >&2
  exit 1
fi
echo "regress: ${#tests[@]} files, all match"
