import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { copyBackupTask } from '../../src/backups/tasks/copy.ts';
import { planParts } from '../../src/backups/tasks/copy-parts.ts';
import type { Db } from '../../src/db/connect.ts';
import { finishedParts } from '../../src/db/repos/transfer-parts.ts';
import { OverLimit } from '../../src/errors.ts';
import { Catalog } from '../../src/regions/catalog.ts';
import type { ByteRange, StorageDriver } from '../../src/storage/driver.ts';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { segmentKey } from '../../src/storage/keys.ts';
import { manifestEtag } from '../../src/streams/swift-etag.ts';
import { swiftObjectFile } from '../faults/helpers.ts';
import { TEST_DBS } from '../helpers/db.ts';
import { dropContainer, ensureSwiftRegions, swiftConfig } from '../helpers/swift.ts';
import { insertCopyRow, jobContext, listKeys, MARIADB, md5, readAll, row, spyTarget } from './helpers.ts';

// Ranged-part copies of a single (non-segmented) source object larger than the part size, on the
// two real Swift regions: region1 holds the plain object, region2 gets parts as segments plus a
// manifest. Each test uses its own containers, removed at the end.

const KiB = 1024;
const PART = 256 * KiB;

describe('planParts', () => {
  const roomy = { maxSegmentSize: 10 * PART, maxManifestSegments: 1000 };
  it('cuts the object into part-size ranges, the last one shorter', () => {
    assert.deepEqual(planParts(2 * PART + 5, PART, roomy), [
      { n: 1, start: 0, end: PART - 1 },
      { n: 2, start: PART, end: 2 * PART - 1 },
      { n: 3, start: 2 * PART, end: 2 * PART + 4 },
    ]);
    assert.deepEqual(planParts(PART, PART, roomy), [{ n: 1, start: 0, end: PART - 1 }]);
  });
  it('makes parts bigger rather than more than the target joins, and refuses parts it cannot hold', () => {
    const parts = planParts(10 * PART, PART, { maxSegmentSize: 10 * PART, maxManifestSegments: 4 });
    assert.equal(parts.length, 4);
    assert.equal(parts[0].end - parts[0].start + 1, Math.ceil((10 * PART) / 4));
    assert.equal(parts[3].end, 10 * PART - 1);
    assert.throws(() => planParts(10 * PART, PART, { maxSegmentSize: PART, maxManifestSegments: 4 }), OverLimit);
  });
});

for (const testDb of TEST_DBS) {
  describe(`ranged-part copy of a plain object on real Swift (${testDb.name} metadata)`, { timeout: 120_000 }, () => {
    const run = randomBytes(4).toString('hex');
    const c1 = `tern_parts_${run}_r1`;
    const c2 = `tern_parts_${run}_r2`;
    let db: Db;
    let drop: () => Promise<void>;
    let source: SwiftDriver;
    let target: SwiftDriver;
    let catalog: Catalog;
    /** Ranges of the GETs the copy made on the source (the real driver, watched). */
    let ranges: Array<ByteRange | undefined>;

    before(async () => {
      await ensureSwiftRegions();
      ({ db, drop } = await testDb.open());
      source = new SwiftDriver(swiftConfig(1, c1));
      target = new SwiftDriver(swiftConfig(2, c2));
      const watched: StorageDriver = Object.create(source);
      watched.get = (key, opts) => {
        ranges.push(opts?.range);
        return source.get(key, opts);
      };
      catalog = new Catalog([
        { region: 'region2', driver: target },
        { region: 'region1', driver: watched },
      ]);
    });
    after(async () => {
      await Promise.all([source.close(), target.close(), dropContainer(1, c1), dropContainer(2, c2)]);
      await drop();
    });

    async function seed(bytes: Buffer): Promise<{ id: string; key: string }> {
      const key = `${randomBytes(8).toString('hex')}.xbstream.gz.enc`;
      await source.put(key, Readable.from([bytes]), { metadata: { ...MARIADB, 'project-id': 'p1' } });
      const id = await insertCopyRow(db, source.locationOf(key), { source_region: 'region1', source_checksum: md5(bytes) });
      return { id, key };
    }

    function task(driver: StorageDriver, parallelism = 3) {
      return copyBackupTask({ db, catalog, target: driver, parallelism, partSize: PART, segmentRetries: 1 });
    }

    it('copies in ranged parts, N at a time: segments + manifest, checked against the source MD5', async () => {
      const bytes = randomBytes(4 * PART + 1234);
      const { id } = await seed(bytes);
      ranges = [];
      const spy = spyTarget(target);
      await task(spy.driver).run({ backupId: id }, jobContext());

      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      const partMd5s = [0, 1, 2, 3, 4].map((i) => md5(bytes.subarray(i * PART, (i + 1) * PART)));
      assert.equal(done.source_checksum, md5(bytes), 'the source is checked by its whole-object MD5');
      assert.equal(done.checksum, manifestEtag(partMd5s), "the copy's checksum is its manifest's");
      assert.equal(done.size_bytes, bytes.length);
      assert.equal(done.progress_done, bytes.length);
      const key = `${id}.xbstream.gz.enc`;
      assert.equal(done.location, target.locationOf(key));
      assert.deepEqual(
        ranges.map((r) => (r ? [r.start, r.end] : null)).sort((a, b) => (a?.[0] ?? -1) - (b?.[0] ?? -1)),
        [0, 1, 2, 3, 4].map((i) => [i * PART, Math.min(bytes.length, (i + 1) * PART) - 1]),
        'one ranged GET per part, never a whole-object GET',
      );
      const segKeys = [1, 2, 3, 4, 5].map((n) => segmentKey(id, n));
      assert.deepEqual([...spy.puts].sort(), segKeys);
      assert.deepEqual(
        (await target.segments(key))!.map((s) => [s.key, s.size, s.etag]),
        segKeys.map((k, i) => [k, i < 4 ? PART : 1234, partMd5s[i]]),
      );
      const head = await target.head(key);
      assert.equal(head!.metadata['datastore-version'], '10.11');
      assert.equal(head!.metadata['project-id'], 'p1');
      assert.ok((await readAll(target, key)).equals(bytes));
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('a copy interrupted after some parts resumes without sending the finished parts again', async () => {
      const bytes = randomBytes(6 * PART - 7);
      const { id } = await seed(bytes);
      // Stands for a worker stopping (lost lease, shutdown): its signal aborts after two parts landed.
      const stop = new AbortController();
      const first = spyTarget(target, { after: 2, fault: () => stop.abort(new Error('worker stopped')) });
      ranges = [];
      await assert.rejects(task(first.driver, 2).run({ backupId: id }, jobContext(stop.signal)), /worker stopped/);
      const recorded = (await finishedParts(db.kysely, id)).map((p) => p.key);
      assert.ok(recorded.length >= 2 && recorded.length < 6, `recorded ${recorded.join(', ')}`);
      assert.equal((await row(db, id)).status, 'BUILDING');

      const second = spyTarget(target);
      ranges = [];
      await task(second.driver, 2).run({ backupId: id }, jobContext());
      const done = await row(db, id);
      assert.equal(done.status, 'COMPLETED', done.fail_reason ?? '');
      for (const key of recorded) assert.ok(!second.puts.includes(key), `${key} was sent again`);
      assert.deepEqual(
        [...recorded, ...second.puts].sort(),
        [1, 2, 3, 4, 5, 6].map((n) => segmentKey(id, n)),
      );
      assert.equal(ranges.length, 6 - recorded.length, 'only the missing parts are fetched from the source');
      assert.ok((await readAll(target, `${id}.xbstream.gz.enc`)).equals(bytes));
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });

    it('a source replaced mid-copy fails at its next part (If-Match): FAILED, nothing left in region2', async () => {
      const bytes = randomBytes(4 * PART);
      const { id, key } = await seed(bytes);
      // Same size, other bytes, so another ETag: the next ranged GET must not mix the two versions.
      const spy = spyTarget(target, {
        after: 1,
        fault: () => source.put(key, Readable.from([randomBytes(bytes.length)]), { metadata: MARIADB }),
      });
      ranges = [];
      const handler = task(spy.driver, 1);
      const err = await handler.run({ backupId: id }, jobContext()).then(
        () => assert.fail('the copy must fail'),
        (e: Error) => e,
      );
      assert.match(err.message, /copying part 2 of 4 .*the object changed, its ETag is no longer/);
      assert.deepEqual(spy.puts, [segmentKey(id, 1)], 'no part after the replacement is sent');
      assert.equal(ranges.length, 2);
      await handler.onGiveUp!({ backupId: id }, err);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /the object changed/);
      assert.deepEqual(
        (await listKeys(target)).filter((k) => k.startsWith(id)),
        [],
      );
    });

    it('a source whose bytes no longer have its MD5 fails the whole check: FAILED, nothing left in region2', async () => {
      // Bit rot on the source's disk: Swift keeps the ETag and checks its MD5 only on a read from
      // the first byte to the last, so every part copies cleanly and only the whole-object MD5 can
      // tell. (The object is bigger than the servers' 1 MiB disk reads: a ranged read of a smaller
      // one reads it all, and Swift quarantines it.)
      const bytes = randomBytes(12 * PART);
      const { id, key } = await seed(bytes);
      const file = swiftObjectFile(1, c1, key);
      const onDisk = readFileSync(file);
      onDisk[onDisk.length / 2] ^= 0xff;
      writeFileSync(file, onDisk);
      const spy = spyTarget(target);
      ranges = [];
      const handler = task(spy.driver, 2);
      const err = await handler.run({ backupId: id }, jobContext()).then(
        () => assert.fail('the copy must fail'),
        (e: Error) => e,
      );
      assert.match(err.message, /checksum mismatch on the copied parts/);
      assert.equal(spy.puts.length, 12, 'every part landed; the mismatch is only visible as a whole');
      await handler.onGiveUp!({ backupId: id }, err);
      const failed = await row(db, id);
      assert.equal(failed.status, 'FAILED');
      assert.match(failed.fail_reason!, /checksum mismatch/);
      assert.deepEqual(
        (await listKeys(target)).filter((k) => k.startsWith(id)),
        [],
      );
      assert.deepEqual(await finishedParts(db.kysely, id), []);
    });
  });
}
