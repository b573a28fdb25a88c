import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { type ServedRegion, serveRegion } from '../helpers/serve.ts';

// Two regions as two `tern serve` processes, each with its own folder, SQLite database and fs
// storage; region2 trusts region1's storage. A copy requested from region2 by location ends
// COMPLETED with identical bytes; a corrupted source ends FAILED with nothing left in region2.

const MiB = 1024 * 1024;
const token = randomBytes(16).toString('hex');

async function md5Of(driver: FsDriver, key: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of await driver.get(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function keys(driver: FsDriver): Promise<string[]> {
  const out: string[] = [];
  for await (const o of driver.list('')) out.push(o.key);
  return out;
}

describe('copy between two tern serve processes', () => {
  let dir: string;
  let region1: ServedRegion;
  let region2: ServedRegion;
  let source: FsDriver;
  let target: FsDriver;

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${region2.url}/v1.0/demo${path}`, {
      method,
      headers: { 'x-auth-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };

  const settle = async (id: string) => {
    for (let i = 0; i < 600; i++) {
      const { body } = await call('GET', `/backups/${id}`);
      if (['COMPLETED', 'FAILED'].includes(body.backup.status)) return body.backup;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`backup ${id} did not settle in 60 s`);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tern-two-regions-'));
    const root1 = join(dir, 'region1', 'objects');
    const common = {
      auth: { tokens: [{ token, project: 'demo', roles: ['member'] }] },
      worker: { pollMs: 50, backoffBaseMs: 50, maxAttempts: 2 },
    };
    mkdirSync(join(dir, 'region1'));
    mkdirSync(join(dir, 'region2'));
    region1 = await serveRegion(join(dir, 'region1'), { region: 'region1', storage: { driver: 'fs', root: root1 }, ...common });
    region2 = await serveRegion(join(dir, 'region2'), {
      region: 'region2',
      storage: { driver: 'fs', root: join(dir, 'region2', 'objects') },
      catalog: [{ region: 'region1', apiUrl: region1.url, storage: { driver: 'fs', root: root1 } }],
      copy: { parallelism: 2 },
      ...common,
    });
    source = new FsDriver({ root: root1, container: 'database_backups' });
    target = new FsDriver({ root: join(dir, 'region2', 'objects'), container: 'database_backups' });
  });

  after(async () => {
    assert.equal(await region2?.stop(), 0, region2?.stderr());
    assert.equal(await region1?.stop(), 0, region1?.stderr());
    rmSync(dir, { recursive: true, force: true });
  });

  test('a segmented backup in region1 is copied to region2 with identical bytes and checksum', async () => {
    const id = randomUUID();
    const parts = [randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(MiB + 17)];
    const segments = [];
    for (const [i, bytes] of parts.entries()) {
      const key = `${id}_${String(i).padStart(8, '0')}`;
      const put = await source.put(key, Readable.from([bytes]));
      segments.push({ key, size: bytes.length, etag: put.etag });
    }
    const key = `${id}.xbstream.gz.enc`;
    const manifest = await source.putManifest(key, segments, {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'demo' },
    });
    const created = await call('POST', '/backups', {
      backup: { name: 'from-region1', description: 'copied across regions', location: source.locationOf(key), instance: null },
    });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    assert.equal(created.body.backup.status, 'NEW');
    assert.equal(created.body.backup.instance_id, null);

    const backup = await settle(created.body.backup.id);
    assert.equal(backup.status, 'COMPLETED', backup.fail_reason);
    assert.equal(backup.checksum, manifest.etag);
    assert.equal(backup.size_bytes, 7 * MiB + 17);
    const copyKey = target.keyOf(backup.locationRef)!;
    assert.ok(copyKey.startsWith(backup.id), `the copy is stored under region2's own id: ${copyKey}`);
    assert.equal(await md5Of(target, copyKey), await md5Of(source, key));
    assert.equal((await target.head(copyKey))!.metadata.datastore, 'mariadb');
    assert.equal((await target.segments(copyKey))!.length, 3);
  });

  test('a corrupted source ends FAILED with a reason and leaves nothing in region2', async () => {
    const before = await keys(target);
    const key = `${randomUUID()}.xbstream.gz`;
    await source.put(key, Readable.from([randomBytes(2 * MiB)]), {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'demo' },
    });
    // Rot one byte in place: the stored checksum no longer matches the bytes.
    const fd = openSync(join(dir, 'region1', 'objects', 'database_backups', key), 'r+');
    writeSync(fd, Buffer.from([0x42]), 0, 1, MiB);
    closeSync(fd);

    const created = await call('POST', '/backups', { backup: { name: 'rotten', location: source.locationOf(key) } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const backup = await settle(created.body.backup.id);
    assert.equal(backup.status, 'FAILED');
    assert.match(backup.fail_reason, /md5|checksum/i);
    assert.deepEqual(await keys(target), before);
    const leftovers = await keys(target);
    assert.ok(!leftovers.some((k) => k.startsWith(backup.id)), `nothing of ${backup.id} stays: ${leftovers.join(', ')}`);
  });
});
