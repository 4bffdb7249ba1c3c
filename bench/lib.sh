# shellcheck shell=bash
# Sourced by the benchmark scripts: a throwaway server with a release build, and a helper that
# replaces one script's section of bench/RESULTS.md (so each script can be re-run on its own).
bash "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
source "$ROOT/scripts/cluster.sh"

# bench_server NAME [postgresql.conf lines...]: start a fresh cluster for benchmark NAME with the
# release build (the debug build with BENCH_DEBUG_BUILD=1), the library preloaded as the README's
# deployment rules ask; exports PG* for psql/pgbench.
bench_server() {
  if [ "${BENCH_DEBUG_BUILD:-0}" = 1 ]; then install_extension; else install_extension --release; fi
  BENCH_DIR="$ROOT/target/bench-$1"; shift
  cluster_stop "$BENCH_DIR"; rm -rf "$BENCH_DIR"
  local port; port="$(free_port)"
  cluster_start "$BENCH_DIR" "$port" "shared_preload_libraries = 'agent_boundary'" "$@"
  trap 'cluster_stop "$BENCH_DIR"' EXIT
  export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
}

psql_q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

machine() { echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m), $("$PG_CONFIG" --version) (embedded), $([ "${BENCH_DEBUG_BUILD:-0}" = 1 ] && echo debug || echo release) build of the extension"; }

# write_section KEY < markdown: replace (or append) the section between markers in RESULTS.md.
write_section() {
  local key="$1" out="$ROOT/bench/RESULTS.md" body
  body="$(cat)"
  [ -f "$out" ] || printf '# Benchmark results\n\nEach section is written by the script named in it; figures are from one run on one machine.\n' > "$out"
  python3 - "$out" "$key" "$body" <<'PY'
import re, sys
path, key, body = sys.argv[1:]
text = open(path).read()
block = f"<!-- {key} -->\n{body}\n<!-- /{key} -->"
pattern = re.compile(rf"<!-- {re.escape(key)} -->.*?<!-- /{re.escape(key)} -->", re.S)
text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
  echo "$body"
}
