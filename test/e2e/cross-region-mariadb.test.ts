import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { tern } from '../cli/run.ts';
import { ensureDatastorePackages, mariadbSql } from '../datastores/helpers.ts';
import { dropContainer, emptiedContainer, ensureSwiftRegions, swiftConfig } from '../helpers/swift.ts';
import { restoreAndSnapshot, type ServedApi, serverOf, snapshot, startServed, swiftStorage } from './served.ts';

// The headline story on real parts only: two `tern serve` regions, each on its own Swift cluster;
// a MariaDB instance in region1 with data, a full and an incremental backup; copies into region2
// by each create form (location, Trove's restore_from, source {region, id} through the CLI's
// --to), the incremental one bringing its parent along the first time and reusing it after; every
// copy restored into a new instance in region2 and compared (CHECKSUM TABLE ... EXTENDED, counts)
// with region1 at backup time. Everything made is deleted again, and both containers end empty.

const MiB = 1024 * 1024;
const TABLES = ['shop.customers', 'shop.orders', 'shop.audit', 'shop.added'];
const LOAD = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128)) ENGINE=InnoDB;
INSERT INTO shop.customers SELECT seq, CONCAT('name-', seq), CONCAT('c', seq, '@example.org') FROM seq_1_to_10000;
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), note TEXT,
  KEY (customer_id)) ENGINE=InnoDB;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 10000, seq * 1.25, REPEAT(MD5(seq), 4) FROM seq_1_to_40000;
CREATE TABLE shop.audit (id INT PRIMARY KEY, event VARCHAR(64)) ENGINE=Aria;
INSERT INTO shop.audit SELECT seq, CONCAT('event-', seq) FROM seq_1_to_5000;
`;
const CHANGE = `
USE shop;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 10000, seq, 'after the full backup' FROM seq_1_to_8000;
UPDATE shop.customers SET email = CONCAT('new-', id, '@example.org') WHERE id % 7 = 0;
DELETE FROM shop.customers WHERE id > 9500;
INSERT INTO shop.audit SELECT seq, 'later' FROM seq_5001_to_5500;
CREATE TABLE shop.added (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO shop.added SELECT seq, HEX(seq) FROM seq_1_to_700;
`;

describe('cross-region MariaDB: backups in region1, copies by every form restored in region2', { timeout: 900_000 }, () => {
  const run = randomBytes(4).toString('hex');
  const c1 = `tern_xr_${run}_r1`;
  const c2 = `tern_xr_${run}_r2`;
  const token = randomBytes(16).toString('hex');
  const key1 = { id: 'region1-key', secret: randomBytes(32).toString('base64') };
  const key2 = { id: 'region2-key', secret: randomBytes(32).toString('base64') };
  let r1: ServedApi;
  let r2: ServedApi;
  let password: string;
  let sourceInstance: any;
  let full: any;
  let inc: any;
  let atFull: string;
  let atInc: string;
  /** Region2 backups made by the test, oldest first (deleted newest first). */
  const copies: string[] = [];

  before(async () => {
    ensureDatastorePackages();
    await ensureSwiftRegions();
    const auth = { token, project: 'p1' };
    // Small segments, so every backup is a multi-segment SLO.
    r1 = await startServed('region1', { storage: swiftStorage(1, c1, MiB), encryption: { keys: [key1] } }, auth);
    r2 = await startServed(
      'region2',
      {
        storage: swiftStorage(2, c2, MiB),
        encryption: { keys: [key2] },
        catalog: [{ region: 'region1', apiUrl: r1.url, storage: swiftStorage(1, c1, MiB), keys: [key1] }],
        copy: { parallelism: 3 },
      },
      auth,
    );
  });

  after(async () => {
    // Whatever a failed test left: instances, then backups (children first), then the regions.
    for (const region of [r2, r1]) {
      if (!region) continue;
      const instances = (await region.call('GET', '/instances').catch(() => null))?.body?.instances ?? [];
      for (const i of instances) await region.remove(`/instances/${i.id}`).catch(() => {});
      const backups = (await region.call('GET', '/backups?limit=1000').catch(() => null))?.body?.backups ?? [];
      backups.sort((a: any, b: any) => Number(Boolean(b.parent_id)) - Number(Boolean(a.parent_id)));
      for (const b of backups) await region.remove(`/backups/${b.id}`).catch(() => {});
    }
    await r2?.stop();
    await r1?.stop();
    await Promise.all([dropContainer(1, c1), dropContainer(2, c2)]);
  });

  it('region1: an instance with tens of thousands of rows, a full backup and an incremental one after more writes', async () => {
    const res = await r1.call('POST', '/instances', {
      instance: { name: 'shop-db', datastore: { type: 'mariadb', version: '10.11' }, volume: { size: 2 } },
    });
    assert.equal(res.status, 200, res.text);
    password = res.body.instance.credential.password;
    sourceInstance = await r1.waitInstance(res.body.instance.id);
    assert.equal(sourceInstance.status, 'ACTIVE', JSON.stringify(sourceInstance.fault));
    await mariadbSql(serverOf(sourceInstance), password, LOAD);
    atFull = await snapshot(serverOf(sourceInstance), password, TABLES);
    assert.ok(atFull.includes('40000\t1000025000.00\n10000\n'), atFull);

    const f = await r1.call('POST', '/backups', { backup: { name: 'full', instance: sourceInstance.id } });
    assert.equal(f.status, 202, f.text);
    full = await r1.waitBackup(f.body.backup.id);
    assert.equal(full.status, 'COMPLETED', full.fail_reason);

    await mariadbSql(serverOf(sourceInstance), password, CHANGE);
    atInc = await snapshot(serverOf(sourceInstance), password, TABLES);
    assert.notEqual(atInc, atFull);
    const i = await r1.call('POST', '/backups', { backup: { name: 'inc', instance: sourceInstance.id, incremental: 1 } });
    assert.equal(i.status, 202, i.text);
    inc = await r1.waitBackup(i.body.backup.id);
    assert.equal(inc.status, 'COMPLETED', inc.fail_reason);
    assert.equal(inc.parent_id, full.id);

    const storage = new SwiftDriver(swiftConfig(1, c1));
    try {
      const segments = await storage.segments(storage.keyOf(full.locationRef)!);
      assert.ok(segments && segments.length > 1, `the full backup is a multi-segment SLO (${segments?.length})`);
    } finally {
      await storage.close();
    }
  });

  /** Waits for a region2 copy, records it for cleanup and checks it against its region1 original. */
  async function copied(id: string, original: any): Promise<any> {
    copies.push(id);
    const done = await r2.waitBackup(id);
    assert.equal(done.status, 'COMPLETED', done.fail_reason);
    assert.equal(done.checksum, original.checksum, 'same bytes: the manifest checksum of the original');
    assert.equal(done.size_bytes, original.size_bytes);
    assert.equal(done.instance_id, null);
    assert.ok(done.locationRef.includes(`/AUTH_test/${c2}/`), done.locationRef);
    return done;
  }

  it('location form: the incremental brings its parent along, copied first; both restore in region2', async () => {
    const res = await r2.call('POST', '/backups', { backup: { name: 'inc-by-location', location: inc.locationRef } });
    assert.equal(res.status, 202, res.text);
    const parentId = res.body.backup.parent_id;
    assert.ok(parentId, 'the copy names a parent in region2');
    const parent = await copied(parentId, full);
    const child = await copied(res.body.backup.id, inc);
    assert.ok(parent.updated <= child.updated);
    // The copy's Parent-Location points at region2's copy of the parent, so the chain restores here.
    const storage = new SwiftDriver(swiftConfig(2, c2));
    try {
      const head = await storage.head(storage.keyOf(child.locationRef)!);
      assert.equal(head?.metadata['parent-location'], parent.locationRef);
      assert.equal(head?.metadata['parent-checksum'], parent.checksum);
    } finally {
      await storage.close();
    }
    assert.equal(await restoreAndSnapshot(r2, parent.id, password, TABLES), atFull);
    assert.equal(await restoreAndSnapshot(r2, child.id, password, TABLES), atInc);
  });

  it("restore_from form: the full as a backup of its own; the incremental reuses region2's parent", async () => {
    const ds = await r2.call('GET', '/datastores');
    const versionId = ds.body.datastores.find((d: any) => d.name === 'mariadb').versions[0].id;
    const restoreFrom = (b: any) => ({ remote_location: b.locationRef, local_datastore_version_id: versionId, size: b.size });
    const f = await r2.call('POST', '/backups', { backup: { name: 'full-by-restore_from', restore_from: restoreFrom(full) } });
    assert.equal(f.status, 202, f.text);
    assert.equal(f.body.backup.parent_id, null);
    const fullCopy = await copied(f.body.backup.id, full);
    assert.equal(await restoreAndSnapshot(r2, fullCopy.id, password, TABLES), atFull);

    const before = (await r2.call('GET', '/backups?limit=1000')).body.backups.length;
    const i = await r2.call('POST', '/backups', { backup: { name: 'inc-by-restore_from', restore_from: restoreFrom(inc) } });
    assert.equal(i.status, 202, i.text);
    assert.ok(copies.includes(i.body.backup.parent_id), 'the parent is a backup region2 already has');
    assert.equal((await r2.call('GET', '/backups?limit=1000')).body.backups.length, before + 1, 'no parent copied again');
    const incCopy = await copied(i.body.backup.id, inc);
    assert.equal(await restoreAndSnapshot(r2, incCopy.id, password, TABLES), atInc);
  });

  it('source form through the CLI (tern backup copy --from region1 --to region2 --wait): full and incremental', async () => {
    const env = { TERN_TOKEN: token, TERN_PROJECT: 'p1' };
    const cli = async (id: string) => {
      // region1's URL is given as --url: only --to, read from region2's configuration, reaches region2.
      const r = await tern(
        [
          '--url',
          r1.url,
          'backup',
          'copy',
          id,
          '--from',
          'region1',
          '--to',
          'region2',
          '--config',
          r2.configFile,
          '--wait',
          '--json',
        ],
        { env },
      );
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).backup;
    };
    const before = (await r2.call('GET', '/backups?limit=1000')).body.backups.length;
    const fullCopy = await cli(full.id);
    assert.deepEqual(fullCopy.source, { location: full.locationRef, region: 'region1', id: full.id });
    await copied(fullCopy.id, full);
    const incCopy = await cli(inc.id);
    assert.ok(copies.includes(incCopy.parent_id), 'the parent is a backup region2 already has');
    await copied(incCopy.id, inc);
    assert.equal((await r2.call('GET', '/backups?limit=1000')).body.backups.length, before + 2);
    assert.equal(await restoreAndSnapshot(r2, fullCopy.id, password, TABLES), atFull);
    assert.equal(await restoreAndSnapshot(r2, incCopy.id, password, TABLES), atInc);
  });

  it('deleting the instances and backups leaves no object in either region', async () => {
    for (const id of [...copies].reverse()) await r2.remove(`/backups/${id}`);
    await r1.remove(`/backups/${inc.id}`);
    await r1.remove(`/backups/${full.id}`);
    await r1.remove(`/instances/${sourceInstance.id}`);
    assert.deepEqual((await r2.call('GET', '/backups')).body.backups, []);
    assert.deepEqual((await r2.call('GET', '/instances')).body.instances, []);
    assert.deepEqual(await emptiedContainer(1, c1), []);
    assert.deepEqual(await emptiedContainer(2, c2), []);
  });
});
