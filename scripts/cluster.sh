# shellcheck shell=bash
# Sourced after env.sh: start and stop a PostgreSQL cluster of the embedded server, run as the
# 'postgres' system user when we are root (PostgreSQL refuses to run as root).

as_server_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cluster_start DIR PORT [postgresql.conf lines...]: initdb if needed, then start (idempotent).
cluster_start() {
  local dir="$1" port="$2"; shift 2
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_server_user "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    {
      echo "port = $port"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = '$dir'"
      for line in "$@"; do echo "$line"; done
    } | as_server_user tee -a "$dir/data/postgresql.auto.conf" >/dev/null
  fi
  if ! as_server_user "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_server_user "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; return 1; }
  fi
}

cluster_port() { sed -n "s/^port = //p" "$1/data/postgresql.auto.conf" | tail -1; }

cluster_stop() {
  if [ -f "$1/data/PG_VERSION" ]; then
    as_server_user "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# install_extension [--release]: build and install into the embedded PostgreSQL (debug by default).
# shellcheck disable=SC2120  # callers pass --release or nothing
install_extension() {
  say "building and installing agent_boundary ${1:+($1) }into the embedded PostgreSQL"
  # shellcheck disable=SC2086  # PG_FEATURES is a list of cargo arguments
  cargo pgrx install "$@" $PG_FEATURES --pg-config "$PG_CONFIG" >/dev/null
}

# seed_client_fixture PORT KID [SQL]: what the client adapter tests read: the extension, the
# lookalike tenants, login role app (then SQL, e.g. its schema), a protected table of one note per
# tenant and a signing key KID; exports the DSNs, the secret (base64) and the kid.
seed_client_fixture() {
  local port="$1" kid="$2" extra="${3:-}" secret
  secret="$("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres <<SQL
CREATE EXTENSION agent_boundary CASCADE;
\i $ROOT/tests/fixtures/lookalike_tenants.sql
CREATE ROLE app LOGIN;
$extra
CREATE TABLE public.notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL);
INSERT INTO public.notes (tenant_id, body) VALUES ('northstar-dental', 'dental: crown follow-up'),
                                                  ('northstar-design', 'design: brand refresh');
SELECT count(*) FROM boundary.protect('public.notes') \\g /dev/null
GRANT SELECT, INSERT ON public.notes TO app;
GRANT USAGE ON SEQUENCE public.notes_id_seq TO app;
SELECT boundary.generate_signing_key('$kid');
SQL
)"
  export AGENT_BOUNDARY_APP_DSN="postgresql://app@127.0.0.1:$port/postgres"
  export AGENT_BOUNDARY_ADMIN_DSN="postgresql://postgres@127.0.0.1:$port/postgres"
  export AGENT_BOUNDARY_SECRET="${secret##*$'\n'}" AGENT_BOUNDARY_KID="$kid"
}
