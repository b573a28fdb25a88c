import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, type TestContext, test } from 'node:test';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { type ServedRegion, serveRegion } from '../helpers/serve.ts';
import { regionApi, reportFault } from './helpers.ts';

// kill -9 of the region that runs a copy, at random points of the transfer, then a restart: the
// copy must end COMPLETED with the source's bytes, re-send at most the segments (or, for a single
// source object, the ranged parts) that were in flight, and leave nothing but the manifest and its
// pieces in the target.

const MiB = 1024 * 1024;
const SEGMENTS = 40;
const SEGMENT = 4 * MiB;
const PARALLELISM = 3;
/** A single source object is copied in ranged parts of copy.partSize. */
const PARTS = 40;
const PART = 4 * MiB;
const token = randomBytes(16).toString('hex');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('fault: the copying worker is killed (-9) and restarted', () => {
  let dir: string;
  let region2: ServedRegion | undefined;
  let source: FsDriver;
  let target: FsDriver;
  let config: Record<string, unknown>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tern-fault-kill-'));
    mkdirSync(join(dir, 'region2'));
    const root1 = join(dir, 'region1', 'objects');
    source = new FsDriver({ root: root1, container: 'database_backups' });
    target = new FsDriver({ root: join(dir, 'region2', 'objects'), container: 'database_backups' });
    config = {
      region: 'region2',
      storage: { driver: 'fs', root: join(dir, 'region2', 'objects') },
      auth: { tokens: [{ token, project: 'p1', roles: ['member'] }] },
      catalog: [{ region: 'region1', storage: { driver: 'fs', root: root1 } }],
      copy: { parallelism: PARALLELISM, partSize: PART },
      // A short lease so the dead worker's job is reclaimed quickly after the restart.
      worker: { pollMs: 50, leaseSeconds: 2, heartbeatSeconds: 0.5, backoffBaseMs: 100 },
    };
  });

  after(async () => {
    await region2?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const api = regionApi(() => region2!.url, token);

  /**
   * Kills region2 (-9) twice at random points of the copy and restarts it each time; then waits for
   * the end. Returns the kills, the final row and how many published pieces were sent again (a
   * piece re-sent is published again under a new inode).
   */
  async function killTwiceAndWait(backupId: string): Promise<{ kills: unknown[]; backup: any; resent: number }> {
    const pieceDir = join(dir, 'region2', 'objects', 'database_backups');
    const kills: Array<{ atPercent: number; finished: number }> = [];
    const inodes = new Map<string, number>();
    let resent = 0;
    for (const killAt of [15 + Math.random() * 30, 55 + Math.random() * 30]) {
      let percent = 0;
      for (let i = 0; i < 2000 && percent < killAt; i++) {
        const { body } = await api('GET', `/backups/${backupId}`);
        assert.notEqual(body.backup.status, 'FAILED', body.backup.fail_reason);
        if (body.backup.status === 'COMPLETED') break;
        percent = body.backup.progress?.percent ?? 0;
        await new Promise((r) => setTimeout(r, 5));
      }
      region2!.child.kill('SIGKILL');
      await new Promise((r) => region2!.child.once('exit', r));
      const published = filesUnder(pieceDir).filter((f) => f.includes(`${backupId}_`));
      for (const f of published) {
        const ino = statSync(f).ino;
        if (inodes.has(f) && inodes.get(f) !== ino) resent++;
        inodes.set(f, ino);
      }
      kills.push({ atPercent: Math.round(percent), finished: published.length });
      region2 = await serveRegion(join(dir, 'region2'), config);
    }
    let backup: any;
    for (let i = 0; i < 600; i++) {
      backup = (await api('GET', `/backups/${backupId}`)).body.backup;
      if (['COMPLETED', 'FAILED'].includes(backup.status)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const [f, ino] of inodes) if (existsSync(f) && statSync(f).ino !== ino) resent++;
    return { kills, backup, resent };
  }

  /** The MD5 of the copy's bytes as region2 serves them, or null when it did not complete. */
  async function copiedMd5(backup: any): Promise<string | null> {
    const copyKey = backup.status === 'COMPLETED' ? target.keyOf(backup.locationRef) : null;
    if (!copyKey) return null;
    const hash = createHash('md5');
    for await (const chunk of await target.get(copyKey)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  }

  const finished: string[] = [];

  /** Reports the fault row and checks the target holds exactly the manifest and `pieces` pieces. */
  function report(
    t: TestContext,
    name: string,
    backupId: string,
    pieces: number,
    run: { kills: unknown[]; backup: any; resent: number },
    verified: boolean,
  ) {
    const { kills, backup, resent } = run;
    const left = filesUnder(join(dir, 'region2', 'objects')).map((f) => f.slice(dir.length));
    const ours = left.filter((f) => f.includes(backupId));
    // Copies finished by earlier tests of this file stay where they are.
    const others = left.filter((f) => !f.includes(backupId) && !finished.some((id) => f.includes(id)));
    finished.push(backupId);
    const extra = Math.max(0, ours.filter((f) => !f.includes('/.meta/')).length - (pieces + 1));
    reportFault(
      t,
      {
        name,
        injected: kills.length,
        survived: verified || (backup.status === 'FAILED' && backup.fail_reason) ? kills.length : 0,
        lost: Number(backup.status === 'COMPLETED' && !verified),
        orphans: others.length + extra,
      },
      `kills: ${JSON.stringify(kills)}; ${backup.status}; pieces re-sent: ${resent} (parallelism ${PARALLELISM}); left: ${JSON.stringify(others)}`,
    );
    assert.equal(backup.status, 'COMPLETED', backup.fail_reason);
    assert.ok(verified, 'the copy has the source bytes');
    assert.ok(resent <= 2 * PARALLELISM, `re-sent ${resent} pieces over two kills; at most ${PARALLELISM} in flight each`);
    assert.equal(ours.filter((f) => !f.includes('/.meta/')).length, pieces + 1, 'the manifest and its pieces');
    assert.deepEqual(others, [], 'no temp files or other leftovers in the target');
  }

  test('two kills at random points; the copy completes, verified, with bounded re-sends and no orphans', async (t) => {
    const id = randomUUID();
    const whole = createHash('md5');
    const segments = [];
    for (let i = 0; i < SEGMENTS; i++) {
      const bytes = randomBytes(SEGMENT);
      whole.update(bytes);
      const key = `${id}_${String(i).padStart(8, '0')}`;
      segments.push({ key, size: SEGMENT, etag: (await source.put(key, Readable.from([bytes]))).etag });
    }
    const key = `${id}.xbstream.gz`;
    const manifest = await source.putManifest(key, segments, {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });

    region2 = await serveRegion(join(dir, 'region2'), config);
    const created = await api('POST', '/backups', { backup: { name: 'killed', location: source.locationOf(key) } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const backupId: string = created.body.backup.id;
    const run = await killTwiceAndWait(backupId);
    const verified = run.backup.checksum === manifest.etag && (await copiedMd5(run.backup)) === whole.digest('hex');
    report(t, 'kill-9-copying-worker', backupId, SEGMENTS, run, verified);
  });

  test('a single-object source copied in ranged parts: two kills, the copy completes against its MD5', async (t) => {
    const id = randomUUID();
    const bytes = randomBytes(PARTS * PART);
    const md5 = createHash('md5').update(bytes).digest('hex');
    const key = `${id}.xbstream.gz`;
    await source.put(key, Readable.from([bytes]), {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });
    await region2?.stop();
    region2 = await serveRegion(join(dir, 'region2'), config);
    const created = await api('POST', '/backups', { backup: { name: 'killed-plain', location: source.locationOf(key) } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const backupId: string = created.body.backup.id;
    const run = await killTwiceAndWait(backupId);
    const verified = (await copiedMd5(run.backup)) === md5;
    report(t, 'kill-9-copying-worker-parts', backupId, PARTS, run, verified);
  });
});
