#!/usr/bin/env bash
# The main job, on one machine: two Tern regions, a backup in region1's storage, a cross-region copy
# to region2 through the API, verified byte for byte. Safe to run again.
source "$(dirname "$0")/lib.sh"
cd "$TERN_ROOT"
npm_ensure
exec "$NODE" scripts/demo.ts "$@"
