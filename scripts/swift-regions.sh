#!/usr/bin/env bash
# Two independent single-node OpenStack Swift clusters on loopback, one per region, for tests and
# the demo. Usage: swift-regions.sh start|stop|status. `start` is idempotent and fast when running.
#
#   region1: proxy http://127.0.0.1:8081  (TempAuth /auth/v1.0, S3 via s3api on the same port)
#   region2: proxy http://127.0.0.1:8082
#   account test, user tester, key testing (admin); S3 access key test:tester, secret testing
#   middlewares: tempauth, slo, tempurl, s3api, container_quotas (and Swift's usual ones)
#
# Each region has its own data folder under ${TERN_SWIFT_DIR:-/var/tmp/tern-swift}/regionN (configs,
# rings, device, logs, pid files) and its own memcached: a shared one would make region1's tokens
# valid in region2. Only /etc/swift/swift.conf is shared (Swift always reads it).
#
# The servers move bytes in 1 MiB chunks instead of Swift's 64 KiB default. Their Python costs
# CPU per chunk, and on a small machine the servers' CPU bounds every transfer: a 1 GiB curl GET
# cost the proxy 1.2-1.3 CPU s with 64 KiB chunks and 0.6-0.7 s with 1 MiB, a PUT 0.85-0.93 s and
# 0.73 s (4 MiB gained nothing more).
source "$(dirname "$0")/lib.sh"

BASE="${TERN_SWIFT_DIR:-/var/tmp/tern-swift}"
REGIONS=(1 2)
SERVERS=(account container object proxy)
PACKAGES=(swift swift-proxy swift-account swift-container swift-object memcached python3-swiftclient)
# Eventlet's green DNS costs ~0.6 s per process start and we only resolve 127.0.0.1.
export EVENTLET_NO_GREENDNS=yes

proxy_port() { echo $((8080 + $1)); }
memcached_port() { echo $((11280 + $1)); }
# object 6N10, container 6N11, account 6N12 (region1: 6110..6112, region2: 6210..6212)
server_port() {
  case "$2" in
    object) echo $((6010 + 100 * $1)) ;;
    container) echo $((6011 + 100 * $1)) ;;
    account) echo $((6012 + 100 * $1)) ;;
    proxy) proxy_port "$1" ;;
  esac
}

# Installs the Debian packages when missing (apt-get update once per call); fast when present.
install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Servers read /etc/swift/swift.conf whatever swift_dir says; both regions share it.
ensure_swift_conf() {
  [ -f /etc/swift/swift.conf ] && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  log "writing /etc/swift/swift.conf"
  "${sudo[@]}" mkdir -p /etc/swift
  printf '[swift-hash]\nswift_hash_path_prefix = tern-local\nswift_hash_path_suffix = tern-local\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n' |
    "${sudo[@]}" tee /etc/swift/swift.conf >/dev/null
}

# Writes the four server configs of region $1 into folder $2.
write_configs() {
  local r=$1 dir="$BASE/region$1" etc=$2 user
  user="$(id -un)"
  mkdir -p "$etc"
  local common="bind_ip = 127.0.0.1
devices = $dir/srv
mount_check = false
swift_dir = $dir/etc
user = $user
log_name = region$r"
  local s
  for s in account container object; do
    cat >"$etc/$s-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $(server_port "$r" "$s")
workers = 1
disable_fallocate = true

[pipeline:main]
pipeline = healthcheck $s-server

[app:$s-server]
use = egg:swift#$s
# 1 MiB chunks: see the header.
network_chunk_size = 1048576
disk_chunk_size = 1048576

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
  done
  cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $(proxy_port "$r")
workers = ${TERN_SWIFT_PROXY_WORKERS:-1}

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy container-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
# 1 MiB chunks: see the header.
object_chunk_size = 1048576
client_chunk_size = 1048576

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
user_test2_tester2 = testing2 .admin
user_test_tester3 = testing3

[filter:s3api]
use = egg:swift#s3api

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$(memcached_port "$r")

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
# X-Container-Meta-Quota-Bytes/-Count on a container (test/faults/swift-quota.test.ts). Where Swift's
# sample puts it: after auth and copy, before slo, so each segment PUT is checked.
[filter:container-quotas]
use = egg:swift#container_quotas
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

# One Python process builds all missing rings of a region: swift-ring-builder costs ~2 s a call.
build_rings() {
  local r=$1 dir="$BASE/region$1/etc"
  [ -f "$dir/account.ring.gz" ] && [ -f "$dir/container.ring.gz" ] && [ -f "$dir/object.ring.gz" ] && return 0
  /usr/bin/python3 - "$dir" "$(server_port "$r" account)" "$(server_port "$r" container)" "$(server_port "$r" object)" <<'EOF'
import os, sys
from swift.common.ring import RingBuilder
d = sys.argv[1]
for name, port in zip(("account", "container", "object"), map(int, sys.argv[2:5])):
    if os.path.exists(os.path.join(d, name + ".ring.gz")):
        continue
    b = RingBuilder(6, 1, 1)  # part power 6, one replica: a single device
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
               "replication_ip": "127.0.0.1", "replication_port": port,
               "device": "d1", "weight": 1.0, "meta": ""})
    b.rebalance(seed=1)
    b.save(os.path.join(d, name + ".builder"))
    b.get_ring().save(os.path.join(d, name + ".ring.gz"))
EOF
}

# A pid file counts only while its process is alive and still runs the expected command, so a
# recycled PID is never signalled.
alive_pid() {
  local file=$1 match=$2 pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$match" || return 1
  echo "$pid"
}

pid_match() {
  local r=$1 s=$2
  if [ "$s" = memcached ]; then echo "memcached -l 127.0.0.1 -p $(memcached_port "$r") "; else echo "$BASE/region$r/etc/$s-server.conf"; fi
}

auth_ok() {
  curl -sf -o /dev/null -m 5 -H 'X-Storage-User: test:tester' -H 'X-Storage-Pass: testing' \
    "http://127.0.0.1:$(proxy_port "$1")/auth/v1.0"
}

# True when the running configs are the ones this script writes now (a changed script restarts).
configs_current() {
  local r=$1 s tmp rc=0
  [ -d "$BASE/region$r/etc" ] || return 1
  tmp="$(mktemp -d "$BASE/.check.XXXXXX")"
  write_configs "$r" "$tmp"
  for s in "${SERVERS[@]}"; do
    cmp -s "$tmp/$s-server.conf" "$BASE/region$r/etc/$s-server.conf" || rc=1
  done
  rm -rf "$tmp"
  return $rc
}

region_healthy() {
  local r=$1 s
  configs_current "$r" || return 1
  for s in memcached "${SERVERS[@]}"; do
    alive_pid "$BASE/region$r/run/$s.pid" "$(pid_match "$r" "$s")" >/dev/null || return 1
  done
  curl -sf -o /dev/null -m 5 "http://127.0.0.1:$(proxy_port "$r")/healthcheck" && auth_ok "$r"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_region() {
  local r=$1 s pid pids=()
  for s in proxy object container account memcached; do
    if pid="$(alive_pid "$BASE/region$r/run/$s.pid" "$(pid_match "$r" "$s")")"; then
      # Swift servers pass SIGTERM on to their own process group (their workers).
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$BASE/region$r/run/$s.pid"
  done
  local i
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 100; i++)); do
      [ -e "/proc/$pid" ] || break
      sleep 0.1
    done
    [ -e "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
}

start_region() {
  local r=$1 dir="$BASE/region$1" s port
  stop_region "$r"
  for port in "$(memcached_port "$r")" $(for s in "${SERVERS[@]}"; do server_port "$r" "$s"; done); do
    if port_busy "$port"; then
      log "region$r: 127.0.0.1:$port is used by a process this script did not start; not touching it"
      return 1
    fi
  done
  mkdir -p "$dir/etc" "$dir/srv/d1" "$dir/run" "$dir/log"
  write_configs "$r" "$dir/etc"
  build_rings "$r"
  local user_args=()
  [ "$(id -u)" = 0 ] && user_args=(-u root)
  memcached -l 127.0.0.1 -p "$(memcached_port "$r")" -U 0 -m 64 "${user_args[@]}" \
    </dev/null >"$dir/log/memcached.log" 2>&1 9>&- &
  echo $! >"$dir/run/memcached.pid"
  for s in "${SERVERS[@]}"; do
    # -v logs to stdout (otherwise syslog); stdio must not hold the caller's pipes open.
    # fd 9 is the start lock: a server holding it would block every later start.
    "swift-$s-server" "$dir/etc/$s-server.conf" -v </dev/null >"$dir/log/$s.log" 2>&1 9>&- &
    echo $! >"$dir/run/$s.pid"
  done
}

wait_region() {
  local r=$1 i s
  for ((i = 0; i < 300; i++)); do
    if region_healthy "$r"; then return 0; fi
    for s in memcached "${SERVERS[@]}"; do
      if ! alive_pid "$BASE/region$r/run/$s.pid" "$(pid_match "$r" "$s")" >/dev/null; then
        log "region$r: $s exited; end of $BASE/region$r/log/$s.log:"
        tail -n 20 "$BASE/region$r/log/$s.log" >&2 || true
        return 1
      fi
    done
    sleep 0.2
  done
  log "region$r did not come up in 60 s; logs in $BASE/region$r/log"
  return 1
}

ready_line() {
  echo "swift region$1 ready: http://127.0.0.1:$(proxy_port "$1")/auth/v1.0 (test:tester/testing), storage http://127.0.0.1:$(proxy_port "$1")/v1/AUTH_test, data $BASE/region$1"
}

start() {
  install_packages
  ensure_swift_conf
  mkdir -p "$BASE"
  # Test files start in parallel processes; only one of them may (re)start the clusters.
  exec 9>"$BASE/.lock"
  flock 9
  local r started=()
  for r in "${REGIONS[@]}"; do
    if region_healthy "$r"; then continue; fi
    start_region "$r"
    started+=("$r")
  done
  for r in "${started[@]}"; do wait_region "$r"; done
  for r in "${REGIONS[@]}"; do ready_line "$r"; done
}

stop() {
  [ -d "$BASE" ] || return 0
  exec 9>"$BASE/.lock"
  flock 9
  local r
  for r in "${REGIONS[@]}"; do stop_region "$r"; done
}

status() {
  local r rc=0
  for r in "${REGIONS[@]}"; do
    if region_healthy "$r"; then ready_line "$r"; else
      echo "swift region$r down"
      rc=1
    fi
  done
  return $rc
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
