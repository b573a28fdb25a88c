import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { waitForBackup } from '../e2e/helpers.ts';
import { ensureSwiftRegions, swiftConfig, swiftProxyUrl } from '../helpers/swift.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';
import { dropSwiftContainer, listKeys, reportFault, storedBytesMatch } from './helpers.ts';

// A copy from region1's Swift into a region2 container whose quota (X-Container-Meta-Quota-Bytes,
// Swift's container_quotas middleware in scripts/swift-regions.sh) is smaller than one segment.
// Swift refuses the first segment PUT with 413 "Upload exceeds quota."; the copy must end FAILED
// with a "storage full" reason and leave no segment in either region.
//
// Swift checks a quota against the container's byte count cached by the proxy (up to a minute
// old) plus the request's Content-Length, so only a quota below one segment is refused at once;
// segments are sent with their length for Swift to check it.

const MiB = 1024 * 1024;
const SEGMENTS = 4;
const SEGMENT = 4 * MiB;
const QUOTA = 3 * MiB;

async function tempAuth(region: 1 | 2): Promise<{ token: string; storageUrl: string }> {
  const res = await fetch(`${swiftProxyUrl(region)}/auth/v1.0`, {
    headers: { 'x-storage-user': 'test:tester', 'x-storage-pass': 'testing' },
  });
  assert.equal(res.status, 200);
  return { token: res.headers.get('x-auth-token')!, storageUrl: res.headers.get('x-storage-url')! };
}

describe('fault: the target Swift container quota is too small', () => {
  const container = `quota_${randomUUID().slice(0, 8)}`;
  let region: TestRegion | undefined;
  const source = () => new SwiftDriver({ ...swiftConfig(1, container), segmentSize: SEGMENT });
  const target = () => new SwiftDriver(swiftConfig(2, container));

  before(async () => {
    await ensureSwiftRegions();
    const info = (await (await fetch(`${swiftProxyUrl(2)}/info`)).json()) as Record<string, unknown>;
    assert.ok(
      info.container_quotas !== undefined,
      'region2 runs without container_quotas: it was started from an older scripts/swift-regions.sh; run it again',
    );
    // The target container, with a quota smaller than one segment.
    const auth = await tempAuth(2);
    const res = await fetch(`${auth.storageUrl}/${container}`, {
      method: 'PUT',
      headers: { 'x-auth-token': auth.token, 'x-container-meta-quota-bytes': String(QUOTA) },
    });
    assert.ok(res.status === 201 || res.status === 202, `create container: ${res.status}`);
    region = await startTestRegion({
      name: 'region2',
      extra: {
        storage: swiftConfig(2, container),
        catalog: [{ region: 'region1', storage: swiftConfig(1, container) }],
        copy: { parallelism: 2 },
      },
    });
  });

  after(async () => {
    await region?.stop();
    for (const n of [1, 2] as const) await dropSwiftContainer(n, container);
  });

  test('the copy ends FAILED "storage full" with no segment left in either region', { timeout: 90_000 }, async (t) => {
    const src = source();
    const id = randomUUID();
    const segments = [];
    for (let i = 1; i <= SEGMENTS; i++) {
      const key = `${id}_${String(i).padStart(8, '0')}`;
      segments.push({ key, size: SEGMENT, etag: (await src.put(key, Readable.from([randomBytes(SEGMENT)]))).etag });
    }
    const key = `${id}.xbstream.gz`;
    await src.putManifest(key, segments, {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });
    const seeded = [key, ...segments.map((s) => s.key)].sort();

    const res = await region!.call('POST', '/v1.0/p1/backups', {
      body: { backup: { name: 'over-quota', location: src.locationOf(key) } },
    });
    assert.equal(res.status, 202, res.text);
    const backup = await waitForBackup(region!, res.body.backup.id);
    const dst = target();
    const inTarget = await listKeys(dst);
    const inSource = await listKeys(src);
    // Over the quota is not lost data: lost counts a COMPLETED copy whose bytes do not verify.
    const verified =
      backup.status === 'COMPLETED' && (await storedBytesMatch(dst, dst.keyOf(backup.locationRef)!, backup.checksum));
    const orphans = inTarget.length + inSource.filter((k) => !seeded.includes(k)).length;
    const survived = backup.status === 'FAILED' && /storage full/i.test(backup.fail_reason ?? '');
    reportFault(
      t,
      {
        name: 'swift-quota',
        injected: 1,
        survived: Number(survived),
        lost: Number(backup.status === 'COMPLETED' && !verified),
        orphans,
      },
      `${SEGMENTS} x ${SEGMENT / MiB} MiB copy into a ${QUOTA / MiB} MiB quota: ${backup.status} (${backup.fail_reason}); ` +
        `left in region2: ${JSON.stringify(inTarget)}`,
    );
    assert.equal(backup.status, 'FAILED');
    assert.match(backup.fail_reason, /storage full/i);
    assert.deepEqual(inTarget, [], 'nothing in the target container');
    assert.deepEqual(inSource, seeded, 'the source holds exactly what it held');
    await dst.close();
    await src.close();
  });
});
