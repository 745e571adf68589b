#!/usr/bin/env bash
# The services kart's tests (and, until `kart platform` lands, a newcomer's
# first run) need, on this machine:
#   tansu       a Kafka-compatible broker, built once from crates.io and cached
#   postgres    PostgreSQL from Debian's packages, wal_level=logical, loopback
#
#   scripts/services.sh ensure-tansu        install tansu if it is missing
#   scripts/services.sh test-up             Postgres for the test suite (port 55432)
#   scripts/services.sh test-down
#   scripts/services.sh dev-up              tansu on 19092 + Postgres on 5432 (kart's defaults)
#   scripts/services.sh dev-down
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
STATE="${KART_SERVICES_DIR:-${TMPDIR:-/tmp}/kart-services}"
TEST_PG_PORT="${KART_TEST_PG_PORT:-55432}"
say() { printf '%s\n' "$*" >&2; }

tansu_bin() {
  if [ -n "${KART_TANSU_BIN:-}" ] && [ -x "$KART_TANSU_BIN" ]; then echo "$KART_TANSU_BIN"; return 0; fi
  command -v tansu 2>/dev/null && return 0
  [ -x "$HOME/.cargo/bin/tansu" ] && { echo "$HOME/.cargo/bin/tansu"; return 0; }
  return 1
}

ensure_tansu() {
  if bin=$(tansu_bin); then say "tansu: $bin"; return 0; fi
  say "tansu: not found; building tansu $TANSU_VERSION from crates.io (about 16 minutes on 2 cores, once)"
  # Its default features hold no storage engine: memory:// needs dynostore,
  # sqlite:// needs libsql.
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
  tansu_bin >/dev/null
}

pg_bindir() {
  if [ -n "${KART_PG_BINDIR:-}" ]; then echo "$KART_PG_BINDIR"; return 0; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return 0; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  return 1
}

ensure_postgres_packages() {
  pg_bindir >/dev/null && return 0
  say "postgres: installing Debian's postgresql package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bindir >/dev/null
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() { # dir port superuser-password
  local dir=$1 port=$2 password=$3 bindir
  ensure_postgres_packages
  bindir=$(pg_bindir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    local pwfile="$dir/.pw"
    printf '%s\n' "$password" > "$pwfile"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pwfile"; fi
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$pwfile" -A scram-sha-256 --auth-local=trust >/dev/null
    rm -f "$pwfile"
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 300
password_encryption = 'scram-sha-256'
# Test and workshop data only: durability is not worth the fsyncs here.
fsync = off
full_page_writes = off
# synchronous_commit stays on (cheap without fsync): logical decoding only
# sees flushed WAL, and off would delay every CDC event by up to
# wal_writer_delay (200 ms), which the workshop's Postgres does not do.
CONF
  fi
  if as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    say "postgres: running on 127.0.0.1:$port ($dir)"
  else
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
    say "postgres: started on 127.0.0.1:$port ($dir)"
  fi
  # Servers created by an older version of this script ran with
  # synchronous_commit = off; turn it on where it still is.
  as_pg "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt \
    -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
  # A second role with scram-sha-256 for remote-mode tests (the managed server's stand-in).
  as_pg "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kart_scram') THEN
       CREATE ROLE kart_scram LOGIN CREATEDB REPLICATION PASSWORD 'kart-scram-secret'; END IF; END \$\$;" >/dev/null
}

stop_postgres() { # dir
  local dir=$1 bindir
  bindir=$(pg_bindir) || return 0
  [ -f "$dir/data/PG_VERSION" ] || return 0
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  say "postgres: stopped ($dir)"
}

start_dev_tansu() {
  local bin; bin=$(tansu_bin)
  mkdir -p "$STATE/dev"
  if [ -f "$STATE/dev/tansu.pid" ] && kill -0 "$(cat "$STATE/dev/tansu.pid")" 2>/dev/null; then
    say "tansu: running on localhost:19092"; return 0
  fi
  # tansu resolves sqlite:// paths against its working directory.
  (cd "$STATE/dev" && nohup "$bin" broker \
    --kafka-listener-url tcp://127.0.0.1:19092 \
    --advertised-listener-url tcp://localhost:19092 \
    --storage-engine "sqlite://tansu.db" \
    > "$STATE/dev/tansu.log" 2>&1 & echo $! > "$STATE/dev/tansu.pid")
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/19092) 2>/dev/null && { say "tansu: started on localhost:19092"; return 0; }
    sleep 0.1
  done
  say "tansu: did not open port 19092; see $STATE/dev/tansu.log"; return 1
}

case "${1:-}" in
  ensure-tansu) ensure_tansu ;;
  test-up) start_postgres "$STATE/test-pg" "$TEST_PG_PORT" postgres ;;
  test-down) stop_postgres "$STATE/test-pg" ;;
  dev-up) ensure_tansu; start_dev_tansu; start_postgres "$STATE/dev-pg" 5432 postgres ;;
  dev-down)
    if [ -f "$STATE/dev/tansu.pid" ]; then
      pid=$(cat "$STATE/dev/tansu.pid")
      kill "$pid" 2>/dev/null || true
      # tansu may not act on SIGTERM promptly: give it 5 s, then insist.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$STATE/dev/tansu.pid"; say "tansu: stopped"
    fi
    stop_postgres "$STATE/dev-pg" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
