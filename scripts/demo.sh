#!/usr/bin/env bash
# The main job, on one machine: two Swift regions, two Tern regions, a MariaDB instance in region1
# with data, a backup, a copy to region2 by location, a restore in region2 and a data comparison.
# Installs what it needs (npm packages, Swift, MariaDB and its backup tools) and is safe to run again.
source "$(dirname "$0")/lib.sh"
cd "$TERN_ROOT"
npm_ensure
bash scripts/datastores.sh
bash scripts/swift-regions.sh start
unset AWS_CA_BUNDLE
exec "$NODE" scripts/demo.ts "$@"
