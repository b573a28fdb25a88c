import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SWEEP_JOB } from '../../src/backups/jobs.ts';
import { createBackupTask } from '../../src/backups/tasks/create.ts';
import type { Db } from '../../src/db/connect.ts';
import { findBackup, insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import { Keyring } from '../../src/keys/keyring.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { TEST_DBS } from '../helpers/db.ts';

// A backup of an instance that fails for good: its objects go at once, the row is FAILED with the
// reason, and in the same transaction a sweep is queued a minute out for uploads stored late.

for (const testDb of TEST_DBS) {
  describe(`backup.create giving up on ${testDb.name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    let dir: string;

    before(async () => {
      ({ db, drop } = await testDb.open());
      dir = mkdtempSync(join(tmpdir(), 'tern-create-give-up-'));
    });
    after(async () => {
      await drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('removes what was written, fails the row and queues the sweep a minute out', async () => {
      const storage = new FsDriver({ root: join(dir, testDb.name), container: 'database_backups' });
      const id = randomUUID();
      await insertBackup(db.kysely, newBackupRow({ id, project_id: 'p1', name: 'nightly' }));
      for (const key of [`${id}_00000001`, `${id}_00000002`]) await storage.put(key, Readable.from([Buffer.from(key)]));
      const task = createBackupTask({
        db,
        storage,
        keyring: new Keyring({ active: { id: 'k1', secret: 'not a real secret' } }),
        encrypt: false,
        segmentSize: 1024 * 1024,
      });
      const before = Date.now();
      await task.onGiveUp!({ backupId: id }, new Error('mariabackup exited with 1'));
      const row = await findBackup(db.kysely, id);
      assert.equal(row?.status, 'FAILED');
      assert.match(row?.fail_reason ?? '', /mariabackup exited with 1/);
      const left = [];
      for await (const o of storage.list(id)) left.push(o.key);
      assert.deepEqual(left, []);
      const sweeps = await db.kysely.selectFrom('jobs').selectAll().where('resource_id', '=', id).execute();
      assert.deepEqual(
        sweeps.map((j) => [j.kind, j.status]),
        [[SWEEP_JOB, 'queued']],
      );
      assert.ok(Number(sweeps[0].run_after) >= before + 60_000, 'a minute out');
      await storage.close();
    });
  });
}
