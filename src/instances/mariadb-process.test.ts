import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mariadbInstallDbArgs, mariadbTmpDir } from './mariadb-process.ts';
import { layoutOf } from './server.ts';

// test/datastores/mariadb.test.ts checks a running server's @@tmpdir; mariadb-install-db's own
// server is gone before anything could ask it, so its arguments are checked here. Without its
// own --tmpdir, installs running at once removed each other's temporary tables (1 to 3 of 8 failed).

describe('mariadbInstallDbArgs', () => {
  it("gives mariadb-install-db the instance's own temporary folder, after --no-defaults", () => {
    const layout = layoutOf('/srv/tern/i-1');
    const args = mariadbInstallDbArgs(layout, null);
    assert.equal(args[0], '--no-defaults');
    assert.ok(args.includes(`--tmpdir=${mariadbTmpDir(layout)}`), args.join(' '));
    assert.equal(mariadbTmpDir(layout), '/srv/tern/i-1/run/tmp');
  });
});
