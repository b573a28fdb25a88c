#!/usr/bin/env bash
# Sets up everything the tests need and runs them all: npm packages (with Node 24), Debian
# packages, a PostgreSQL server and two Swift regions on loopback. Safe to run again and again.
source "$(dirname "$0")/lib.sh"
cd "$TERN_ROOT"

npm_ensure
bash scripts/pg-test.sh start
export TERN_TEST_PG_URL
TERN_TEST_PG_URL="$(bash scripts/pg-test.sh url)"
# Database servers and backup tools for the datastore tests, installed once before tests run in
# parallel (two apt-get runs at once would fight over dpkg's lock).
bash scripts/datastores.sh
bash scripts/swift-regions.sh start
# Local S3 traffic is plain HTTP on loopback; a CA bundle from the environment only breaks it.
unset AWS_CA_BUNDLE

log "type-checking"
node_modules/.bin/tsc --noEmit -p .
log "linting"
node_modules/.bin/biome check --reporter=summary . >/dev/null || node_modules/.bin/biome check .

log "running tests"
# Test files run in parallel processes; each uses its own temp folders, databases and ports.
# The second reporter prints the fault suite's table (fault, injected, survived, lost, orphans).
exec "$NODE" --test --test-concurrency="${TERN_TEST_CONCURRENCY:-2}" --test-timeout=600000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=./test/faults/table-reporter.ts --test-reporter-destination=stdout \
  'src/**/*.test.ts' 'test/**/*.test.ts' "$@"
