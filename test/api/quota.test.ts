import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupQuota, countBackups } from '../../src/backups/quota.ts';
import { connectDb, nowIso } from '../../src/db/connect.ts';
import { insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import { findDatastoreVersionByName } from '../../src/db/repos/datastores.ts';
import { findInstance, insertInstance } from '../../src/db/repos/instances.ts';
import { OverLimit } from '../../src/errors.ts';
import { type SeededBackup, seedBackup } from '../copy/regions.ts';
import { createPgDatabase, dropPgDatabase } from '../helpers/db.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';

// Trove's per-project backup quota over real HTTP between two real regions (region1 holds the
// sources, region2 copies them), region2's metadata on SQLite and on PostgreSQL. Region2 runs no
// worker, so every accepted create leaves exactly its row and its queued job to count.

const QUOTA = 10;
const OVER = /^Quota exceeded for resources: \['backups'\]\./;

for (const dbKind of ['sqlite', 'postgres'] as const) {
  describe(`backup quota on ${dbKind}`, () => {
    let pgUrl: string | undefined;
    let r1: TestRegion;
    let r2: TestRegion;
    let sources: SeededBackup[];

    before(async () => {
      r1 = await startTestRegion({ name: 'region1' });
      if (dbKind === 'postgres') pgUrl = await createPgDatabase();
      r2 = await startTestRegion({
        name: 'region2',
        dbUrl: pgUrl,
        tokens: r1.tokens,
        catalog: [{ region: 'region1', root: join(r1.dir, 'objects'), apiUrl: r1.url }],
        worker: { enabled: false },
        extra: { quotas: { backupsPerProject: QUOTA } },
      });
      sources = [];
      for (let i = 0; i < 3; i++) sources.push(await seedBackup(r1, { segments: 1, segmentSize: 1024 }));
    });
    after(async () => {
      for (const r of [r2, r1]) await r?.stop();
      if (pgUrl) await dropPgDatabase(pgUrl);
    });
    beforeEach(async () => {
      const db = r2.tern.container.db.kysely;
      await db.deleteFrom('jobs').execute();
      await db.deleteFrom('backups').execute();
    });

    const db = () => r2.tern.container.db.kysely;

    /** The three copy forms in turn, each naming one of region1's backups. */
    function copyBody(i: number, project = 'p1'): Record<string, unknown> {
      const s = sources[i % sources.length];
      const forms = [
        { location: s.location },
        { restore_from: { remote_location: s.location, local_datastore_version_id: mariadbVersion, size: 0.1 } },
        { source: { region: 'region1', id: s.id } },
      ];
      return { backup: { name: `copy-${i}-${project}`, ...forms[i % forms.length] } };
    }
    let mariadbVersion = '';
    before(async () => {
      mariadbVersion = (await findDatastoreVersionByName(db(), 'mariadb', '10.11'))!.id;
    });

    async function fill(n: number): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const res = await r2.call('POST', '/v1.0/p1/backups', { body: copyBody(i) });
        assert.equal(res.status, 202, res.text);
        ids.push(res.body.backup.id);
      }
      return ids;
    }

    async function jobsOf(): Promise<Array<string | null>> {
      return (await db().selectFrom('jobs').select('resource_id').execute()).map((j) => j.resource_id);
    }

    it(`${QUOTA * 2} concurrent creates with a quota of ${QUOTA}: exactly ${QUOTA} accepted, the rest 413 overLimit, no job for them`, async () => {
      const results = await Promise.all(
        Array.from({ length: QUOTA * 2 }, (_, i) => r2.call('POST', '/v1.0/p1/backups', { body: copyBody(i) })),
      );
      const accepted = results.filter((r) => r.status === 202);
      const refused = results.filter((r) => r.status !== 202);
      assert.equal(accepted.length, QUOTA, results.map((r) => `${r.status} ${r.text.slice(0, 200)}`).join('\n'));
      assert.equal(refused.length, QUOTA);
      for (const r of refused) {
        assert.equal(r.status, 413, r.text);
        assert.deepEqual(Object.keys(r.body), ['overLimit']);
        assert.equal(r.body.overLimit.code, 413);
        assert.match(r.body.overLimit.message, OVER);
      }
      assert.equal(await countBackups(db(), 'p1'), QUOTA);
      const acceptedIds = accepted.map((r) => r.body.backup.id).sort();
      assert.deepEqual((await jobsOf()).sort(), acceptedIds, 'one job per accepted backup, none for the refused');
    });

    it('every form is refused at the quota, and a refusal changes nothing (instance stays ACTIVE)', async () => {
      await fill(QUOTA);
      const instance = await seedInstance();
      for (const body of [copyBody(0), copyBody(1), copyBody(2), { backup: { name: 'of-instance', instance: instance.id } }]) {
        const res = await r2.call('POST', '/v1.0/p1/backups', { body });
        assert.equal(res.status, 413, `${JSON.stringify(body)}: ${res.text}`);
        assert.match(res.body.overLimit.message, OVER);
        assert.match(res.body.overLimit.message, new RegExp(`holds ${QUOTA} of its ${QUOTA} backups`));
      }
      assert.equal((await findInstance(db(), instance.id))?.status, 'ACTIVE');
      assert.equal(await countBackups(db(), 'p1'), QUOTA);
      assert.equal((await jobsOf()).length, QUOTA);
    });

    it('a backup of an instance is counted like a copy', async () => {
      await fill(QUOTA - 1);
      const instance = await seedInstance();
      const ok = await r2.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'last', instance: instance.id } } });
      assert.equal(ok.status, 202, ok.text);
      const over = await r2.call('POST', '/v1.0/p1/backups', { body: copyBody(0) });
      assert.equal(over.status, 413, over.text);
    });

    it('deleted backups free their place; FAILED ones keep it; other projects have their own quota', async () => {
      const ids = await fill(QUOTA);
      // A copy that failed (as its task leaves it) still counts, as in Trove.
      await db()
        .updateTable('backups')
        .set({ status: 'FAILED', fail_reason: 'source went away' })
        .where('id', '=', ids[0])
        .execute();
      assert.equal((await r2.call('POST', '/v1.0/p1/backups', { body: copyBody(0) })).status, 413);
      const del = await r2.call('DELETE', `/v1.0/p1/backups/${ids[0]}`);
      assert.equal(del.status, 202, del.text);
      const again = await r2.call('POST', '/v1.0/p1/backups', { body: copyBody(1) });
      assert.equal(again.status, 202, again.text);
      assert.equal((await r2.call('POST', '/v1.0/p1/backups', { body: copyBody(2) })).status, 413);
      // p2's own backup in region1, copied into region2 by p2: p1 being full is no concern of p2's.
      const p2Source = await seedBackup(r1, { segments: 1, segmentSize: 1024, project: 'p2' });
      const p2 = await r2.call('POST', '/v1.0/p2/backups', {
        body: { backup: { name: 'p2-copy', location: p2Source.location } },
        token: r2.tokens.other,
      });
      assert.equal(p2.status, 202, p2.text);
    });

    it('a copy that brings its parent along needs room for both', async () => {
      const parent = await seedBackup(r1, { segments: 1, segmentSize: 1024 });
      const child = await seedBackup(r1, { segments: 1, segmentSize: 1024, parent });
      const ids = await fill(QUOTA - 1);
      const res = await r2.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'chain', location: child.location } } });
      assert.equal(res.status, 413, res.text);
      assert.match(res.body.overLimit.message, /asked for 2 more/);
      assert.equal(await countBackups(db(), 'p1'), QUOTA - 1);
      assert.equal((await r2.call('DELETE', `/v1.0/p1/backups/${ids[0]}`)).status, 202);
      const fits = await r2.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'chain', location: child.location } } });
      assert.equal(fits.status, 202, fits.text);
      assert.equal(await countBackups(db(), 'p1'), QUOTA);
    });

    async function seedInstance() {
      const now = nowIso();
      const row = {
        id: crypto.randomUUID(),
        project_id: 'p1',
        name: 'seeded',
        status: 'ACTIVE',
        datastore_version_id: mariadbVersion,
        volume_size: 1,
        host: '127.0.0.1',
        port: 1, // nothing listens there; region2 runs no worker, so no job ever uses it
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
      };
      await insertInstance(db(), row);
      return row;
    }
  });
}

describe('BackupQuota.reserve on postgres', () => {
  it('transactions that reserve and insert side by side never pass the quota', async () => {
    const url = await createPgDatabase();
    const pg = await connectDb(url);
    try {
      const quota = new BackupQuota(pg, 5);
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          pg.kysely.transaction().execute(async (trx) => {
            await quota.reserve(trx, 'p1', 1);
            // The window in which a count without the lock would let every other transaction through.
            await sleep(20);
            await insertBackup(trx, newBackupRow({ id: crypto.randomUUID(), project_id: 'p1', name: `b${i}` }));
          }),
        ),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
      for (const r of results.filter((r) => r.status === 'rejected')) assert.ok(r.reason instanceof OverLimit, String(r.reason));
      assert.equal(await countBackups(pg.kysely, 'p1'), 5);
      // Another project's transactions take another lock and count only their own rows.
      await pg.kysely.transaction().execute(async (trx) => {
        await quota.reserve(trx, 'p2', 5);
      });
    } finally {
      await pg.close();
      await dropPgDatabase(url);
    }
  });
});
