import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { insertBackup, newBackupRow } from '../../src/db/repos/backups.ts';
import { activeJobFor, enqueue } from '../../src/jobs/queue.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { createPgDatabase, dropPgDatabase } from '../helpers/db.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';

// The Trove v1.0 backups API end to end over real HTTP, on both metadata databases, with a second
// region's storage folder as the copy source.

const MARIADB = { datastore: 'mariadb', 'datastore-version': '10.11' };

for (const dbKind of ['sqlite', 'postgres'] as const) {
  describe(`backups API on ${dbKind}`, () => {
    let region: TestRegion;
    let sourceRoot: string;
    let source: FsDriver;
    let pgUrl: string | undefined;

    before(async () => {
      sourceRoot = mkdtempSync(join(tmpdir(), 'tern-region1-'));
      source = new FsDriver({ root: sourceRoot, container: 'database_backups' });
      if (dbKind === 'postgres') pgUrl = await createPgDatabase();
      region = await startTestRegion({ name: 'region2', dbUrl: pgUrl, catalog: [{ region: 'region1', root: sourceRoot }] });
    });
    after(async () => {
      await region.stop();
      if (pgUrl) await dropPgDatabase(pgUrl);
      rmSync(sourceRoot, { recursive: true, force: true });
    });

    async function seedSource(bytes: Buffer, metadata: Record<string, string> = MARIADB): Promise<string> {
      const key = `${crypto.randomUUID()}.xbstream.gz.enc`;
      // Tern writes the owning project on every object; the copy checks it before any byte moves.
      await source.put(key, Readable.from([bytes]), { metadata: { 'project-id': 'p1', ...metadata } });
      return source.locationOf(key);
    }

    async function waitForStatus(id: string, statuses: string[], project = 'p1'): Promise<any> {
      const token = project === 'p1' ? region.tokens.member : region.tokens.other;
      const deadline = Date.now() + 20_000;
      for (;;) {
        const res = await region.call('GET', `/v1.0/${project}/backups/${id}`, { token });
        if (statuses.includes(res.body?.backup?.status)) return res.body.backup;
        if (Date.now() > deadline) throw new Error(`backup ${id} still ${res.body?.backup?.status}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    async function readAll(driver: FsDriver, key: string): Promise<Buffer> {
      const chunks: Buffer[] = [];
      for await (const c of await driver.get(key)) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    }

    function targetDriver(): FsDriver {
      return new FsDriver({ root: join(region.dir, 'objects'), container: 'database_backups' });
    }

    async function backupCount(): Promise<number> {
      const res = await region.call('GET', '/v1.0/admin/backups?all_projects=1&limit=1000', { token: region.tokens.admin });
      return res.body.backups.length;
    }

    describe('auth', () => {
      it('refuses a missing token with 401 unauthorized', async () => {
        const res = await region.call('GET', '/v1.0/p1/backups', { token: null });
        assert.equal(res.status, 401);
        assert.equal(res.body.unauthorized.code, 401);
        assert.match(res.body.unauthorized.message, /X-Auth-Token/);
      });
      it('refuses a wrong token with 401', async () => {
        const res = await region.call('GET', '/v1.0/p1/backups', { token: 'not-a-real-token' });
        assert.equal(res.status, 401);
        assert.ok(res.body.unauthorized);
      });
      it("refuses another project's path with 403, unless admin", async () => {
        const res = await region.call('GET', '/v1.0/p2/backups');
        assert.equal(res.status, 403);
        assert.ok(res.body.forbidden);
        const admin = await region.call('GET', '/v1.0/p2/backups', { token: region.tokens.admin });
        assert.equal(admin.status, 200);
      });
      it('leaves /healthz, /metrics and /openapi.json open', async () => {
        assert.deepEqual((await region.call('GET', '/healthz', { token: null })).body, { status: 'ok' });
        const metrics = await region.call('GET', '/metrics', { token: null });
        assert.match(metrics.text, /tern_http_requests_total/);
        const openapi = await region.call('GET', '/openapi.json', { token: null });
        assert.equal(openapi.body.openapi.startsWith('3.'), true);
        assert.ok(openapi.body.paths['/v1.0/{project_id}/backups']);
      });
      it('never echoes the token in a fault', async () => {
        const res = await region.call('GET', '/v1.0/p2/backups', { token: region.tokens.member });
        assert.ok(!res.text.includes(region.tokens.member));
      });
    });

    describe('datastores', () => {
      it('lists the configured datastores and versions', async () => {
        const res = await region.call('GET', '/v1.0/p1/datastores');
        assert.equal(res.status, 200);
        const names = res.body.datastores.map((d: any) => d.name).sort();
        assert.deepEqual(names, ['mariadb', 'postgresql']);
        const maria = res.body.datastores.find((d: any) => d.name === 'mariadb');
        assert.equal(maria.versions[0].name, '10.11');
        assert.equal(maria.default_version, maria.versions[0].id);
        const show = await region.call('GET', `/v1.0/p1/datastores/${maria.id}/versions`);
        assert.equal(show.body.versions[0].id, maria.versions[0].id);
        const byId = await region.call('GET', `/v1.0/p1/datastores/versions/${maria.versions[0].id}`);
        assert.equal(byId.body.version.name, '10.11');
        const missing = await region.call('GET', '/v1.0/p1/datastores/oracle');
        assert.equal(missing.status, 404);
        assert.ok(missing.body.itemNotFound);
      });
    });

    describe('create: bad input leaves nothing behind', () => {
      const cases: Array<[string, { raw?: string; body?: unknown; headers?: Record<string, string> }, number, string, RegExp]> = [
        ['malformed JSON', { raw: '{"backup": {' }, 400, 'badRequest', /not valid JSON/],
        ['no backup object', { body: { name: 'x' } }, 400, 'badRequest', /backup/],
        ['missing name', { body: { backup: { location: 'file:///x' } } }, 400, 'badRequest', /name/],
        ['blank name', { body: { backup: { name: '   ', location: 'file:///x' } } }, 400, 'badRequest', /name/],
        ['over-long name', { body: { backup: { name: 'n'.repeat(256), location: 'file:///x' } } }, 400, 'badRequest', /name/],
        ['neither instance nor location', { body: { backup: { name: 'b' } } }, 400, 'badRequest', /exactly one/],
        [
          'both instance and location',
          { body: { backup: { name: 'b', instance: crypto.randomUUID(), location: 'file:///x' } } },
          400,
          'badRequest',
          /exactly one/,
        ],
        [
          'location outside the catalog',
          { body: { backup: { name: 'b', location: 'http://127.0.0.1:9/v1/AUTH_p1/database_backups/x.xbstream.gz' } } },
          400,
          'badRequest',
          /trust|catalog/,
        ],
        [
          'file location outside the catalog',
          { body: { backup: { name: 'b', location: 'file:///etc/passwd' } } },
          400,
          'badRequest',
          /trust|catalog/,
        ],
        [
          'instance form, unknown instance',
          { body: { backup: { name: 'b', instance: crypto.randomUUID() } } },
          404,
          'itemNotFound',
          /Instance .* could not be found/,
        ],
        [
          'body over 1 MiB',
          { body: { backup: { name: 'b', description: 'd'.repeat(1_100_000) } } },
          413,
          'overLimit',
          /too large/,
        ],
        [
          'wrong content type',
          { raw: 'name=b', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
          400,
          'badRequest',
          /application\/json/,
        ],
      ];
      for (const [name, request, status, fault, message] of cases) {
        it(`${name} -> ${status} ${fault}`, async () => {
          const before = await backupCount();
          const res = await region.call('POST', '/v1.0/p1/backups', request);
          assert.equal(res.status, status, res.text);
          assert.equal(res.body[fault].code, status);
          assert.match(res.body[fault].message, message);
          assert.equal(await backupCount(), before);
        });
      }

      it('a location to a missing object -> 404, no row', async () => {
        const before = await backupCount();
        const res = await region.call('POST', '/v1.0/p1/backups', {
          body: { backup: { name: 'b', location: source.locationOf('nope.xbstream.gz') } },
        });
        assert.equal(res.status, 404);
        assert.match(res.body.itemNotFound.message, /no backup object/);
        assert.equal(await backupCount(), before);
      });
      it('restore_from with an unknown datastore version -> 400', async () => {
        const location = await seedSource(randomBytes(100));
        const res = await region.call('POST', '/v1.0/p1/backups', {
          body: {
            backup: {
              name: 'b',
              restore_from: { remote_location: location, local_datastore_version_id: crypto.randomUUID(), size: 1 },
            },
          },
        });
        assert.equal(res.status, 400);
        assert.match(res.body.badRequest.message, /datastore version/);
      });
      it('a source with a datastore this region lacks -> 400', async () => {
        const location = await seedSource(randomBytes(100), { datastore: 'mariadb', 'datastore-version': '5.5' });
        const res = await region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'b', location } } });
        assert.equal(res.status, 400);
        assert.match(res.body.badRequest.message, /does not offer/);
      });
      it("another project's backup object -> 403", async () => {
        const location = await seedSource(randomBytes(100), { ...MARIADB, 'project-id': 'p2' });
        const res = await region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'b', location } } });
        assert.equal(res.status, 403);
        assert.match(res.body.forbidden.message, /another project/);
      });
    });

    describe('copy from a location', () => {
      it('copies the bytes and ends COMPLETED with size and checksum', async () => {
        const bytes = randomBytes(3 * 1024 * 1024 + 17);
        const location = await seedSource(bytes);
        const res = await region.call('POST', '/v1.0/p1/backups', {
          body: { backup: { name: 'copied', description: 'from region1', location, instance: null } },
        });
        assert.equal(res.status, 202, res.text);
        const created = res.body.backup;
        assert.equal(created.status, 'NEW');
        assert.equal(created.instance_id, null);
        assert.equal(created.name, 'copied');
        assert.match(created.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
        assert.deepEqual(Object.keys(created.datastore).sort(), ['type', 'version', 'version_id']);
        const done = await waitForStatus(created.id, ['COMPLETED', 'FAILED']);
        assert.equal(done.status, 'COMPLETED', done.fail_reason);
        assert.equal(done.checksum, createHash('md5').update(bytes).digest('hex'));
        assert.equal(done.size, bytes.length / 1024 ** 3);
        assert.equal(done.datastore.type, 'mariadb');
        assert.ok(done.locationRef.startsWith('file://'));
        assert.ok(done.locationRef.endsWith(`${created.id}.xbstream.gz.enc`));
        const target = targetDriver();
        const key = target.keyOf(done.locationRef)!;
        assert.ok((await readAll(target, key)).equals(bytes));
        assert.equal((await target.head(key))!.metadata.datastore, 'mariadb');
      });

      it("Trove's restore_from form also copies", async () => {
        const bytes = randomBytes(5000);
        const location = await seedSource(bytes, {});
        const versions = await region.call('GET', '/v1.0/p1/datastores/mariadb/versions');
        const res = await region.call('POST', '/v1.0/p1/backups', {
          body: {
            backup: {
              name: 'rf',
              restore_from: { remote_location: location, local_datastore_version_id: versions.body.versions[0].id, size: 0.1 },
            },
          },
        });
        assert.equal(res.status, 202, res.text);
        const done = await waitForStatus(res.body.backup.id, ['COMPLETED', 'FAILED']);
        assert.equal(done.status, 'COMPLETED', done.fail_reason);
        assert.equal(done.size_bytes, 5000);
      });

      it('a corrupted source ends FAILED with a reason and nothing left in storage', async () => {
        const bytes = randomBytes(200_000);
        const location = await seedSource(bytes);
        const key = source.keyOf(location)!;
        // Flip bytes on disk after the checksum was recorded: the copy must notice.
        const path = join(sourceRoot, 'database_backups', key);
        const corrupted = Buffer.from(bytes);
        corrupted[1000] ^= 0xff;
        writeFileSync(path, corrupted);
        const res = await region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'bad', location } } });
        assert.equal(res.status, 202);
        const failed = await waitForStatus(res.body.backup.id, ['COMPLETED', 'FAILED']);
        assert.equal(failed.status, 'FAILED');
        assert.match(failed.fail_reason, /checksum|md5|mismatch/i);
        const leftovers = readdirSync(join(region.dir, 'objects', 'database_backups')).filter((f) =>
          f.includes(res.body.backup.id),
        );
        assert.deepEqual(leftovers, []);
      });
    });

    describe('list, show, delete', () => {
      let ids: string[] = [];
      before(async () => {
        ids = [];
        for (let i = 0; i < 3; i++) {
          const location = await seedSource(randomBytes(1000), { ...MARIADB, 'project-id': 'p2' });
          const res = await region.call('POST', '/v1.0/p2/backups', {
            body: { backup: { name: `page-${i}`, location } },
            token: region.tokens.other,
          });
          ids.push(res.body.backup.id);
        }
        for (const id of ids) await waitForStatus(id, ['COMPLETED'], 'p2');
      });

      it('pages with limit and marker and a next link', async () => {
        const first = await region.call('GET', '/v1.0/p2/backups?limit=2', { token: region.tokens.other });
        assert.equal(first.status, 200);
        assert.deepEqual(
          first.body.backups.map((b: any) => b.id),
          ids.slice(0, 2),
        );
        const next = first.body.links.find((l: any) => l.rel === 'next');
        assert.ok(next.href.includes(`marker=${ids[1]}`));
        const second = await region.call('GET', new URL(next.href).pathname + new URL(next.href).search, {
          token: region.tokens.other,
        });
        assert.deepEqual(
          second.body.backups.map((b: any) => b.id),
          [ids[2]],
        );
        assert.deepEqual(second.body.links, []);
      });
      it('filters by datastore', async () => {
        const maria = await region.call('GET', '/v1.0/p2/backups?datastore=mariadb', { token: region.tokens.other });
        assert.equal(maria.body.backups.length, 3);
        const pg = await region.call('GET', '/v1.0/p2/backups?datastore=postgresql', { token: region.tokens.other });
        assert.equal(pg.body.backups.length, 0);
        const unknown = await region.call('GET', '/v1.0/p2/backups?datastore=oracle', { token: region.tokens.other });
        assert.equal(unknown.status, 400);
      });
      it('filters by instance_id', async () => {
        const res = await region.call('GET', `/v1.0/p2/backups?instance_id=${crypto.randomUUID()}`, {
          token: region.tokens.other,
        });
        assert.deepEqual(res.body.backups, []);
      });
      it('refuses a bad limit or marker with 400', async () => {
        for (const q of ['limit=0', 'limit=abc', 'limit=100000', 'marker=nope', `marker=${crypto.randomUUID()}`]) {
          const res = await region.call('GET', `/v1.0/p2/backups?${q}`, { token: region.tokens.other });
          assert.equal(res.status, 400, q);
          assert.ok(res.body.badRequest.message.length > 0);
        }
      });
      it('all_projects is admin-only', async () => {
        const member = await region.call('GET', '/v1.0/p2/backups?all_projects=1', { token: region.tokens.other });
        assert.equal(member.status, 403);
        const admin = await region.call('GET', '/v1.0/admin/backups?all_projects=1&limit=1000', { token: region.tokens.admin });
        const projects = new Set(admin.body.backups.map((b: any) => b.project_id));
        assert.ok(projects.has('p1') && projects.has('p2'));
      });
      it("shows another project's backup as not found, and non-UUID ids as not found", async () => {
        assert.equal((await region.call('GET', `/v1.0/p1/backups/${ids[0]}`)).status, 404);
        const bad = await region.call('GET', '/v1.0/p1/backups/not-a-uuid');
        assert.equal(bad.status, 404);
        assert.match(bad.body.itemNotFound.message, /not-a-uuid/);
        assert.equal((await region.call('DELETE', `/v1.0/p1/backups/${ids[0]}`)).status, 404);
      });
      it('lists an unknown instance as not found', async () => {
        const res = await region.call('GET', `/v1.0/p1/instances/${crypto.randomUUID()}/backups`);
        assert.equal(res.status, 404);
        assert.ok(res.body.itemNotFound);
      });
      it('deletes a completed backup: 202, gone from the API and from storage', async () => {
        const id = ids[2];
        const shown = await region.call('GET', `/v1.0/p2/backups/${id}`, { token: region.tokens.other });
        const target = targetDriver();
        const key = target.keyOf(shown.body.backup.locationRef)!;
        assert.ok(await target.head(key));
        const res = await region.call('DELETE', `/v1.0/p2/backups/${id}`, { token: region.tokens.other });
        assert.equal(res.status, 202);
        assert.equal(res.text, '');
        assert.equal((await region.call('GET', `/v1.0/p2/backups/${id}`, { token: region.tokens.other })).status, 404);
        const deadline = Date.now() + 10_000;
        while ((await target.head(key)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.equal(await target.head(key), null);
      });
    });
  });
}

describe('deleting a running backup', () => {
  let region: TestRegion;
  let sourceRoot: string;
  before(async () => {
    sourceRoot = mkdtempSync(join(tmpdir(), 'tern-region1-'));
    // No worker: the backup stays NEW, i.e. running.
    region = await startTestRegion({ catalog: [{ region: 'region1', root: sourceRoot }], worker: { enabled: false } });
  });
  after(async () => {
    await region.stop();
    rmSync(sourceRoot, { recursive: true, force: true });
  });
  it('cancels a copy that has not started: 202, gone, its job cancelled, nothing stored', async () => {
    const source = new FsDriver({ root: sourceRoot, container: 'database_backups' });
    await source.put('a.xbstream.gz', Readable.from([randomBytes(10)]), { metadata: { ...MARIADB, 'project-id': 'p1' } });
    const created = await region.call('POST', '/v1.0/p1/backups', {
      body: { backup: { name: 'r', location: source.locationOf('a.xbstream.gz') } },
    });
    assert.equal(created.status, 202);
    const id = created.body.backup.id;
    const res = await region.call('DELETE', `/v1.0/p1/backups/${id}`);
    assert.equal(res.status, 202);
    assert.equal((await region.call('GET', `/v1.0/p1/backups/${id}`)).status, 404);
    const job = await activeJobFor(region.tern.container.db.kysely, id);
    assert.equal(job, undefined, 'no job left to run');
    const objects = join(region.dir, 'objects');
    const stored = existsSync(objects) ? readdirSync(objects, { recursive: true }) : [];
    assert.deepEqual(
      stored.filter((f) => String(f).includes(id)),
      [],
    );
  });
  it('answers 422 unprocessableEntity for a running backup that cannot be cancelled (of an instance)', async () => {
    const { db } = region.tern.container;
    const id = crypto.randomUUID();
    await db.kysely.transaction().execute(async (trx) => {
      await insertBackup(
        trx,
        newBackupRow({ id, project_id: 'p1', name: 'i', instance_id: crypto.randomUUID(), status: 'BUILDING' }),
      );
      await enqueue(trx, { kind: 'backup.create', payload: { backupId: id }, resourceId: id });
    });
    const res = await region.call('DELETE', `/v1.0/p1/backups/${id}`);
    assert.equal(res.status, 422);
    assert.match(res.body.unprocessableEntity.message, /BUILDING/);
    assert.equal((await region.call('GET', `/v1.0/p1/backups/${id}`)).body.backup.status, 'BUILDING');
  });
});
