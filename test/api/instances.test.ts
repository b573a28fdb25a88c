import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stableId } from '../../src/config.ts';
import { nowIso } from '../../src/db/connect.ts';
import { insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import { type InstanceRow, insertInstance } from '../../src/db/repos/instances.ts';
import { waitForInstance } from '../e2e/helpers.ts';
import { createPgDatabase, dropPgDatabase } from '../helpers/db.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';

// The instances API and the instance form of POST /backups: every bad request gets Trove's fault
// (never a 500), checked before anything is written or started. No database servers needed.

const MARIADB_15 = stableId('datastore-version', 'mariadb', '10.11');
const POSTGRES_15 = stableId('datastore-version', 'postgresql', '15');
const GB = 1024 ** 3;

for (const dbKind of ['sqlite', 'postgres'] as const) {
  describe(`instances API on ${dbKind}`, () => {
    let region: TestRegion;
    let pgUrl: string | undefined;

    before(async () => {
      if (dbKind === 'postgres') pgUrl = await createPgDatabase();
      region = await startTestRegion({ name: 'faults', dbUrl: pgUrl });
    });
    after(async () => {
      await region.stop();
      if (pgUrl) await dropPgDatabase(pgUrl);
    });

    const db = () => region.tern.container.db.kysely;

    async function seedInstance(fields: Partial<InstanceRow> = {}): Promise<InstanceRow> {
      const now = nowIso();
      const row: InstanceRow = {
        id: crypto.randomUUID(),
        project_id: 'p1',
        name: 'seeded',
        status: 'ACTIVE',
        datastore_version_id: MARIADB_15,
        volume_size: 1,
        host: '127.0.0.1',
        port: 1, // nothing listens there: no job may ever get to use it
        data_dir: null,
        pid: null,
        fail_reason: null,
        created_at: now,
        updated_at: now,
        deleted_at: null,
        admin_user: 'root',
        wrapped_password: null,
        password_key_id: null,
        restore_backup_id: null,
        ...fields,
      };
      await insertInstance(db(), row);
      return row;
    }

    async function seedBackup(fields: Record<string, unknown> = {}) {
      const row = newBackupRow({
        id: crypto.randomUUID(),
        project_id: 'p1',
        name: 'seeded',
        status: 'COMPLETED',
        datastore_version_id: MARIADB_15,
        location: region.tern.container.storage.locationOf(`${crypto.randomUUID()}.xbstream.gz`),
        size_bytes: 1000,
        checksum: 'd41d8cd98f00b204e9800998ecf8427e',
        lsn: '12345',
        ...fields,
      });
      await insertBackup(db(), row);
      return row;
    }

    const createBody = (instance: Record<string, unknown>) => ({
      body: { instance: { name: 'i', volume: { size: 1 }, ...instance } },
    });

    it('refuses bad create requests with Trove faults', async () => {
      const cases: Array<[string, Record<string, unknown> | string, number, string]> = [
        ['unknown datastore', { datastore: { type: 'oracle' } }, 404, 'itemNotFound'],
        ['unknown version', { datastore: { type: 'mariadb', version: '5.5' } }, 404, 'itemNotFound'],
        ['version without type', { datastore: { version: '10.11' } }, 400, 'badRequest'],
        ['volume size 0', { volume: { size: 0 } }, 400, 'badRequest'],
        ['negative volume size', { volume: { size: -3 } }, 400, 'badRequest'],
        ['fractional volume size', { volume: { size: 1.5 } }, 400, 'badRequest'],
        ['volume size not a number', { volume: { size: 'big' } }, 400, 'badRequest'],
        ['no volume', { volume: undefined }, 400, 'badRequest'],
        ['empty name', { name: ' ' }, 400, 'badRequest'],
        ['restorePoint without backupRef', { restorePoint: {} }, 400, 'badRequest'],
        ['unknown backup', { restorePoint: { backupRef: crypto.randomUUID() } }, 404, 'itemNotFound'],
        ['malformed backup id', { restorePoint: { backupRef: "x'; DROP TABLE backups;--" } }, 404, 'itemNotFound'],
        ['mysql (no runner here)', { datastore: { type: 'mysql' } }, 404, 'itemNotFound'],
      ];
      for (const [what, instance, status, fault] of cases) {
        const res = await region.call('POST', '/v1.0/p1/instances', createBody(instance as Record<string, unknown>));
        assert.equal(res.status, status, `${what}: ${res.text}`);
        assert.ok(res.body?.[fault], `${what}: ${res.text}`);
      }
      for (const raw of ['{', '[]', '{"instance": 5}']) {
        const res = await region.call('POST', '/v1.0/p1/instances', { raw });
        assert.equal(res.status, 400, `${raw}: ${res.text}`);
      }
      const list = await region.call('GET', '/v1.0/p1/instances');
      assert.deepEqual(list.body.instances, [], 'nothing was created');
    });

    it("applies Trove's restore checks: 409 not COMPLETED, 404 deleted, 400 mismatch, 403 too large", async () => {
      const failed = await seedBackup({ status: 'FAILED' });
      const running = await seedBackup({ status: 'BUILDING' });
      const fresh = await seedBackup({ status: 'NEW' });
      const deleted = await seedBackup({ deleted_at: nowIso() });
      const others = await seedBackup({ project_id: 'p2' });
      const postgres = await seedBackup({ datastore_version_id: POSTGRES_15 });
      const big = await seedBackup({ size_bytes: 2.5 * GB });
      const cases: Array<[string, Record<string, unknown>, number, string]> = [
        ['FAILED backup', { restorePoint: { backupRef: failed.id } }, 409, 'conflict'],
        ['running backup', { restorePoint: { backupRef: running.id } }, 409, 'conflict'],
        ['NEW backup', { restorePoint: { backupRef: fresh.id } }, 409, 'conflict'],
        ['deleted backup', { restorePoint: { backupRef: deleted.id } }, 404, 'itemNotFound'],
        ["another project's backup", { restorePoint: { backupRef: others.id } }, 404, 'itemNotFound'],
        ['datastore mismatch', { datastore: { type: 'mariadb' }, restorePoint: { backupRef: postgres.id } }, 400, 'badRequest'],
        ['backup larger than the volume', { volume: { size: 2 }, restorePoint: { backupRef: big.id } }, 403, 'forbidden'],
      ];
      for (const [what, instance, status, fault] of cases) {
        const res = await region.call('POST', '/v1.0/p1/instances', createBody(instance));
        assert.equal(res.status, status, `${what}: ${res.text}`);
        assert.ok(res.body?.[fault], `${what}: ${res.text}`);
      }
      const fits = await region.call(
        'POST',
        '/v1.0/p1/instances',
        createBody({ volume: { size: 3 }, restorePoint: { backupRef: big.id } }),
      );
      assert.equal(fits.status, 200, fits.text);
    });

    it('ends a restore whose bytes are missing in ERROR with the reason, and no folder', async () => {
      const missing = await seedBackup();
      const res = await region.call('POST', '/v1.0/p1/instances', createBody({ restorePoint: { backupRef: missing.id } }));
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.instance.restore_backup_id, missing.id);
      const instance = await waitForInstance(region, res.body.instance.id);
      assert.equal(instance.status, 'ERROR');
      assert.match(instance.fault.message, /missing|not found/i);
      assert.ok(!existsSync(join(region.dir, 'instances', instance.id)));
      // An ERROR instance can be deleted.
      const del = await region.call('DELETE', `/v1.0/p1/instances/${instance.id}`);
      assert.equal(del.status, 202);
    });

    it('ends a server that cannot start in ERROR with the reason, and no folder', {
      skip: process.getuid?.() !== 0,
    }, async () => {
      // As root, servers run as mysql, which cannot reach this test region's 0700 folder.
      const res = await region.call('POST', '/v1.0/p1/instances', createBody({ datastore: { type: 'mariadb' } }));
      assert.equal(res.status, 200, res.text);
      const instance = await waitForInstance(region, res.body.instance.id);
      assert.equal(instance.status, 'ERROR');
      assert.ok(instance.fault.message.length > 0);
      assert.ok(!existsSync(join(region.dir, 'instances', instance.id)));
    });

    it('refuses backups of instances that are missing, busy or not ACTIVE, and bad parents', async () => {
      const building = await seedInstance({ status: 'BUILD' });
      const busy = await seedInstance({ status: 'BACKUP' });
      const broken = await seedInstance({ status: 'ERROR' });
      const others = await seedInstance({ project_id: 'p2' });
      const active = await seedInstance();
      const otherActive = await seedInstance();
      const failedParent = await seedBackup({ status: 'FAILED', instance_id: active.id });
      const foreignParent = await seedBackup({ instance_id: otherActive.id });
      const noLsn = await seedBackup({ instance_id: active.id, lsn: null });
      const cases: Array<[string, Record<string, unknown>, number, string]> = [
        ['unknown instance', { instance: crypto.randomUUID() }, 404, 'itemNotFound'],
        ["another project's instance", { instance: others.id }, 404, 'itemNotFound'],
        ['instance in BUILD', { instance: building.id }, 422, 'unprocessableEntity'],
        ['instance taking a backup', { instance: busy.id }, 422, 'unprocessableEntity'],
        ['instance in ERROR', { instance: broken.id }, 422, 'unprocessableEntity'],
        ['missing parent', { instance: active.id, incremental: 1, parent_id: crypto.randomUUID() }, 404, 'itemNotFound'],
        ['FAILED parent', { instance: active.id, parent_id: failedParent.id }, 422, 'unprocessableEntity'],
        ["another instance's parent", { instance: active.id, parent_id: foreignParent.id }, 400, 'badRequest'],
        ['parent without LSN', { instance: active.id, parent_id: noLsn.id }, 422, 'unprocessableEntity'],
        ['incremental out of range', { instance: active.id, incremental: 2 }, 400, 'badRequest'],
      ];
      for (const [what, backup, status, fault] of cases) {
        const res = await region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'b', ...backup } } });
        assert.equal(res.status, status, `${what}: ${res.text}`);
        assert.ok(res.body?.[fault], `${what}: ${res.text}`);
      }
      const rows = await db()
        .selectFrom('instances')
        .select(['id', 'status'])
        .where('id', '=', active.id)
        .executeTakeFirstOrThrow();
      assert.equal(rows.status, 'ACTIVE', 'a refused backup leaves the instance alone');
      const pgInstance = await seedInstance({ datastore_version_id: POSTGRES_15, admin_user: 'postgres' });
      const pgInc = await region.call('POST', '/v1.0/p1/backups', {
        body: { backup: { name: 'b', instance: pgInstance.id, incremental: 1 } },
      });
      assert.equal(pgInc.status, 400, pgInc.text);
      assert.match(pgInc.body.badRequest.message, /not supported/);
    });

    it('shows, lists and refuses deletes by state', async () => {
      const building = await seedInstance({ status: 'BUILD', name: 'b1' });
      const busy = await seedInstance({ status: 'BACKUP' });
      const show = await region.call('GET', `/v1.0/p1/instances/${building.id}`);
      assert.equal(show.status, 200);
      assert.equal(show.body.instance.status, 'BUILD');
      assert.equal(show.body.instance.password, undefined);
      for (const id of [building.id, busy.id]) {
        const res = await region.call('DELETE', `/v1.0/p1/instances/${id}`);
        assert.equal(res.status, 422, res.text);
      }
      for (const id of [crypto.randomUUID(), 'not-a-uuid']) {
        assert.equal((await region.call('DELETE', `/v1.0/p1/instances/${id}`)).status, 404);
        assert.equal((await region.call('GET', `/v1.0/p1/instances/${id}`)).status, 404);
      }
      const page = await region.call('GET', '/v1.0/p1/instances?limit=1');
      assert.equal(page.body.instances.length, 1);
      assert.match(page.body.links[0].href, /marker=/);
      assert.equal((await region.call('GET', '/v1.0/p1/instances?limit=0')).status, 400);
      assert.equal((await region.call('GET', '/v1.0/p1/instances?marker=nope')).status, 400);
      const other = await region.call('GET', '/v1.0/p2/instances', { token: region.tokens.other });
      assert.ok(other.body.instances.every((i: any) => i.project_id === 'p2'));
    });
  });
}
