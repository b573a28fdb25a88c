import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { StorageDriver } from '../../src/storage/driver.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { ensureDatastorePackages, makeTestDir, mariadbSql } from '../datastores/helpers.ts';
import { createBackup, createInstance, startInstanceRegion, waitForBackup, waitForInstance } from '../e2e/helpers.ts';
import { ensureSwiftRegions, swiftConfig } from '../helpers/swift.ts';
import type { TestRegion } from '../helpers/tern.ts';
import { dropSwiftContainer, filesUnder, listKeys, pidsMentioning, reportFault, swiftObjectFile } from './helpers.ts';

// One byte of a stored segment is flipped on disk, under the driver: a file of the fs driver, and
// an object's .data file in region1's Swift device folder (Swift keeps the ETag it computed at
// upload, as it keeps it through bit rot). A copy of such a backup must end FAILED with a
// checksum reason and leave nothing in the target; a restore from it must end ERROR with a
// checksum reason. Never COMPLETED or ACTIVE with bad bytes.
//
// Region S stores in Swift (region1, a container of its own), region F on the fs driver; each
// trusts the other's storage. A real MariaDB backup taken in S and copied to F is what the
// restores read; synthetic segmented objects are what the copies read (a Swift object read in
// full with a bad checksum is quarantined by Swift, so each case needs its own object).

const MiB = 1024 * 1024;
const KEY_S = `region-s-key-${'s'.repeat(32)}`;
const tokens = { admin: randomBytes(16).toString('hex'), member: randomBytes(16).toString('hex'), other: 'x'.repeat(32) };

/** Flips one byte in the middle of a file, in place (same inode, size and sidecar). */
function flipByte(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    const at = Math.floor(fstatSync(fd).size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

/** A segmented backup object of 3 random MiB, as a source region would hold it. */
async function seed(driver: StorageDriver): Promise<{ location: string; segments: string[] }> {
  const id = randomUUID();
  const segments = [];
  for (let i = 1; i <= 3; i++) {
    const key = `${id}_${String(i).padStart(8, '0')}`;
    segments.push({ key, size: MiB, etag: (await driver.put(key, Readable.from([randomBytes(MiB)]))).etag });
  }
  const key = `${id}.xbstream.gz`;
  await driver.putManifest(key, segments, {
    metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
  });
  return { location: driver.locationOf(key), segments: segments.map((s) => s.key) };
}

describe('fault: one byte of a stored segment is corrupted', { timeout: 240_000 }, () => {
  const container = `corrupt_${randomUUID().slice(0, 8)}`;
  let dir: string;
  let fRoot: string;
  let s: TestRegion | undefined;
  let f: TestRegion | undefined;
  let swift: SwiftDriver;
  let fs: FsDriver;
  let backup: any;
  let copied: any;
  let password: string;

  before(async () => {
    ensureDatastorePackages();
    await ensureSwiftRegions();
    dir = makeTestDir('fault-corrupt');
    fRoot = join(dir, 'f-objects');
    swift = new SwiftDriver(swiftConfig(1, container));
    fs = new FsDriver({ root: fRoot, container: 'database_backups' });
    s = await startInstanceRegion({
      name: 'regionS',
      tokens,
      keySecret: KEY_S,
      extra: { storage: swiftConfig(1, container) },
      catalog: [{ region: 'regionF', root: fRoot }],
    });
    f = await startInstanceRegion({
      name: 'regionF',
      tokens,
      storage: { driver: 'fs', root: fRoot, container: 'database_backups' },
      extra: { catalog: [{ region: 'regionS', storage: swiftConfig(1, container), keys: [{ secret: KEY_S }] }] },
    });
    // A real backup in S (Swift) and its verified copy in F (fs), before any byte is touched.
    const { instance, created } = await createInstance(s, { name: 'db', datastore: { type: 'mariadb' }, volume: { size: 1 } });
    password = created.credential.password;
    await mariadbSql(
      { host: instance.ip[0], port: instance.port },
      password,
      'CREATE DATABASE shop; USE shop; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;' +
        'INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_20000;',
    );
    backup = await createBackup(s, { name: 'full', instance: instance.id });
    assert.equal(backup.status, 'COMPLETED', backup.fail_reason);
    const res = await f.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'copy', location: backup.locationRef } } });
    assert.equal(res.status, 202, res.text);
    copied = await waitForBackup(f, res.body.backup.id);
    assert.equal(copied.status, 'COMPLETED', copied.fail_reason);
  });

  after(async () => {
    await s?.stop();
    await f?.stop();
    await swift.close();
    await dropSwiftContainer(1, container);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const copyCase = async (t: any, name: string, from: StorageDriver, into: TestRegion, flip: (segment: string) => string) => {
    const seeded = await seed(from);
    flipByte(flip(seeded.segments[1]));
    const res = await into.call('POST', '/v1.0/p1/backups', { body: { backup: { name, location: seeded.location } } });
    assert.equal(res.status, 202, res.text);
    const b = await waitForBackup(into, res.body.backup.id);
    const target = into === f ? fs : swift;
    const left = (await listKeys(target)).filter((k) => k.includes(b.id));
    const temps = into === f ? filesUnder(fRoot).filter((p) => p.includes('.tmp-')) : [];
    const survived = b.status === 'FAILED' && /checksum/i.test(b.fail_reason ?? '');
    reportFault(
      t,
      {
        name,
        injected: 1,
        survived: Number(survived),
        lost: Number(b.status === 'COMPLETED'),
        orphans: left.length + temps.length,
      },
      `${b.status} (${b.fail_reason}); left in the target: ${JSON.stringify([...left, ...temps])}`,
    );
    assert.equal(b.status, 'FAILED');
    assert.match(b.fail_reason, /checksum/i);
    assert.deepEqual([...left, ...temps], [], 'nothing of the copy in the target');
  };

  const restoreCase = async (t: any, name: string, into: TestRegion, backupId: string) => {
    const res = await into.call('POST', '/v1.0/p1/instances', {
      body: { instance: { name, volume: { size: 1 }, restorePoint: { backupRef: backupId } } },
    });
    assert.equal(res.status, 200, res.text);
    const instance = await waitForInstance(into, res.body.instance.id);
    const folder = join(into.dir, 'instances', instance.id);
    const left = [...(existsSync(folder) ? [folder] : []), ...pidsMentioning(folder).map(String)];
    const survived = instance.status === 'ERROR' && /checksum/i.test(instance.fault?.message ?? '');
    reportFault(
      t,
      { name, injected: 1, survived: Number(survived), lost: Number(instance.status === 'ACTIVE'), orphans: left.length },
      `${instance.status} (${instance.fault?.message}); left: ${JSON.stringify(left)}`,
    );
    assert.equal(instance.status, 'ERROR');
    assert.match(instance.fault.message, /checksum/i);
    assert.deepEqual(left, [], 'no folder or process left of the failed restore');
  };

  test('a copy from an fs segment with a flipped byte ends FAILED (checksum), nothing in the target', (t) =>
    copyCase(t, 'corrupt-fs-segment-copy', fs, s!, (segment) => join(fRoot, 'database_backups', segment)));

  test('a copy from a Swift object file with a flipped byte ends FAILED (checksum), nothing in the target', (t) =>
    copyCase(t, 'corrupt-swift-segment-copy', swift, f!, (segment) => swiftObjectFile(1, container, segment)));

  test('a restore from an fs segment with a flipped byte ends ERROR (checksum)', async (t) => {
    const key = fs.keyOf(copied.locationRef)!;
    const [first] = (await fs.segments(key))!;
    flipByte(join(fRoot, 'database_backups', first.key));
    await restoreCase(t, 'corrupt-fs-segment-restore', f!, copied.id);
  });

  test('a restore from a Swift object file with a flipped byte ends ERROR (checksum)', async (t) => {
    const key = swift.keyOf(backup.locationRef)!;
    const [first] = (await swift.segments(key))!;
    flipByte(swiftObjectFile(1, container, first.key));
    await restoreCase(t, 'corrupt-swift-segment-restore', s!, backup.id);
  });
});
