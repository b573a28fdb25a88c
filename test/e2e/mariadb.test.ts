import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureDatastorePackages, mariadbSql } from '../datastores/helpers.ts';
import type { TestRegion } from '../helpers/tern.ts';
import { createBackup, createInstance, startInstanceRegion, waitFor, waitForBackup, waitForInstance } from './helpers.ts';

// End to end through Tern's HTTP API on real MariaDB servers: create an instance, load data, take
// a full and an incremental backup, restore each into a new instance, and prove the data equal.

const TABLES = ['shop.customers', 'shop.orders', 'shop.audit', 'shop.added'];
const LOAD = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128)) ENGINE=InnoDB;
INSERT INTO shop.customers SELECT seq, CONCAT('name-', seq), CONCAT('c', seq, '@example.org') FROM seq_1_to_5000;
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), note TEXT,
  KEY (customer_id)) ENGINE=InnoDB;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 5000, seq * 1.25, REPEAT(MD5(seq), 4) FROM seq_1_to_20000;
CREATE TABLE shop.audit (id INT PRIMARY KEY, event VARCHAR(64)) ENGINE=Aria;
INSERT INTO shop.audit SELECT seq, CONCAT('event-', seq) FROM seq_1_to_3000;
`;
const CHANGE = `
USE shop;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 5000, seq, 'after the full backup' FROM seq_1_to_4000;
UPDATE shop.customers SET email = CONCAT('new-', id, '@example.org') WHERE id % 7 = 0;
DELETE FROM shop.customers WHERE id > 4800;
INSERT INTO shop.audit SELECT seq, 'later' FROM seq_3001_to_3500;
CREATE TABLE shop.added (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO shop.added SELECT seq, HEX(seq) FROM seq_1_to_700;
`;

type Server = { host: string; port: number };
const serverOf = (instance: any): Server => ({ host: instance.ip[0], port: instance.port });

/** Table list, row counts and CHECKSUM TABLE ... EXTENDED of every table: equal iff the data is. */
async function snapshot(server: Server, password: string): Promise<string> {
  const tables = await mariadbSql(
    server,
    password,
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' ORDER BY 1;",
  );
  const present = TABLES.filter((t) => tables.split('\n').includes(t.split('.')[1]));
  const checksums = await mariadbSql(server, password, `CHECKSUM TABLE ${present.join(', ')} EXTENDED;`);
  const counts = await mariadbSql(
    server,
    password,
    'SELECT COUNT(*), SUM(amount) FROM shop.orders; SELECT COUNT(*) FROM shop.customers;',
  );
  return `${tables}\n${checksums}\n${counts}`;
}

describe('MariaDB instances, backups and restores through the API (real servers)', { timeout: 600_000 }, () => {
  let region: TestRegion;
  let source: any;
  let password: string;
  let full: any;
  let incremental: any;
  let atFull: string;
  let atIncremental: string;

  before(async () => {
    ensureDatastorePackages();
    region = await startInstanceRegion();
  });
  after(() => region?.stop());

  it('creates an ACTIVE instance and shows the credentials only once', async () => {
    const { instance, created } = await createInstance(region, {
      name: 'shop-db',
      datastore: { type: 'mariadb', version: '10.11' },
      volume: { size: 2 },
      flavorRef: '7', // Trove clients send one; Tern ignores it
    });
    source = instance;
    assert.equal(created.credential.username, 'root');
    password = created.credential.password;
    assert.ok(password.length >= 16);
    assert.equal(instance.datastore.type, 'mariadb');
    assert.equal(instance.volume.size, 2);
    assert.equal(instance.ip[0], '127.0.0.1');
    assert.ok(instance.port > 0);
    const shown = await region.call('GET', `/v1.0/p1/instances/${instance.id}`);
    assert.ok(!shown.text.includes(password), 'show never returns the password');
    const list = await region.call('GET', '/v1.0/p1/instances');
    assert.ok(!list.text.includes(password));
    assert.deepEqual(
      list.body.instances.map((i: any) => i.id),
      [instance.id],
    );
    const other = await region.call('GET', `/v1.0/p2/instances/${instance.id}`, { token: region.tokens.other });
    assert.equal(other.status, 404);
    await mariadbSql(serverOf(instance), password, LOAD);
  });

  it('takes an encrypted full backup in Trove layout and goes back to ACTIVE', async () => {
    atFull = await snapshot(serverOf(source), password);
    full = await createBackup(region, { name: 'full', instance: source.id });
    assert.equal(full.status, 'COMPLETED', full.fail_reason);
    assert.equal(full.instance_id, source.id);
    assert.equal(full.parent_id, null);
    assert.match(full.locationRef, new RegExp(`/${full.id}\\.xbstream\\.gz\\.enc$`));
    assert.match(full.checksum, /^[0-9a-f]{32}$/);
    assert.ok(full.size_bytes > 100_000);
    assert.equal(full.size, full.size_bytes / 1024 ** 3);
    assert.equal(full.datastore.type, 'mariadb');
    assert.ok(!JSON.stringify(full).includes(password));
    const instance = (await region.call('GET', `/v1.0/p1/instances/${source.id}`)).body.instance;
    assert.equal(instance.status, 'ACTIVE');
    const listed = await region.call('GET', `/v1.0/p1/instances/${source.id}/backups`);
    assert.deepEqual(
      listed.body.backups.map((b: any) => b.id),
      [full.id],
    );
    const row = await region.tern.container.db.kysely
      .selectFrom('backups')
      .selectAll()
      .where('id', '=', full.id)
      .executeTakeFirstOrThrow();
    assert.match(row.lsn ?? '', /^\d+$/);
    assert.ok(row.wrapped_passphrase && row.encryption_key_id);
    const head = await region.tern.container.storage.head(`${full.id}.xbstream.gz.enc`);
    assert.equal(head?.etag, full.checksum);
    assert.equal(head?.metadata.datastore, 'mariadb');
    assert.equal(head?.metadata['datastore-version'], '10.11');
    assert.equal(head?.metadata.lsn, row.lsn);
    assert.equal(head?.metadata['project-id'], 'p1');
  });

  it('takes an incremental backup from the latest one, one backup at a time', async () => {
    await mariadbSql(serverOf(source), password, CHANGE);
    atIncremental = await snapshot(serverOf(source), password);
    assert.notEqual(atIncremental, atFull);
    const first = await region.call('POST', '/v1.0/p1/backups', {
      body: { backup: { name: 'inc', instance: source.id, incremental: 1 } },
    });
    assert.equal(first.status, 202, first.text);
    assert.equal(first.body.backup.parent_id, full.id);
    const second = await region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'again', instance: source.id } } });
    assert.equal(second.status, 422, second.text);
    assert.ok(second.body.unprocessableEntity);
    const busy = (await region.call('GET', `/v1.0/p1/instances/${source.id}`)).body.instance;
    assert.ok(['BACKUP', 'ACTIVE'].includes(busy.status));
    incremental = await waitForBackup(region, first.body.backup.id);
    assert.equal(incremental.status, 'COMPLETED', incremental.fail_reason);
    const head = await region.tern.container.storage.head(`${incremental.id}.xbstream.gz.enc`);
    assert.equal(head?.metadata['parent-location'], full.locationRef);
    assert.equal(head?.metadata['parent-checksum'], full.checksum);
  });

  it('restores the full backup into a new instance with the data at full-backup time', async () => {
    const { instance } = await createInstance(region, {
      name: 'from-full',
      volume: { size: 1 },
      restorePoint: { backupRef: full.id },
    });
    assert.notEqual(instance.port, source.port);
    assert.equal(instance.restore_backup_id, full.id);
    assert.equal(await snapshot(serverOf(instance), password), atFull);
  });

  it('restores the incremental chain into a new instance with the data at incremental time', async () => {
    const { instance, created } = await createInstance(region, {
      name: 'from-inc',
      datastore: { type: 'mariadb' },
      volume: { size: 1 },
      restorePoint: { backupRef: incremental.id },
    });
    assert.equal(created.credential.password, null, 'a restore keeps the source users; no new password is made');
    assert.equal(await snapshot(serverOf(instance), password), atIncremental);
    // A restored instance can itself be backed up (Tern knows its admin password).
    const again = await createBackup(region, { name: 'of-restored', instance: instance.id });
    assert.equal(again.status, 'COMPLETED', again.fail_reason);
  });

  it('fails a backup whose tool fails, with its error line and nothing left in storage', async () => {
    // Change the password behind Tern's back: mariabackup is refused.
    await mariadbSql(
      serverOf(source),
      password,
      "ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY 'changed-behind-terns-back'; ALTER USER 'root'@'localhost' IDENTIFIED BY 'changed-behind-terns-back';",
    );
    const failed = await createBackup(region, { name: 'doomed', instance: source.id });
    assert.equal(failed.status, 'FAILED');
    assert.match(failed.fail_reason, /mariabackup failed: .*(Access denied|denied)/i);
    assert.ok(!failed.fail_reason.includes('changed-behind'), 'no password in the reason');
    const objects = readdirSync(join(region.dir, 'objects', 'database_backups'));
    assert.deepEqual(
      objects.filter((name) => name.startsWith(failed.id)),
      [],
    );
    const instance = (await region.call('GET', `/v1.0/p1/instances/${source.id}`)).body.instance;
    assert.equal(instance.status, 'ACTIVE');
    // A FAILED backup cannot be restored (Trove: 409).
    const restore = await region.call('POST', '/v1.0/p1/instances', {
      body: { instance: { name: 'x', volume: { size: 1 }, restorePoint: { backupRef: failed.id } } },
    });
    assert.equal(restore.status, 409, restore.text);
  });

  it('deletes an instance: SHUTDOWN, then gone with its folder', async () => {
    const dataDir = join(region.dir, 'instances', source.id);
    assert.ok(existsSync(dataDir));
    const res = await region.call('DELETE', `/v1.0/p1/instances/${source.id}`);
    assert.equal(res.status, 202);
    await waitFor(region, `/v1.0/p1/instances/${source.id}`, (b) => b?.itemNotFound !== undefined, 60_000);
    assert.ok(!existsSync(dataDir));
    // Its backups stay, and still restore (the chain does not need the instance).
    const listed = await region.call('GET', `/v1.0/p1/backups?instance_id=${source.id}`);
    assert.equal(listed.body.backups.length, 3);
    const res2 = await region.call('GET', `/v1.0/p1/instances/${source.id}`);
    assert.equal(res2.status, 404);
    void waitForInstance;
  });
});
