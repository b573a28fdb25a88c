import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureDatastorePackages, pgQuery } from '../datastores/helpers.ts';
import { createPgDatabase, dropPgDatabase } from '../helpers/db.ts';
import type { TestRegion } from '../helpers/tern.ts';
import { createBackup, createInstance, startInstanceRegion } from './helpers.ts';

// End to end through Tern's HTTP API on real PostgreSQL servers, with PostgreSQL as Tern's own
// metadata database: create, load, full backup, restore into a new instance, compare.

type Server = { host: string; port: number };
const serverOf = (instance: any): Server => ({ host: instance.ip[0], port: instance.port });

const LOAD = `
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount numeric(10,2));
INSERT INTO items SELECT g, 'item-' || g || '-' || md5(g::text), g * 1.5 FROM generate_series(1, 20000) g;
CREATE TABLE events (id bigserial PRIMARY KEY, item_id int REFERENCES items(id), at timestamptz, payload jsonb);
INSERT INTO events (item_id, at, payload)
  SELECT 1 + g % 20000, timestamptz '2026-01-01' + g * interval '1 minute', jsonb_build_object('n', g, 'h', md5(g::text))
  FROM generate_series(1, 15000) g;
`;

/** Row counts and an md5 over every row of each table, in key order: equal iff the data is. */
async function contentOf(server: Server, password: string): Promise<string> {
  const { rows } = await pgQuery(
    server,
    password,
    `SELECT (SELECT count(*) FROM items)::text AS items,
            (SELECT md5(string_agg(id || ':' || name || ':' || amount, ',' ORDER BY id)) FROM items) AS items_md5,
            (SELECT count(*) FROM events)::text AS events,
            (SELECT md5(string_agg(id || ':' || item_id || ':' || at || ':' || payload::text, ',' ORDER BY id)) FROM events) AS events_md5`,
    'shop',
  );
  return JSON.stringify(rows[0]);
}

describe('PostgreSQL instances, backups and restores through the API (real servers)', { timeout: 600_000 }, () => {
  let region: TestRegion;
  let dbUrl: string | undefined;
  let source: any;
  let password: string;

  before(async () => {
    ensureDatastorePackages();
    // PostgreSQL metadata when the test server is there (scripts/pg-test.sh); SQLite otherwise.
    dbUrl = process.env.TERN_TEST_PG_URL ? await createPgDatabase() : undefined;
    region = await startInstanceRegion({ dbUrl });
  });
  after(async () => {
    await region?.stop();
    if (dbUrl) await dropPgDatabase(dbUrl);
  });

  it('creates an instance, backs it up and restores the backup with identical data', async () => {
    const created = await createInstance(region, {
      name: 'pg-shop',
      datastore: { type: 'postgresql', version: '15' },
      volume: { size: 1 },
    });
    source = created.instance;
    password = created.created.credential.password;
    assert.equal(created.created.credential.username, 'postgres');
    await pgQuery(serverOf(source), password, 'CREATE DATABASE shop');
    await pgQuery(serverOf(source), password, LOAD, 'shop');
    const atBackup = await contentOf(serverOf(source), password);

    const backup = await createBackup(region, { name: 'pg-full', instance: source.id });
    assert.equal(backup.status, 'COMPLETED', backup.fail_reason);
    assert.match(backup.locationRef, new RegExp(`/${backup.id}\\.tar\\.gz\\.enc$`));
    const head = await region.tern.container.storage.head(`${backup.id}.tar.gz.enc`);
    assert.equal(head?.metadata.datastore, 'postgresql');
    assert.match(head?.metadata.lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/i);

    // Changes after the backup must not show up in the restore.
    await pgQuery(serverOf(source), password, 'DELETE FROM events WHERE id % 2 = 0', 'shop');
    const restored = await createInstance(region, {
      name: 'pg-restored',
      volume: { size: 1 },
      restorePoint: { backupRef: backup.id },
    });
    assert.equal(restored.instance.datastore.type, 'postgresql');
    assert.equal(await contentOf(serverOf(restored.instance), password), atBackup);
  });

  it('refuses an incremental PostgreSQL backup and a restore into another datastore', async () => {
    const inc = await region.call('POST', '/v1.0/p1/backups', {
      body: { backup: { name: 'inc', instance: source.id, incremental: 1 } },
    });
    assert.equal(inc.status, 400, inc.text);
    assert.match(inc.body.badRequest.message, /not supported/);
    const list = await region.call('GET', `/v1.0/p1/instances/${source.id}/backups`);
    const backupId = list.body.backups[0].id;
    const mismatch = await region.call('POST', '/v1.0/p1/instances', {
      body: {
        instance: { name: 'x', datastore: { type: 'mariadb' }, volume: { size: 1 }, restorePoint: { backupRef: backupId } },
      },
    });
    assert.equal(mismatch.status, 400, mismatch.text);
    const instance = (await region.call('GET', `/v1.0/p1/instances/${source.id}`)).body.instance;
    assert.equal(instance.status, 'ACTIVE');
  });
});
