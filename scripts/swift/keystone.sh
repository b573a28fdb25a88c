#!/usr/bin/env bash
# A real Keystone (v3, fernet tokens, SQLite) on http://127.0.0.1:35357 and a Keystone-authenticated
# Swift proxy on http://127.0.0.1:8083 in front of region1's storage servers, for testing Swift
# auth v3. Usage: scripts/swift/keystone.sh start|stop|status. Idempotent; fast when running.
#
#   user tern / password ternpass, project tern (domain Default), role member (a Swift operator)
#   catalog: object-store RegionOne public+internal -> http://127.0.0.1:8083/v1/AUTH_<project id>
#            object-store RegionTwo public          -> http://127.0.0.1:8084/v1/AUTH_<project id>
#   (nothing listens on 8084: it is there to check that the region picks the endpoint)
source "$(dirname "$0")/../lib.sh"

DIR="${TERN_KEYSTONE_DIR:-/var/tmp/tern-keystone}"
SWIFT_BASE="${TERN_SWIFT_DIR:-/var/tmp/tern-swift}"
KS_PORT=35357
PROXY_PORT=8083
KS_URL="http://127.0.0.1:$KS_PORT"
export EVENTLET_NO_GREENDNS=yes
export OS_KEYSTONE_CONFIG_FILES="$DIR/keystone.conf"

install_packages() {
  local missing=() pkg
  for pkg in python3-keystone python3-keystonemiddleware; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

manage() { keystone-manage --config-file "$DIR/keystone.conf" "$@" >>"$DIR/log/manage.log" 2>&1; }

# Database, keys and the admin account, once.
setup_keystone() {
  [ -f "$DIR/.keystone-ready" ] && return 0
  rm -rf "$DIR"
  mkdir -p "$DIR/log"
  cat >"$DIR/keystone.conf" <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$DIR/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = $DIR/fernet
[fernet_receipts]
key_repository = $DIR/fernet-receipts
[credential]
key_repository = $DIR/credential
EOF
  local who
  who="$(id -un)"
  manage db_sync
  manage fernet_setup --keystone-user "$who" --keystone-group "$(id -gn)"
  manage credential_setup --keystone-user "$who" --keystone-group "$(id -gn)"
  manage bootstrap --bootstrap-password adminpw --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$KS_URL/v3" --bootstrap-public-url "$KS_URL/v3" --bootstrap-internal-url "$KS_URL/v3"
  touch "$DIR/.keystone-ready"
}

# Projects, users and the object-store endpoints, through the API (needs Keystone running).
setup_accounts() {
  [ -f "$DIR/.setup-done" ] && return 0
  /usr/bin/python3 - "$KS_URL" "$PROXY_PORT" <<'EOF'
import json, sys, time, urllib.error, urllib.request
ks, port = sys.argv[1], sys.argv[2]

def call(method, path, body=None, token=None):
    req = urllib.request.Request(ks + path, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("x-auth-token", token)
    for attempt in range(5):
        try:
            with urllib.request.urlopen(req) as res:
                return res.headers.get("x-subject-token"), json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as e:
            # Keystone on SQLite now and then answers 500 "database is locked"; it passes.
            if e.code != 500 or attempt == 4:
                raise
            time.sleep(1)

def password(user, pw, project):
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": pw}}},
                     "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}

admin, _ = call("POST", "/v3/auth/tokens", password("admin", "adminpw", "admin"))
roles = {r["name"]: r["id"] for r in call("GET", "/v3/roles", token=admin)[1]["roles"]}
for name in ("member", "admin"):
    if name not in roles:
        roles[name] = call("POST", "/v3/roles", {"role": {"name": name}}, admin)[1]["role"]["id"]
call("POST", "/v3/regions", {"region": {"id": "RegionTwo"}}, admin)
for project, user, pw, role in (("service", "swift", "swiftpass", "admin"), ("tern", "tern", "ternpass", "member")):
    pid = call("POST", "/v3/projects", {"project": {"name": project, "domain_id": "default"}}, admin)[1]["project"]["id"]
    uid = call("POST", "/v3/users", {"user": {"name": user, "domain_id": "default", "password": pw, "default_project_id": pid}}, admin)[1]["user"]["id"]
    call("PUT", f"/v3/projects/{pid}/users/{uid}/roles/{roles[role]}", token=admin)
sid = call("POST", "/v3/services", {"service": {"type": "object-store", "name": "swift"}}, admin)[1]["service"]["id"]
for region, iface, p in (("RegionOne", "public", port), ("RegionOne", "internal", port), ("RegionTwo", "public", str(int(port) + 1))):
    url = f"http://127.0.0.1:{p}/v1/AUTH_$(project_id)s"
    call("POST", "/v3/endpoints", {"endpoint": {"service_id": sid, "interface": iface, "region_id": region, "url": url}}, admin)
EOF
  touch "$DIR/.setup-done"
}

# Writes the Keystone Swift proxy's config to $1.
write_proxy_conf() {
  local etc="$SWIFT_BASE/region1/etc"
  cat >"$1" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
swift_dir = $etc
user = $(id -un)
workers = 1
log_name = keystone-proxy

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl authtoken keystoneauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = $KS_URL
auth_url = $KS_URL
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = service
username = swift
password = swiftpass
delay_auth_decision = True
service_token_roles_required = True
memcached_servers = 127.0.0.1:11281

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11281

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
EOF
}

# Alive and still running our command line (a recycled PID is never signalled).
alive_pid() {
  local file=$1 match=$2 pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$match" || return 1
  echo "$pid"
}

keystone_up() { curl -sf -o /dev/null -m 5 "$KS_URL/v3"; }

healthy() {
  alive_pid "$DIR/keystone.pid" "keystone-wsgi-public --port $KS_PORT" >/dev/null &&
    alive_pid "$DIR/proxy.pid" "$DIR/proxy-server.conf" >/dev/null &&
    keystone_up && curl -sf -o /dev/null -m 5 "http://127.0.0.1:$PROXY_PORT/healthcheck"
}

wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < 300; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  log "$what did not come up; logs in $DIR/log"
  return 1
}

stop_all() {
  local name pid
  for name in proxy keystone; do
    if pid="$(alive_pid "$DIR/$name.pid" "$([ $name = proxy ] && echo "$DIR/proxy-server.conf" || echo "keystone-wsgi-public --port $KS_PORT")")"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
      [ -e "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/$name.pid"
  done
}

start() {
  install_packages
  bash "$TERN_ROOT/scripts/swift-regions.sh" start >/dev/null
  mkdir -p "$DIR"
  exec 9>"$DIR/../.tern-keystone.lock"
  flock 9
  write_proxy_conf "$DIR/proxy-server.conf.new"
  if healthy && cmp -s "$DIR/proxy-server.conf.new" "$DIR/proxy-server.conf"; then
    echo "keystone ready: $KS_URL/v3 (tern/ternpass, project tern); swift proxy http://127.0.0.1:$PROXY_PORT"
    return 0
  fi
  stop_all
  # A setup that stopped half way starts again from scratch.
  [ -f "$DIR/.setup-done" ] || rm -f "$DIR/.keystone-ready"
  setup_keystone
  mkdir -p "$DIR/log"
  # With SQLite's default journal a reader Keystone leaves open blocks every later commit
  # ("database is locked"); in WAL mode readers never block the writer.
  /usr/bin/python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$DIR/keystone.db"
  # fd 9 is the start lock: a server holding it would block every later start.
  keystone-wsgi-public --port "$KS_PORT" --host 127.0.0.1 </dev/null >"$DIR/log/keystone.log" 2>&1 9>&- &
  echo $! >"$DIR/keystone.pid"
  wait_for Keystone keystone_up
  setup_accounts
  write_proxy_conf "$DIR/proxy-server.conf"
  swift-proxy-server "$DIR/proxy-server.conf" -v </dev/null >"$DIR/log/proxy.log" 2>&1 9>&- &
  echo $! >"$DIR/proxy.pid"
  wait_for "the Keystone Swift proxy" healthy
  echo "keystone ready: $KS_URL/v3 (tern/ternpass, project tern); swift proxy http://127.0.0.1:$PROXY_PORT"
}

case "${1:-start}" in
  start) start ;;
  stop) [ -d "$DIR" ] && stop_all ;;
  status) if healthy; then echo "keystone up"; else
    echo "keystone down"
    exit 1
  fi ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
