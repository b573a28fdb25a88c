import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { ensureDatastorePackages, mariadbSql } from '../datastores/helpers.ts';
import { createInstance, startInstanceRegion, waitForBackup } from '../e2e/helpers.ts';
import type { TestRegion } from '../helpers/tern.ts';
import { filesUnder, reportFault, storedBytesMatch } from './helpers.ts';

// The fs storage of a region lives on a real, small file system that fills up: an 8 MiB tmpfs
// mounted for this test (it runs as root; where mount(2) is refused the test is skipped, as a
// loop-mounted image would need the same privilege). A copy and a backup of an instance that do
// not fit must end FAILED with a "storage full" reason, leave no temp or partial file, and give
// the space back (a small copy afterwards completes).

const MiB = 1024 * 1024;
const canMount = process.getuid?.() === 0;

describe('fault: the fs storage is full', { skip: !canMount && 'needs root to mount a tmpfs' }, () => {
  let dir: string;
  let full: string;
  let mounted = false;
  let region: TestRegion | undefined;
  let source: FsDriver;

  before(async () => {
    ensureDatastorePackages();
    dir = mkdtempSync(join(tmpdir(), 'tern-fault-full-'));
    chmodSync(dir, 0o711);
    full = join(dir, 'full');
    mkdirSync(full);
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', full], { encoding: 'utf8' });
    assert.equal(mount.status, 0, `mount -t tmpfs: ${mount.stderr}`);
    mounted = true;
    const root1 = join(dir, 'region1');
    source = new FsDriver({ root: root1, container: 'database_backups' });
    region = await startInstanceRegion({
      name: 'region2',
      storage: { driver: 'fs', root: full, container: 'database_backups' },
      catalog: [{ region: 'region1', root: root1 }],
    });
  });

  after(async () => {
    await region?.stop();
    if (mounted) {
      const umount = spawnSync('umount', [full]);
      // Something may still hold a file open for a moment; detach it rather than leave a mount.
      if (umount.status !== 0) spawnSync('umount', ['-l', full]);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** A segmented backup of `segments` random MiB in region1, as region1's runner would leave it. */
  const seed = async (segments: number) => {
    const id = randomUUID();
    const list = [];
    for (let i = 1; i <= segments; i++) {
      const key = `${id}_${String(i).padStart(8, '0')}`;
      list.push({ key, size: MiB, etag: (await source.put(key, Readable.from([randomBytes(MiB)]))).etag });
    }
    const key = `${id}.xbstream.gz`;
    await source.putManifest(key, list, {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });
    return source.locationOf(key);
  };
  const copy = async (location: string) => {
    const res = await region!.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'copy', location } } });
    assert.equal(res.status, 202, res.text);
    return waitForBackup(region!, res.body.backup.id);
  };
  /** A COMPLETED backup that did fit would not be lost data, as long as its bytes verify. */
  const verifies = async (backup: any) => {
    const driver = new FsDriver({ root: full, container: 'database_backups' });
    return storedBytesMatch(driver, driver.keyOf(backup.locationRef)!, backup.checksum);
  };
  const usedBytes = () => {
    const s = statfsSync(full);
    return (s.blocks - s.bfree) * s.bsize;
  };

  test('a copy that does not fit ends FAILED "storage full" and leaves nothing', { timeout: 90_000 }, async (t) => {
    const backup = await copy(await seed(12));
    const left = filesUnder(full);
    const survived = backup.status === 'FAILED' && /storage full/i.test(backup.fail_reason ?? '');
    reportFault(
      t,
      {
        name: 'fs-full-copy',
        injected: 1,
        survived: Number(survived),
        lost: Number(backup.status === 'COMPLETED' && !(await verifies(backup))),
        orphans: left.length,
      },
      `12 MiB copy into an 8 MiB tmpfs: ${backup.status} (${backup.fail_reason}); files left: ${JSON.stringify(left)}`,
    );
    assert.equal(backup.status, 'FAILED');
    assert.match(backup.fail_reason, /storage full/i);
    assert.deepEqual(left, [], 'no temp, partial or segment file left');
    assert.ok(usedBytes() < 64 * 1024, `the space is given back: ${usedBytes()} bytes used`);
    const small = await copy(await seed(2));
    assert.equal(small.status, 'COMPLETED', small.fail_reason);
    const del = await region!.call('DELETE', `/v1.0/p1/backups/${small.id}`);
    assert.equal(del.status, 202);
  });

  test('a backup of an instance that does not fit ends FAILED "storage full"', { timeout: 120_000 }, async (t) => {
    const { instance, created } = await createInstance(region!, {
      name: 'big',
      datastore: { type: 'mariadb', version: '10.11' },
      volume: { size: 1 },
    });
    const server = { host: instance.ip[0], port: instance.port };
    // 12 MiB that gzip cannot shrink: the backup stream is larger than the file system.
    await mariadbSql(
      server,
      created.credential.password,
      'CREATE DATABASE noise; USE noise; CREATE TABLE blobs (id INT PRIMARY KEY, b BLOB) ENGINE=InnoDB;' +
        'INSERT INTO blobs SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_12288;',
    );
    const res = await region!.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'big', instance: instance.id } } });
    assert.equal(res.status, 202, res.text);
    const backup = await waitForBackup(region!, res.body.backup.id);
    // The copy's deletion above may still be finishing; the backup's own files are what matter.
    const left = filesUnder(full).filter((f) => f.includes(backup.id) || f.includes('.tmp-'));
    const after = (await region!.call('GET', `/v1.0/p1/instances/${instance.id}`)).body.instance;
    const survived = backup.status === 'FAILED' && /storage full/i.test(backup.fail_reason ?? '');
    reportFault(
      t,
      {
        name: 'fs-full-backup',
        injected: 1,
        survived: Number(survived),
        lost: Number(backup.status === 'COMPLETED' && !(await verifies(backup))),
        orphans: left.length,
      },
      `~12 MiB backup into an 8 MiB tmpfs: ${backup.status} (${backup.fail_reason}); files left: ${JSON.stringify(left)}`,
    );
    assert.equal(backup.status, 'FAILED');
    assert.match(backup.fail_reason, /storage full/i);
    assert.deepEqual(left, [], 'no temp, partial or segment file left');
    assert.equal(after.status, 'ACTIVE', 'the instance is ACTIVE again');
  });
});
