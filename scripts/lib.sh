# Shared shell helpers for scripts/*.sh. Source it; do not run it.
set -euo pipefail

TERN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TERN_ROOT
NODE="$TERN_ROOT/node_modules/.bin/node"

log() { printf '[tern] %s\n' "$*" >&2; }

# Installs Debian packages that are not installed yet; quiet and fast when all are present.
apt_ensure() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    "${sudo[@]}" apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# npm dependencies, including the pinned Node 24 in node_modules/.bin; skipped when up to date.
npm_ensure() {
  cd "$TERN_ROOT"
  if [ ! -x "$NODE" ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing npm packages"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
}
