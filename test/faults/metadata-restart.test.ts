import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { adopt, type ManagedServer, startPostgres } from '../../src/instances/provisioner.ts';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { type ServedRegion, serveRegion } from '../helpers/serve.ts';
import { reportFault } from './helpers.ts';

// The PostgreSQL metadata server of a region is stopped in the middle of a copy and started again
// a few seconds later (a private server, so other tests keep theirs). The copy must end
// COMPLETED with the source's bytes, its job finished once, and nothing orphaned.

const MiB = 1024 * 1024;
const SEGMENTS = 60;
const token = randomBytes(16).toString('hex');

describe('fault: the metadata PostgreSQL restarts mid-copy', () => {
  let dir: string;
  let pg: ManagedServer | undefined;
  let region2: ServedRegion | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tern-fault-pg-'));
    chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user when the tests run as root
  });

  after(async () => {
    await region2?.stop();
    await pg?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the copy survives the outage, verified, with no leftovers', { timeout: 180_000 }, async (t) => {
    const password = randomBytes(12).toString('hex');
    pg = await startPostgres({ dataDir: join(dir, 'pg'), rootPassword: password, extraArgs: ['-c', 'fsync=off'] });
    const root1 = join(dir, 'region1', 'objects');
    const source = new FsDriver({ root: root1, container: 'database_backups' });
    const id = randomUUID();
    const whole = createHash('md5');
    const segments = [];
    for (let i = 0; i < SEGMENTS; i++) {
      const bytes = randomBytes(4 * MiB);
      whole.update(bytes);
      const key = `${id}_${String(i).padStart(8, '0')}`;
      segments.push({ key, size: bytes.length, etag: (await source.put(key, Readable.from([bytes]))).etag });
    }
    const key = `${id}.xbstream.gz`;
    const manifest = await source.putManifest(key, segments, {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });

    mkdirSync(join(dir, 'region2'));
    region2 = await serveRegion(join(dir, 'region2'), {
      region: 'region2',
      database: { url: `postgres://postgres:${password}@127.0.0.1:${pg.port}/postgres` },
      storage: { driver: 'fs', root: join(dir, 'region2', 'objects') },
      auth: { tokens: [{ token, project: 'p1', roles: ['member'] }] },
      catalog: [{ region: 'region1', storage: { driver: 'fs', root: root1 } }],
      copy: { parallelism: 2 },
      worker: { pollMs: 50, leaseSeconds: 3, heartbeatSeconds: 0.5, backoffBaseMs: 200, backoffMaxMs: 2000, maxAttempts: 10 },
    });
    const api = async (path: string, body?: unknown) => {
      const res = await fetch(`${region2!.url}/v1.0/p1${path}`, {
        method: body ? 'POST' : 'GET',
        headers: { 'x-auth-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      }).catch((err) => {
        // The region's process is gone: what it said last is the diagnosis.
        throw new Error(`region2 did not answer ${path}: ${err.cause ?? err}\n${region2!.stderr().slice(-4000)}`);
      });
      return { status: res.status, body: (await res.json().catch(() => null)) as any };
    };
    const created = await api('/backups', { backup: { name: 'outage', location: source.locationOf(key) } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const backupId = created.body.backup.id;
    let percent = 0;
    for (let i = 0; i < 2000 && percent < 10; i++) {
      percent = (await api(`/backups/${backupId}`)).body.backup.progress?.percent ?? 0;
      await new Promise((r) => setTimeout(r, 5));
    }

    await pg.stop();
    const during = await api(`/backups/${backupId}`);
    assert.ok(during.status >= 500 && during.status < 600, `the API says it cannot answer now: ${during.status}`);
    assert.ok(!JSON.stringify(during.body).includes(password), 'the database password is not in the fault');
    await new Promise((r) => setTimeout(r, 3000));
    pg = await adopt(join(dir, 'pg'));

    let backup: any;
    for (let i = 0; i < 1200; i++) {
      const r = await api(`/backups/${backupId}`);
      backup = r.body?.backup;
      if (backup && ['COMPLETED', 'FAILED'].includes(backup.status)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const target = new FsDriver({ root: join(dir, 'region2', 'objects'), container: 'database_backups' });
    const copyKey = backup?.status === 'COMPLETED' ? target.keyOf(backup.locationRef) : null;
    const hash = createHash('md5');
    if (copyKey) for await (const chunk of await target.get(copyKey)) hash.update(chunk as Buffer);
    const verified = !!copyKey && backup.checksum === manifest.etag && hash.digest('hex') === whole.digest('hex');
    const files = readdirSync(join(dir, 'region2', 'objects', 'database_backups'));
    const others = files.filter((f) => !f.startsWith(backupId));
    reportFault(
      t,
      {
        name: 'metadata-db-restart',
        injected: 1,
        survived: Number(verified || (backup?.status === 'FAILED' && !!backup.fail_reason)),
        lost: Number(backup?.status === 'COMPLETED' && !verified),
        orphans: others.length + Math.max(0, files.length - others.length - (SEGMENTS + 1)),
      },
      `metadata server down for 3 s at ${percent}% of the copy; ${backup?.status}; left: ${JSON.stringify(others)}`,
    );
    assert.equal(backup.status, 'COMPLETED', backup.fail_reason);
    assert.equal(backup.checksum, manifest.etag);
    assert.ok(verified, 'the copy has the source bytes');
    assert.deepEqual(others, [], 'nothing but the copy in the target');
    assert.equal(files.length, SEGMENTS + 1);
  });
});
