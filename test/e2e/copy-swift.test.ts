import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { COPY_JOB, SWEEP_JOB } from '../../src/backups/jobs.ts';
import { copyBackupTask } from '../../src/backups/tasks/copy.ts';
import type { SwiftStorageConfig } from '../../src/config.ts';
import { insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import type { StorageDriver } from '../../src/storage/driver.ts';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { segmentKey } from '../../src/storage/keys.ts';
import { keysWith, md5, readAll, rowCount, seedBackup, waitForStatus } from '../copy/regions.ts';
import { ensureSwiftRegions, FaultProxy, swiftConfig, swiftProxyUrl } from '../helpers/swift.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';

// End to end on the two real Swift regions: two in-process Tern regions whose storage is
// region1's and region2's Swift (own containers per run), a segmented backup in region1 copied
// to region2 by each of the three create forms, bytes compared by MD5 of GETs. Then the faults
// only a real store shows: a segment that no longer matches its manifest, a target answering
// 503, a DELETE while segments are moving.

const SEGMENT = 64 * 1024;

function swiftStorage(region: 1 | 2, container: string, authUrl?: string): SwiftStorageConfig {
  return { ...(swiftConfig(region, container) as SwiftStorageConfig), ...(authUrl ? { authUrl } : {}) };
}

/** Removes every object and then the container (whatever a failing test left). */
async function dropContainer(region: 1 | 2, container: string): Promise<void> {
  const driver = new SwiftDriver(swiftConfig(region, container));
  try {
    for (const key of await keysWith(driver, '')) await driver.delete(key);
    const auth = await fetch(`${swiftProxyUrl(region)}/auth/v1.0`, {
      headers: { 'x-auth-user': 'test:tester', 'x-auth-key': 'testing' },
    });
    const token = auth.headers.get('x-auth-token')!;
    const url = auth.headers.get('x-storage-url')!;
    await fetch(`${url}/${container}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
  } finally {
    await driver.close();
  }
}

describe('cross-region copy on two real Swift regions', { timeout: 300_000 }, () => {
  const run = randomBytes(4).toString('hex');
  const c1 = `tern_e2e_${run}_r1`;
  const c2 = `tern_e2e_${run}_r2`;
  const c3 = `tern_e2e_${run}_r2slow`;
  let r1: TestRegion;
  let r2: TestRegion;
  let slow: TestRegion;
  let proxy: FaultProxy;

  before(async () => {
    await ensureSwiftRegions();
    r1 = await startTestRegion({ name: 'region1', storage: swiftStorage(1, c1) });
    r2 = await startTestRegion({
      name: 'region2',
      tokens: r1.tokens,
      storage: swiftStorage(2, c2),
      catalog: [{ region: 'region1', storage: swiftStorage(1, c1), apiUrl: r1.url }],
      extra: { copy: { parallelism: 3 } },
    });
    // Region1's Swift behind a slow link, for a DELETE that lands mid-copy.
    proxy = await FaultProxy.start(8081);
    slow = await startTestRegion({
      name: 'region2',
      tokens: r1.tokens,
      storage: swiftStorage(2, c3),
      catalog: [{ region: 'region1', storage: swiftStorage(1, c1, `${proxy.url}/auth/v1.0`) }],
      extra: { copy: { parallelism: 1 } },
    });
  });
  after(async () => {
    for (const r of [slow, r2, r1]) await r?.stop();
    await proxy?.close();
    await Promise.all([dropContainer(1, c1), dropContainer(2, c2), dropContainer(2, c3)]);
  });

  async function mariadbVersionId(region: TestRegion): Promise<string> {
    const ds = await region.call('GET', '/v1.0/p1/datastores');
    return ds.body.datastores.find((d: any) => d.name === 'mariadb').versions[0].id;
  }

  for (const form of ['location', 'restore_from', 'source'] as const) {
    it(`copies a segmented backup from region1 to region2 by the ${form} form`, async () => {
      const a = await seedBackup(r1, { segments: 5, segmentSize: SEGMENT });
      const sourceHead = await r1.tern.container.storage.head(a.key);
      assert.equal(sourceHead!.segmented, true);
      const body: Record<string, unknown> =
        form === 'location'
          ? { location: a.location, instance: null, description: 'from region1' }
          : form === 'restore_from'
            ? { restore_from: { remote_location: a.location, local_datastore_version_id: await mariadbVersionId(r2), size: 0.1 } }
            : { source: { region: 'region1', id: a.id } };
      const res = await r2.call('POST', '/v1.0/p1/backups', { body: { backup: { name: `e2e-${form}`, ...body } } });
      assert.equal(res.status, 202, res.text);
      assert.equal(res.body.backup.status, 'NEW');
      assert.equal(res.body.backup.instance_id, null);
      assert.equal(res.body.backup.size_bytes, sourceHead!.size, 'the real size, not the estimate');
      const done = await waitForStatus(r2, res.body.backup.id, ['COMPLETED', 'FAILED']);
      assert.equal(done.status, 'COMPLETED', done.fail_reason);
      assert.equal(done.checksum, sourceHead!.etag, "the copy's checksum is the source manifest's ETag");
      assert.ok(done.locationRef.startsWith(`${swiftProxyUrl(2)}/v1/AUTH_test/${c2}/`));
      const target = r2.tern.container.storage;
      const key = target.keyOf(done.locationRef)!;
      const [there, here] = await Promise.all([readAll(r1.tern.container.storage, a.key), readAll(target, key)]);
      assert.equal(md5(here), md5(there));
      assert.equal(md5(here), md5(a.bytes));
      assert.deepEqual((await target.segments(key))!.length, 5);
    });
  }

  it('refuses a source whose segment no longer matches its manifest ETag: 400, nothing made', async () => {
    const a = await seedBackup(r1, { segments: 3, segmentSize: SEGMENT });
    const { storage } = r1.tern.container;
    const { Readable } = await import('node:stream');
    await storage.put(segmentKey(a.id, 2), Readable.from([randomBytes(SEGMENT)]));
    const before = await rowCount(r2);
    const stored = (await keysWith(r2.tern.container.storage, '')).length;
    const res = await r2.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'bad', location: a.location } } });
    assert.equal(res.status, 400, res.text);
    assert.match(res.body.badRequest.message, /segment 2 of 3 does not match/);
    assert.equal(await rowCount(r2), before);
    assert.equal((await keysWith(r2.tern.container.storage, '')).length, stored);
  });

  it('refuses a location in another Swift account than the catalog endpoint: 400, no connection', async () => {
    const location = `${swiftProxyUrl(1)}/v1/AUTH_other/${c1}/x.xbstream.gz`;
    const res = await r2.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'x', location } } });
    // Not under region1's endpoint (AUTH_test/<container>), so refused before any connection.
    assert.equal(res.status, 400, res.text);
    assert.match(res.body.badRequest.message, /catalog/);
  });

  it('a target answering 503 through every retry: FAILED with the reason, every written segment removed', async () => {
    const a = await seedBackup(r1, { segments: 4, segmentSize: SEGMENT });
    const faulty = await FaultProxy.start(8082);
    const target = new SwiftDriver(swiftStorage(2, c2, `${faulty.url}/auth/v1.0`));
    const { db, catalog } = r2.tern.container;
    try {
      const id = crypto.randomUUID();
      await insertBackup(
        db.kysely,
        newBackupRow({ id, project_id: 'p1', name: 'to-503', source_location: a.location, source_region: 'region1' }),
      );
      // The first two segments land, then the target answers 503 to everything.
      let puts = 0;
      const counting: StorageDriver = Object.create(target);
      counting.put = async (key, body, opts) => {
        const result = await target.put(key, body, opts);
        if (++puts === 2) faulty.mode = '503';
        await faulty.dropAll();
        return result;
      };
      const handler = copyBackupTask({ db, catalog, target: counting, parallelism: 1, segmentRetries: 1 });
      const err = await handler
        .run({ backupId: id }, { jobId: 0, attempt: 1, finalAttempt: true, signal: new AbortController().signal })
        .then(
          () => undefined,
          (e: Error) => e,
        );
      assert.ok(err, 'the copy must fail');
      assert.match(err.message, /503/);
      // The store is back; the give-up removes what was written.
      faulty.mode = 'pass';
      await handler.onGiveUp!({ backupId: id }, err);
      const row = await db.kysely.selectFrom('backups').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      assert.equal(row.status, 'FAILED');
      assert.match(row.fail_reason!, /segment 3 of 4 .*503/);
      assert.deepEqual(await keysWith(r2.tern.container.storage, id), []);
    } finally {
      await target.close();
      await faulty.close();
    }
  });

  it('DELETE mid-copy cancels: 202, gone, job cancelled, no segment left in region2', async () => {
    const a = await seedBackup(r1, { segments: 8, segmentSize: 256 * 1024 });
    const location = a.location.replace(swiftProxyUrl(1), proxy.url);
    proxy.downDelayMs = 40;
    try {
      const res = await slow.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'slow', location } } });
      assert.equal(res.status, 202, res.text);
      const id = res.body.backup.id;
      const storage = slow.tern.container.storage;
      // Wait until at least one segment is in region2 and progress shows.
      for (let i = 0; i < 400 && (await keysWith(storage, id)).length === 0; i++) await sleep(25);
      const building = (await slow.call('GET', `/v1.0/p1/backups/${id}`)).body.backup;
      assert.equal(building.status, 'BUILDING');
      assert.ok(
        building.progress.done_bytes > 0 && building.progress.total_bytes === a.bytes.length,
        JSON.stringify(building.progress),
      );
      assert.ok((await keysWith(storage, id)).length > 0);
      const del = await slow.call('DELETE', `/v1.0/p1/backups/${id}`);
      assert.equal(del.status, 202, del.text);
      assert.equal((await slow.call('GET', `/v1.0/p1/backups/${id}`)).status, 404);
      const { db } = slow.tern.container;
      const jobs = () => db.kysely.selectFrom('jobs').selectAll().where('resource_id', '=', id).orderBy('id').execute();
      for (let i = 0; i < 400 && (await jobs()).some((j) => j.kind === COPY_JOB && j.status === 'running'); i++) await sleep(25);
      const [copy, sweep, ...more] = await jobs();
      assert.equal(copy.kind, COPY_JOB);
      assert.equal(copy.status, 'cancelled');
      // A second cleanup a minute later, for an upload Swift may store after the first one.
      assert.deepEqual([sweep?.kind, sweep?.status, more.length], [SWEEP_JOB, 'queued', 0]);
      assert.deepEqual(await keysWith(storage, id), []);
    } finally {
      proxy.downDelayMs = 0;
    }
  });
});
