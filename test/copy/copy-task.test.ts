import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { copyBackupTask } from '../../src/backups/tasks/copy.ts';
import type { Db } from '../../src/db/connect.ts';
import { softDeleteBackup } from '../../src/db/repos/backups.ts';
import { finishedParts } from '../../src/db/repos/transfer-parts.ts';
import { BadRequest, IntegrityError, isTransient, ObjectNotFound, StorageUnavailable } from '../../src/errors.ts';
import type { StorageDriver } from '../../src/storage/driver.ts';
import { segmentKey } from '../../src/storage/keys.ts';
import { TEST_DBS } from '../helpers/db.ts';
import {
  CONTAINER,
  filesUnder,
  insertCopyRow,
  jobContext,
  listKeys,
  MARIADB,
  makeRegions,
  md5,
  type Regions,
  readAll,
  row,
  seedPlain,
  seedSegmented,
  spyTarget,
} from './helpers.ts';

// The backup.copy handler on real folders (two fs regions) and a real metadata DB (SQLite and PostgreSQL).

const KiB = 1024;

function chunks(sizes: number[]): Buffer[] {
  return sizes.map((n) => randomBytes(n));
}

for (const testDb of TEST_DBS) {
  describe(`backup.copy on ${testDb.name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    let r: Regions;

    before(async () => {
      ({ db, drop } = await testDb.open());
    });
    after(async () => {
      await drop();
    });
    beforeEach(async () => {
      await r?.close();
      r = makeRegions();
    });
    after(async () => {
      await r?.close();
    });

    function task(target: StorageDriver = r.target, parallelism = 3) {
      return copyBackupTask({ db, catalog: r.catalog, target, parallelism });
    }

    /** Runs the handler; on failure calls onGiveUp as the runner would, and returns the error. */
    async function runToEnd(id: string, target: StorageDriver = r.target): Promise<Error | undefined> {
      const handler = task(target);
      try {
        await handler.run({ backupId: id }, jobContext());
        return undefined;
      } catch (err) {
        await handler.onGiveUp!({ backupId: id }, err as Error);
        return err as Error;
      }
    }

    it('copies a plain object: COMPLETED, same bytes, size, checksum and metadata', async () => {
      const bytes = randomBytes(3 * 1024 * KiB + 17);
      const location = await seedPlain(r.source, bytes);
      const id = await insertCopyRow(db, location, { source_region: 'region1' });
      await task().run({ backupId: id }, jobContext());

      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      const key = `${id}.xbstream.gz.enc`;
      assert.equal(done.location, r.target.locationOf(key));
      assert.equal(done.size_bytes, bytes.length);
      assert.equal(done.checksum, md5(bytes));
      assert.equal(done.source_checksum, md5(bytes));
      assert.equal(done.progress_done, bytes.length);
      assert.equal(done.progress_total, bytes.length);
      assert.deepEqual(JSON.parse(done.metadata!), { ...MARIADB, 'project-id': 'p1' });
      assert.equal(md5(await readAll(r.target, key)), md5(bytes));
      const head = await r.target.head(key);
      assert.deepEqual(head!.metadata, { ...MARIADB, 'project-id': 'p1' });
      assert.equal(head!.segmented, false);
      assert.deepEqual(await listKeys(r.target), [key]);
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('copies a segmented object segment by segment and publishes the same manifest checksum', async () => {
      const parts = chunks([256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB, 100 * KiB + 3]);
      const seeded = await seedSegmented(r.source, parts);
      const sourceHead = await r.source.head(seeded.key);
      const id = await insertCopyRow(db, seeded.location);
      const spy = spyTarget(r.target);
      await task(spy.driver, 2).run({ backupId: id }, jobContext());

      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      const key = `${id}.tar.gz`;
      const expectedEtag = md5(parts.map((p) => md5(p)).join(''));
      assert.equal(sourceHead!.etag, expectedEtag);
      assert.equal(done.checksum, expectedEtag);
      assert.equal(done.source_checksum, expectedEtag);
      assert.equal(done.size_bytes, sourceHead!.size);
      assert.equal(done.location, r.target.locationOf(key));
      assert.equal(JSON.parse(done.metadata!).datastore, 'postgresql');

      const segKeys = parts.map((_, i) => segmentKey(id, i + 1));
      assert.deepEqual([...spy.puts].sort(), segKeys, 'each segment sent once, nothing else PUT');
      assert.deepEqual(
        await r.target.segments(key),
        parts.map((p, i) => ({ key: segKeys[i], size: p.length, etag: md5(p) })),
      );
      const head = await r.target.head(key);
      assert.equal(head!.segmented, true);
      assert.equal(head!.metadata['datastore-version'], '15');
      assert.ok((await readAll(r.target, key)).equals(Buffer.concat(parts)));
      assert.deepEqual(await listKeys(r.target), [key, ...segKeys].sort());
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('leaves no temp files behind in the target folder', async () => {
      const seeded = await seedSegmented(r.source, chunks([64 * KiB, 64 * KiB]));
      const id = await insertCopyRow(db, seeded.location);
      await task().run({ backupId: id }, jobContext());
      const files = filesUnder(r.root2);
      assert.ok(files.length > 0);
      for (const f of files) assert.ok(f.includes(id), `unexpected file ${f} in the target`);
      assert.ok(!files.some((f) => /tmp|partial|upload/i.test(f)), `temp files left: ${files.join(', ')}`);
    });

    it('a re-run of a COMPLETED copy does nothing', async () => {
      const location = await seedPlain(r.source, randomBytes(10 * KiB));
      const id = await insertCopyRow(db, location);
      await task().run({ backupId: id }, jobContext());
      const first = await row(db, id);
      const spy = spyTarget(r.target);
      await task(spy.driver).run({ backupId: id }, jobContext());
      assert.deepEqual(spy.puts, []);
      assert.deepEqual(await row(db, id), first);
    });

    it('a deleted backup is not copied', async () => {
      const location = await seedPlain(r.source, randomBytes(10 * KiB));
      const id = await insertCopyRow(db, location);
      await softDeleteBackup(db.kysely, id);
      const spy = spyTarget(r.target);
      await task(spy.driver).run({ backupId: id }, jobContext());
      assert.deepEqual(spy.puts, []);
      assert.deepEqual(await listKeys(r.target), []);
    });

    it('a corrupted source segment fails with IntegrityError and leaves nothing in the target', async () => {
      const parts = chunks([128 * KiB, 128 * KiB, 128 * KiB, 128 * KiB, 128 * KiB, 128 * KiB, 128 * KiB, 5 * KiB]);
      const seeded = await seedSegmented(r.source, parts);
      // Flip a byte of segment 3 on disk after its etag went into the manifest.
      const path = join(r.root1, CONTAINER, seeded.segments[2].key);
      const bytes = readFileSync(path);
      bytes[100] ^= 0xff;
      writeFileSync(path, bytes);
      const id = await insertCopyRow(db, seeded.location);

      const err = await runToEnd(id);
      assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${err}`);
      assert.equal(isTransient(err), false);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /checksum.*segment 3 of 8 from region1/);
      assert.ok(!failed.fail_reason!.includes('\n'));
      assert.deepEqual(await listKeys(r.target), []);
      assert.deepEqual(filesUnder(r.root2), []);
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('a corrupted plain source fails with IntegrityError and leaves nothing in the target', async () => {
      const data = randomBytes(300 * KiB);
      const location = await seedPlain(r.source, data);
      const path = join(r.root1, CONTAINER, r.source.keyOf(location)!);
      const bytes = readFileSync(path);
      bytes[1000] ^= 0xff;
      writeFileSync(path, bytes);
      const id = await insertCopyRow(db, location);

      const err = await runToEnd(id);
      assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${err}`);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /checksum/);
      assert.deepEqual(filesUnder(r.root2), []);
    });

    it('a missing source fails with ObjectNotFound and a reason', async () => {
      const id = await insertCopyRow(db, r.source.locationOf(`${crypto.randomUUID()}.xbstream.gz`));
      const err = await runToEnd(id);
      assert.ok(err instanceof ObjectNotFound, `expected ObjectNotFound, got ${err}`);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /source backup object .* not found in region1/);
      assert.deepEqual(await listKeys(r.target), []);
    });

    it('a source that changed since the request fails', async () => {
      const location = await seedPlain(r.source, randomBytes(10 * KiB));
      const id = await insertCopyRow(db, location, { source_checksum: md5('something else') });
      const err = await runToEnd(id);
      assert.ok(err instanceof IntegrityError);
      assert.match((await row(db, id)).fail_reason!, /changed since the copy was requested/);
      assert.deepEqual(await listKeys(r.target), []);
    });

    it('a location outside the catalog fails without fetching anything', async () => {
      const id = await insertCopyRow(db, 'http://127.0.0.1:9/v1/AUTH_x/database_backups/x.tar.gz');
      const err = await runToEnd(id);
      assert.ok(err instanceof BadRequest);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /trusts/);
    });

    it('resumes after an abort without re-sending recorded segments', async () => {
      const parts = chunks([64 * KiB, 64 * KiB, 64 * KiB, 64 * KiB, 64 * KiB, 64 * KiB]);
      const seeded = await seedSegmented(r.source, parts);
      const id = await insertCopyRow(db, seeded.location);
      const lease = new AbortController();
      const first = spyTarget(r.target, { after: 3, fault: () => lease.abort(new StorageUnavailable('lease lost')) });
      await assert.rejects(task(first.driver, 1).run({ backupId: id }, jobContext(lease.signal)), /lease lost/);
      // A fresh copy has nothing to look for in the target: it asks about no segment.
      const segmentKeys = [1, 2, 3, 4, 5, 6].map((n) => segmentKey(id, n));
      assert.deepEqual(
        first.heads.filter((k) => segmentKeys.includes(k)),
        [],
      );
      assert.equal((await row(db, id)).status, 'BUILDING');
      const recorded = (await finishedParts(db.kysely, id)).map((p) => p.part_number);
      assert.deepEqual(recorded, [1, 2, 3]);
      assert.equal((await row(db, id)).progress_done, 3 * 64 * KiB);

      const second = spyTarget(r.target);
      await task(second.driver, 2).run({ backupId: id }, jobContext());
      assert.deepEqual(
        [...second.puts].sort(),
        [4, 5, 6].map((n) => segmentKey(id, n)),
      );
      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      assert.ok((await readAll(r.target, `${id}.tar.gz`)).equals(Buffer.concat(parts)));
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('a transient storage failure is retryable and the retry re-sends only what is missing', async () => {
      const parts = chunks([32 * KiB, 32 * KiB, 32 * KiB, 32 * KiB]);
      const seeded = await seedSegmented(r.source, parts);
      const id = await insertCopyRow(db, seeded.location);
      const first = spyTarget(r.target, {
        after: 2,
        fault: () => {
          throw new StorageUnavailable('target answered 503');
        },
      });
      const err = await task(first.driver, 1)
        .run({ backupId: id }, jobContext())
        .then(
          () => undefined,
          (e) => e,
        );
      assert.ok(isTransient(err), `expected a transient error, got ${err}`);
      assert.match(err.message, /segment 2 of 4 from region1.*503/);
      // Segment 1 is recorded; segment 2 reached the target but was never recorded.
      assert.deepEqual(
        (await finishedParts(db.kysely, id)).map((p) => p.part_number),
        [1],
      );
      // A recorded segment that vanished from the target is sent again; the unrecorded segment 2
      // is found in the target with the source's checksum and is not.
      await r.target.delete(segmentKey(id, 1));

      const second = spyTarget(r.target);
      await task(second.driver, 2).run({ backupId: id }, jobContext());
      assert.deepEqual(
        [...second.puts].sort(),
        [1, 3, 4].map((n) => segmentKey(id, n)),
      );
      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      assert.ok((await readAll(r.target, `${id}.tar.gz`)).equals(Buffer.concat(parts)));
    });

    it('giving up after a partial copy removes every written segment', async () => {
      const parts = chunks([32 * KiB, 32 * KiB, 32 * KiB, 32 * KiB]);
      const seeded = await seedSegmented(r.source, parts);
      const id = await insertCopyRow(db, seeded.location);
      const lease = new AbortController();
      const spy = spyTarget(r.target, { after: 2, fault: () => lease.abort(new StorageUnavailable('shutdown')) });
      const err = await task(spy.driver, 1)
        .run({ backupId: id }, jobContext(lease.signal))
        .then(
          () => undefined,
          (e) => e,
        );
      assert.ok(err instanceof StorageUnavailable);
      assert.equal((await listKeys(r.target)).length, 2);
      await task().onGiveUp!({ backupId: id }, new StorageUnavailable('target unreachable after 5 attempts'));
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.equal(failed.fail_reason, 'target unreachable after 5 attempts');
      assert.deepEqual(await listKeys(r.target), []);
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('a cleanup failure is logged and the backup still ends FAILED', async () => {
      const seeded = await seedSegmented(r.source, chunks([16 * KiB, 16 * KiB]));
      const id = await insertCopyRow(db, seeded.location);
      await task().run({ backupId: id }, jobContext());
      // Pretend the copy failed late (e.g. manifest check) and storage refuses deletes.
      const broken: StorageDriver = { ...spyTarget(r.target).driver, delete: async () => Promise.reject(new Error('EACCES')) };
      const warnings: string[] = [];
      const logger = { info() {}, warn: (_obj: object, msg: string) => void warnings.push(msg) } as never;
      await db.kysely.updateTable('backups').set({ status: 'BUILDING' }).where('id', '=', id).execute();
      await copyBackupTask({ db, catalog: r.catalog, target: broken, parallelism: 1, logger }).onGiveUp!(
        { backupId: id },
        new IntegrityError('checksum mismatch on the copied manifest'),
      );
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /checksum mismatch/);
      assert.ok(warnings.some((w) => /could not remove/.test(w)));
    });
  });
}
