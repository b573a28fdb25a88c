#!/usr/bin/env bash
# A PostgreSQL 15 server for tests and the demo, on 127.0.0.1:${TERN_PG_PORT:-55432}, its own data
# folder, trust auth for loopback. Usage: pg-test.sh start|stop|url. Idempotent.
source "$(dirname "$0")/lib.sh"

PORT="${TERN_PG_PORT:-55432}"
DIR="${TERN_PG_DIR:-/var/tmp/tern-pg}"
URL="postgres://postgres@127.0.0.1:$PORT/postgres"

pg_bin() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  echo "/usr/lib/postgresql/$v/bin"
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  apt_ensure postgresql
  local bin
  bin=$(pg_bin)
  if as_postgres "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    return 0
  fi
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
    as_postgres "$bin/initdb" -D "$DIR/data" -U postgres -A trust --no-sync >/dev/null
  fi
  # fsync off: test data is disposable and this keeps the suite fast.
  as_postgres "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null
  log "PostgreSQL on 127.0.0.1:$PORT"
}

stop() {
  local bin
  bin=$(pg_bin)
  as_postgres "$bin/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
