import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { ensureSwiftRegions, swiftConfig } from '../helpers/swift.ts';
import { type PrivateSwiftProxy, privateSwiftProxy } from '../helpers/swift-proxy.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';
import { dropSwiftContainer, reportFault } from './helpers.ts';

// A copy from region1's Swift to region2's Swift while first the source proxy, then the target
// proxy is killed (-9) and restarted two seconds later. The copy must end COMPLETED with the
// source's checksum and bytes, and leave no segment in either region but the copy's own.

const MiB = 1024 * 1024;
const SEGMENTS = 48;

describe('fault: the source and target Swift proxies die mid-copy', () => {
  let proxy1: PrivateSwiftProxy;
  let proxy2: PrivateSwiftProxy;
  let region: TestRegion;
  const container = `restart_${randomUUID().slice(0, 8)}`;
  const driver1 = () => new SwiftDriver({ ...swiftConfig(1, container), segmentSize: 4 * MiB });
  const driver2 = () => new SwiftDriver(swiftConfig(2, container));

  before(async () => {
    await ensureSwiftRegions();
    proxy1 = await privateSwiftProxy(1);
    proxy2 = await privateSwiftProxy(2);
    const via = (p: PrivateSwiftProxy, region: 1 | 2) => ({
      ...swiftConfig(region, container),
      driver: 'swift',
      authUrl: `${p.url}/auth/v1.0`,
    });
    region = await startTestRegion({
      name: 'region2',
      worker: { maxAttempts: 20, backoffBaseMs: 200, backoffMaxMs: 1000 },
      extra: {
        storage: via(proxy2, 2),
        catalog: [{ region: 'region1', storage: via(proxy1, 1) }],
        copy: { parallelism: 3 },
      },
    });
  });

  after(async () => {
    await region?.stop();
    await proxy1?.close();
    await proxy2?.close();
    for (const n of [1, 2] as const) await dropSwiftContainer(n, container);
  });

  test('the copy completes with verified bytes and no orphans', { timeout: 240_000 }, async (t) => {
    const src = driver1();
    const id = randomUUID();
    const whole = createHash('md5');
    const chunks = Array.from({ length: SEGMENTS }, () => randomBytes(4 * MiB));
    for (const c of chunks) whole.update(c);
    const key = `${id}.xbstream.gz`;
    const segments = [];
    for (const [i, c] of chunks.entries()) {
      const segKey = `${id}_${String(i).padStart(8, '0')}`;
      segments.push({ key: segKey, size: c.length, etag: (await src.put(segKey, Readable.from([c]))).etag });
    }
    const put = await src.putManifest(key, segments, {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });
    const location = `${proxy1.url}/v1/AUTH_test/${container}/${key}`;
    const created = await region.call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'restarts', location } } });
    assert.equal(created.status, 202, created.text);
    const backupId = created.body.backup.id;

    const waitFor = async (percent: number) => {
      for (let i = 0; i < 3000; i++) {
        const b = (await region.call('GET', `/v1.0/p1/backups/${backupId}`)).body.backup;
        if (b.status === 'COMPLETED' || b.status === 'FAILED' || (b.progress?.percent ?? 0) >= percent) return b;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error('no progress');
    };
    const events: string[] = [];
    for (const [proxy, name, at] of [
      [proxy1, 'source', 20],
      [proxy2, 'target', 60],
    ] as const) {
      const b = await waitFor(at);
      events.push(`${name} proxy killed at ${b.progress?.percent ?? 100}% (${b.status})`);
      await proxy.kill();
      await new Promise((r) => setTimeout(r, 2000));
      await proxy.start();
    }
    let backup: any;
    for (let i = 0; i < 1200; i++) {
      backup = (await region.call('GET', `/v1.0/p1/backups/${backupId}`)).body.backup;
      if (['COMPLETED', 'FAILED'].includes(backup.status)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const dst = driver2();
    const copyKey =
      backup.status === 'COMPLETED' ? dst.keyOf(backup.locationRef.replace(proxy2.url, 'http://127.0.0.1:8082')) : null;
    const hash = createHash('md5');
    if (copyKey) for await (const chunk of await dst.get(copyKey)) hash.update(chunk as Buffer);
    const verified = !!copyKey && backup.checksum === put.etag && hash.digest('hex') === whole.digest('hex');
    const listed: string[] = [];
    for await (const o of dst.list('')) listed.push(o.key);
    const segs = copyKey ? await dst.segments(copyKey) : null;
    const owned = new Set([...(copyKey ? [copyKey] : []), ...(segs ?? []).map((s) => s.key)]);
    const orphans = listed.filter((k) => !owned.has(k));
    reportFault(
      t,
      {
        name: 'swift-proxies-killed',
        injected: 2,
        survived: verified || (backup.status === 'FAILED' && backup.fail_reason) ? 2 : 0,
        lost: Number(!!copyKey && !verified),
        orphans: orphans.length,
      },
      `${events.join('; ')}; ${backup.status}${verified ? ' and verified' : ''}; orphans: ${JSON.stringify(orphans.slice(0, 5))}`,
    );
    assert.equal(backup.status, 'COMPLETED', backup.fail_reason);
    assert.equal(backup.checksum, put.etag);
    assert.ok(copyKey, backup.locationRef);
    assert.ok(verified, 'the copy has the source bytes');
    assert.ok(segs, `the copy is a manifest: ${copyKey}, listed ${listed.length}: ${listed.slice(0, 5).join(', ')}`);
    assert.deepEqual(orphans, [], 'only the copy and its segments in region2');
    await src.close();
    await dst.close();
  });
});
