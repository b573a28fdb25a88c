import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { segmentKey } from '../../src/storage/keys.ts';
import { tern } from '../cli/run.ts';
import { createPgDatabase, dropPgDatabase } from '../helpers/db.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';
import { KEY_A, KEY_B, keysWith, md5, readAll, rowCount, seedBackup, waitForStatus } from './regions.ts';

// The three create forms between two real Tern regions on fs storage (real HTTP; region2 on SQLite and PostgreSQL):
// region1 holds backups, region2 copies them. Chains, re-wrapped passphrases, and refusals that
// must leave no row, no job and no object behind.

for (const dbKind of ['sqlite', 'postgres'] as const)
  describe(`copy forms between two fs regions (region2 on ${dbKind})`, () => {
    let pgUrl: string | undefined;
    let r1: TestRegion;
    let r2: TestRegion;
    let r2NoKey: TestRegion;
    let down: TestRegion;

    before(async () => {
      r1 = await startTestRegion({ name: 'region1', keySecret: KEY_A });
      const tokens = r1.tokens;
      const source = { region: 'region1', root: join(r1.dir, 'objects'), apiUrl: r1.url };
      if (dbKind === 'postgres') pgUrl = await createPgDatabase();
      r2 = await startTestRegion({
        name: 'region2',
        dbUrl: pgUrl,
        tokens,
        keySecret: KEY_B,
        catalog: [{ ...source, keys: [{ secret: KEY_A }] }],
      });
      r2NoKey = await startTestRegion({ name: 'region2', tokens, keySecret: KEY_B, catalog: [source] });
      // A catalog entry whose API is down: a port that was just free.
      const probe = createServer().listen(0, '127.0.0.1');
      await new Promise((done) => probe.once('listening', done));
      const port = (probe.address() as AddressInfo).port;
      await new Promise((done) => probe.close(done));
      down = await startTestRegion({ name: 'region2', tokens, catalog: [{ ...source, apiUrl: `http://127.0.0.1:${port}` }] });
    });
    after(async () => {
      for (const r of [down, r2NoKey, r2, r1]) await r?.stop();
      if (pgUrl) await dropPgDatabase(pgUrl);
    });

    async function post(region: TestRegion, backup: Record<string, unknown>, token?: string) {
      return region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'copy', ...backup } }, token });
    }

    it('source form: 202 NEW, then COMPLETED with the same bytes and checksum', async () => {
      const a = await seedBackup(r1, { segments: 4 });
      const res = await post(r2, { source: { region: 'region1', id: a.id } });
      assert.equal(res.status, 202, res.text);
      assert.equal(res.body.backup.status, 'NEW');
      assert.equal(res.body.backup.instance_id, null);
      const done = await waitForStatus(r2, res.body.backup.id, ['COMPLETED', 'FAILED']);
      assert.equal(done.status, 'COMPLETED', done.fail_reason);
      assert.equal(done.checksum, a.checksum);
      assert.equal(done.source.id, a.id);
      assert.equal(done.source.region, 'region1');
      const { storage } = r2.tern.container;
      const key = storage.keyOf(done.locationRef)!;
      assert.equal(md5(await readAll(storage, key)), md5(a.bytes));
    });

    it('an incremental chain: parents copied first, Parent-Location pointing at region2, reused next time', async () => {
      const full = await seedBackup(r1);
      const inc1 = await seedBackup(r1, { parent: full });
      const inc2 = await seedBackup(r1, { parent: inc1 });
      const before = await rowCount(r2);
      const res = await post(r2, { source: { region: 'region1', id: inc2.id } });
      assert.equal(res.status, 202, res.text);
      assert.equal(await rowCount(r2), before + 3, 'one row per backup of the chain');
      const leaf = await waitForStatus(r2, res.body.backup.id, ['COMPLETED', 'FAILED']);
      assert.equal(leaf.status, 'COMPLETED', leaf.fail_reason);
      const mid = await waitForStatus(r2, leaf.parent_id, ['COMPLETED']);
      const root = await waitForStatus(r2, mid.parent_id, ['COMPLETED']);
      assert.equal(root.parent_id, null);
      assert.deepEqual([root.checksum, mid.checksum, leaf.checksum], [full.checksum, inc1.checksum, inc2.checksum]);
      const { storage } = r2.tern.container;
      const leafHead = await storage.head(storage.keyOf(leaf.locationRef)!);
      assert.equal(leafHead!.metadata['parent-location'], mid.locationRef);
      assert.equal(leafHead!.metadata['parent-checksum'], mid.checksum);
      const midHead = await storage.head(storage.keyOf(mid.locationRef)!);
      assert.equal(midHead!.metadata['parent-location'], root.locationRef);
      const rootHead = await storage.head(storage.keyOf(root.locationRef)!);
      assert.equal(rootHead!.metadata['parent-location'], undefined);

      // A further incremental reuses region2's copies of its parents.
      const inc3 = await seedBackup(r1, { parent: inc2 });
      const count = await rowCount(r2);
      const again = await post(r2, { source: { region: 'region1', id: inc3.id } });
      assert.equal(again.status, 202, again.text);
      assert.equal(await rowCount(r2), count + 1);
      const top = await waitForStatus(r2, again.body.backup.id, ['COMPLETED', 'FAILED']);
      assert.equal(top.status, 'COMPLETED', top.fail_reason);
      assert.equal(top.parent_id, leaf.id);
    });

    it('location form follows the parent-location metadata of an incremental', async () => {
      const full = await seedBackup(r1);
      const inc = await seedBackup(r1, { parent: full });
      const res = await post(r2, { location: inc.location });
      assert.equal(res.status, 202, res.text);
      const leaf = await waitForStatus(r2, res.body.backup.id, ['COMPLETED', 'FAILED']);
      assert.equal(leaf.status, 'COMPLETED', leaf.fail_reason);
      const parent = await waitForStatus(r2, leaf.parent_id, ['COMPLETED']);
      assert.equal(parent.checksum, full.checksum);
    });

    it('encrypted: region1 shows the envelope only to the owning project; region2 re-wraps it under its key', async () => {
      const a = await seedBackup(r1, { encrypted: true });
      const own = await r1.call('GET', `/v1.0/p1/backups/${a.id}`);
      assert.ok(own.body.backup.wrapped_passphrase);
      assert.ok(!own.text.includes(a.passphrase!), 'never the plain passphrase');
      const admin = await r1.call('GET', `/v1.0/p1/backups/${a.id}`, { token: r1.tokens.admin });
      assert.equal(admin.status, 200);
      assert.equal(admin.body.backup.wrapped_passphrase, undefined);
      const listed = await r1.call('GET', '/v1.0/p1/backups?limit=1000');
      assert.ok(!listed.text.includes('wrapped_passphrase'));

      const res = await post(r2, { source: { region: 'region1', id: a.id } });
      assert.equal(res.status, 202, res.text);
      assert.ok(!res.text.includes(a.passphrase!));
      const done = await waitForStatus(r2, res.body.backup.id, ['COMPLETED', 'FAILED']);
      assert.equal(done.status, 'COMPLETED', done.fail_reason);
      const { keyring } = r2.tern.container;
      assert.equal(done.encryption_key_id, keyring.activeKeyId);
      assert.notEqual(done.encryption_key_id, own.body.backup.encryption_key_id);
      assert.equal(keyring.unwrap({ keyId: done.encryption_key_id, wrapped: done.wrapped_passphrase }), a.passphrase);
    });

    it('a backup region2 cannot unwrap is refused at create (400), nothing made', async () => {
      const a = await seedBackup(r1, { encrypted: true });
      const before = await rowCount(r2NoKey);
      const res = await post(r2NoKey, { source: { region: 'region1', id: a.id } });
      assert.equal(res.status, 400, res.text);
      assert.match(res.body.badRequest.message, /key .* does not hold/);
      assert.equal(await rowCount(r2NoKey), before);
    });

    describe('refusals leave no row and no object', () => {
      const cases: Array<[string, () => Promise<Record<string, unknown>>, number, RegExp]> = [
        [
          'location outside the catalog',
          async () => ({ location: 'http://127.0.0.1:9/v1/AUTH_p1/database_backups/x.xbstream.gz' }),
          400,
          /catalog/,
        ],
        [
          'location with user-info',
          async () => ({ location: (await seedBackup(r1)).location.replace('file://', 'file://user:pw@') }),
          400,
          /credentials/,
        ],
        [
          "another project's object",
          async () => ({ location: (await seedBackup(r1, { project: 'p2' })).location }),
          403,
          /another project/,
        ],
        [
          'a missing object',
          async () => ({ location: (await seedBackup(r1)).location.replace(/[0-9a-f]{8}-/, '00000000-') }),
          404,
          /no backup object/,
        ],
        [
          'an incomplete object (a segment gone)',
          async () => {
            const a = await seedBackup(r1);
            await r1.tern.container.storage.delete(segmentKey(a.id, 2));
            return { location: a.location };
          },
          400,
          /incomplete/,
        ],
        [
          'restore_from with an unknown local_datastore_version_id',
          async () => ({
            restore_from: {
              remote_location: (await seedBackup(r1)).location,
              local_datastore_version_id: crypto.randomUUID(),
              size: 9,
            },
          }),
          400,
          /does not exist/,
        ],
        [
          'restore_from naming another datastore than the source',
          async () => {
            const ds = await r2.call('GET', '/v1.0/p1/datastores');
            const pg = ds.body.datastores.find((d: any) => d.name === 'postgresql').versions[0].id;
            return { restore_from: { remote_location: (await seedBackup(r1)).location, local_datastore_version_id: pg } };
          },
          400,
          /mariadb backup/,
        ],
        ['source: unknown region', async () => ({ source: { region: 'nowhere', id: crypto.randomUUID() } }), 400, /catalog/],
        [
          'source: unknown backup',
          async () => ({ source: { region: 'region1', id: crypto.randomUUID() } }),
          404,
          /not found in region region1/,
        ],
        [
          "source: another project's backup",
          async () => ({ source: { region: 'region1', id: (await seedBackup(r1, { project: 'p2' })).id } }),
          404,
          /not found/,
        ],
      ];
      for (const [name, body, status, message] of cases) {
        it(`${name} -> ${status}`, async () => {
          const request = await body();
          const before = await rowCount(r2);
          const stored = (await keysWith(r2.tern.container.storage, '')).length;
          const res = await post(r2, request);
          assert.equal(res.status, status, res.text);
          const fault = Object.values(res.body)[0] as { message: string };
          assert.match(fault.message, message);
          assert.ok(!res.text.includes('pw@'), 'no credentials echoed');
          assert.equal(await rowCount(r2), before);
          assert.equal((await keysWith(r2.tern.container.storage, '')).length, stored);
        });
      }

      it('source region API down -> 503, nothing made', async () => {
        const a = await seedBackup(r1);
        const before = await rowCount(down);
        const res = await post(down, { source: { region: 'region1', id: a.id } });
        assert.equal(res.status, 503, res.text);
        assert.match(res.body.serviceUnavailable.message, /region1 did not answer/);
        assert.ok(!res.text.includes(r1.tokens.member));
        assert.equal(await rowCount(down), before);
      });
    });

    it('two identical requests at once: two independent COMPLETED backups, nothing else stored', async () => {
      const a = await seedBackup(r1, { segments: 5 });
      const [x, y] = await Promise.all([
        post(r2, { source: { region: 'region1', id: a.id } }),
        post(r2, { source: { region: 'region1', id: a.id } }),
      ]);
      assert.equal(x.status, 202);
      assert.equal(y.status, 202);
      assert.notEqual(x.body.backup.id, y.body.backup.id);
      for (const res of [x, y]) {
        const done = await waitForStatus(r2, res.body.backup.id, ['COMPLETED', 'FAILED']);
        assert.equal(done.status, 'COMPLETED', done.fail_reason);
        assert.equal(done.checksum, a.checksum);
        const { storage } = r2.tern.container;
        // The manifest and its 5 segments, under this backup's id only.
        assert.equal((await keysWith(storage, res.body.backup.id)).length, 6);
      }
    });

    it('CLI: tern backup copy <id> --from region1 --wait against the real servers', async () => {
      const a = await seedBackup(r1, { segments: 3 });
      const env = { TERN_TOKEN: r1.tokens.member, TERN_PROJECT: 'p1', TERN_URL: r2.url };
      const ok = await tern(['backup', 'copy', a.id, '--from', 'region1', '--wait'], { env });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(`COMPLETED \\(.* GB, checksum ${a.checksum}\\)`));
      assert.ok(!ok.stdout.includes(r1.tokens.member) && !ok.stderr.includes(r1.tokens.member));
      const missing = await tern(['backup', 'copy', crypto.randomUUID(), '--from', 'region1', '--wait'], { env });
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /not found in region region1/);
      const json = await tern(
        ['backup', 'copy', a.id, '--from', 'region1', '--to-url', r2.url, '--url', 'http://127.0.0.1:1', '--json'],
        {
          env,
        },
      );
      assert.equal(json.code, 0, json.stderr);
      const created = JSON.parse(json.stdout).backup;
      assert.equal(created.status, 'NEW');
      assert.equal((await waitForStatus(r2, created.id, ['COMPLETED', 'FAILED'])).status, 'COMPLETED');
    });
  });
