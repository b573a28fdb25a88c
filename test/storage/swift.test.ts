import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { IntegrityError, isTransient, ObjectNotFound, StorageAuthFailed, StorageUnavailable } from '../../src/errors.ts';
import { SwiftDriver, type SwiftDriverConfig } from '../../src/storage/drivers/swift.ts';
import { segmentKey } from '../../src/storage/keys.ts';
import { manifestEtag } from '../../src/streams/swift-etag.ts';
import { ensureSwiftRegions, FaultProxy, swiftConfig, swiftProxyUrl } from '../helpers/swift.ts';
import { chunked, md5, readAll, storageContract } from './contract.ts';

// Real Swift: the two loopback regions of scripts/swift-regions.sh, each test in its own random
// container, deleted at the end. Faults a healthy Swift never shows (503s, a 401 for a good token,
// connections cut mid-body) come from a TCP proxy in front of region1 that this file controls.

const MiB = 1024 * 1024;
const proxies: FaultProxy[] = [];
const drivers: SwiftDriver[] = [];
const containers: { region: 1 | 2; name: string }[] = [];

function newContainer(region: 1 | 2 = 1): string {
  const name = `tern-test-${randomBytes(6).toString('hex')}`;
  containers.push({ region, name });
  return name;
}

function driverFor(config: SwiftDriverConfig): SwiftDriver {
  const driver = new SwiftDriver({ retryBaseMs: 20, ...config });
  drivers.push(driver);
  return driver;
}

async function proxied(overrides: Partial<SwiftDriverConfig> = {}): Promise<{ driver: SwiftDriver; proxy: FaultProxy }> {
  const proxy = await FaultProxy.start(8081);
  proxies.push(proxy);
  const driver = driverFor({ ...swiftConfig(1, newContainer()), authUrl: `${proxy.url}/auth/v1.0`, ...overrides });
  return { driver, proxy };
}

/** A TempAuth token and storage URL, fetched without the driver. */
async function tempAuth(region: 1 | 2): Promise<{ token: string; storageUrl: string }> {
  const res = await fetch(`${swiftProxyUrl(region)}/auth/v1.0`, {
    headers: { 'x-storage-user': 'test:tester', 'x-storage-pass': 'testing' },
  });
  assert.equal(res.status, 200);
  return { token: res.headers.get('x-auth-token')!, storageUrl: res.headers.get('x-storage-url')! };
}

before(() => ensureSwiftRegions());
after(async () => {
  for (const p of proxies) await p.close();
  for (const { region, name } of containers) {
    const cleaner = new SwiftDriver(swiftConfig(region, name));
    for await (const o of cleaner.list('')) await cleaner.delete(o.key);
    const { token, storageUrl } = await tempAuth(region);
    await fetch(`${storageUrl}/${name}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
    await cleaner.close();
  }
  for (const d of drivers) await d.close();
});

storageContract('swift (TempAuth, region1)', async () => {
  await ensureSwiftRegions();
  const { driver, proxy } = await proxied();
  return {
    driver,
    teardown: async () => undefined, // closed with the rest in after()
    faults: {
      breakNextPut: () => proxy.cutUploadAfter(MiB),
      outage: async () => {
        proxy.mode = '503';
        await proxy.dropAll();
        return async () => {
          proxy.mode = 'pass';
        };
      },
    },
  };
});

describe('SwiftDriver on real Swift', () => {
  it('names locations under <storageUrl>/<container>/ and disowns other accounts, hosts and user-info', () => {
    const c = newContainer();
    const driver = driverFor(swiftConfig(1, c));
    assert.equal(driver.endpoint, `http://127.0.0.1:8081/v1/AUTH_test/${c}/`);
    assert.equal(driver.locationOf('a b/x%.tar.gz'), `http://127.0.0.1:8081/v1/AUTH_test/${c}/a%20b/x%25.tar.gz`);
    assert.equal(driver.keyOf(`http://127.0.0.1:8081/v1/AUTH_test/${c}/a%20b/x%25.tar.gz`), 'a b/x%.tar.gz');
    for (const foreign of [
      `http://127.0.0.1:8081/v1/AUTH_test2/${c}/x`,
      `http://127.0.0.1:8082/v1/AUTH_test/${c}/x`,
      `http://localhost:8081/v1/AUTH_test/${c}/x`,
      `http://evil@127.0.0.1:8081/v1/AUTH_test/${c}/x`,
      `https://127.0.0.1:8081/v1/AUTH_test/${c}/x`,
      `http://127.0.0.1:8081/v1/AUTH_test/${c}x/y`,
      `http://127.0.0.1:8081/v1/AUTH_test/${c}/a%2Fb`,
      `http://127.0.0.1:8081/v1/AUTH_test/${c}/x?multipart-manifest=get`,
      `http://127.0.0.1:8081/v1/AUTH_test/${c}/%2e%2e/other/x`,
      `http://127.0.0.1:8081/v1/AUTH_test/${c}/a%00b`,
    ]) {
      assert.equal(driver.keyOf(foreign), null, foreign);
    }
  });

  it('refuses wrong credentials with StorageAuthFailed and never shows the key', async () => {
    const secret = `wrong-${randomBytes(8).toString('hex')}`;
    const driver = driverFor({ ...swiftConfig(1, newContainer()), key: secret });
    for (const op of [() => driver.head('x'), () => driver.get('x'), () => driver.put('x', Readable.from([Buffer.from('x')]))]) {
      const err = await op().catch((e) => e);
      assert.ok(err instanceof StorageAuthFailed, `unexpected ${err}`);
      assert.equal(isTransient(err), false);
      assert.ok(!err.message.includes(secret) && !String(err.stack).includes(secret), err.message);
      assert.match(err.message, /test:tester/);
    }
  });

  it('keeps regions apart: a region1 token is refused by region2, and the token is not shown', async () => {
    const { token } = await tempAuth(1);
    const driver = driverFor({
      authUrl: `${swiftProxyUrl(2)}/auth/v1.0`,
      storageUrl: `${swiftProxyUrl(2)}/v1/AUTH_test`,
      key: token,
      container: newContainer(2),
    });
    const err = await driver.head('x').catch((e) => e);
    assert.ok(err instanceof StorageAuthFailed, `unexpected ${err}`);
    assert.ok(!err.message.includes(token), err.message);
    // The same fixed token works where it was issued.
    const home = driverFor({
      authUrl: `${swiftProxyUrl(1)}/auth/v1.0`,
      storageUrl: `${swiftProxyUrl(1)}/v1/AUTH_test`,
      key: token,
    });
    assert.equal(await home.head(`never-${randomBytes(4).toString('hex')}`), null);
  });

  it('answers a container that does not exist with ObjectNotFound, null and an empty list', async () => {
    const driver = driverFor(swiftConfig(1, `tern-missing-${randomBytes(6).toString('hex')}`));
    await assert.rejects(driver.get('x'), ObjectNotFound);
    await assert.rejects(driver.get('x', { range: { start: 0, end: 9 } }), ObjectNotFound);
    await assert.rejects(driver.segments('x'), ObjectNotFound);
    assert.equal(await driver.head('x'), null);
    const listed = [];
    for await (const o of driver.list('')) listed.push(o);
    assert.deepEqual(listed, []);
    await driver.delete('x');
  });

  it('maps a segment whose MD5 Swift does not confirm (422) to IntegrityError and stores nothing', async () => {
    const driver = driverFor(swiftConfig(1, newContainer()));
    const data = randomBytes(2 * MiB);
    const wrong = md5(randomBytes(16));
    const key = segmentKey('md5-mismatch', 1);
    const err = await driver.put(key, chunked(data), { md5: wrong }).catch((e) => e);
    assert.ok(err instanceof IntegrityError, `unexpected ${err}`);
    assert.equal(await driver.head(key), null);
    // The same bytes with their own MD5 are accepted, and Swift's etag is that MD5.
    assert.deepEqual(await driver.put(key, chunked(data), { md5: md5(data) }), { etag: md5(data), size: data.length });
    assert.equal((await driver.head(key))?.etag, md5(data));
  });

  it('joins 3 segments into an SLO manifest that reads back, lists and deletes as one', async () => {
    const driver = driverFor(swiftConfig(1, newContainer()));
    const parts = [randomBytes(MiB + 17), randomBytes(3), randomBytes(700 * 1024)];
    const whole = Buffer.concat(parts);
    const base = 'dir/odd name%';
    const segments = [];
    for (const [i, part] of parts.entries()) {
      const key = segmentKey(base, i + 1);
      const res = await driver.put(key, chunked(part));
      segments.push({ key, size: res.size, etag: res.etag });
    }
    const manifest = `${base}.xbstream.gz.enc`;
    const metadata = { datastore: 'mariadb', 'datastore-version': '10.11', lsn: '42' };
    const put = await driver.putManifest(manifest, segments, { metadata });
    assert.deepEqual(put, { etag: manifestEtag(parts.map(md5)), size: whole.length });
    const info = await driver.head(manifest);
    assert.deepEqual(
      { size: info?.size, etag: info?.etag, segmented: info?.segmented, metadata: info?.metadata },
      { size: whole.length, etag: put.etag, segmented: true, metadata },
    );
    assert.deepEqual(await driver.segments(manifest), segments);
    const got = await readAll(driver, manifest);
    assert.equal(createHash('md5').update(got).digest('hex'), md5(whole));
    const b = parts[0].length;
    assert.deepEqual(await readAll(driver, manifest, { start: b - 2, end: b + 4 }), whole.subarray(b - 2, b + 5));
    const listed = [];
    for await (const o of driver.list(base)) listed.push(o);
    assert.deepEqual(
      listed.map((o) => [o.key, o.size, o.etag, o.segmented]),
      [[manifest, whole.length, put.etag, true], ...segments.map((s) => [s.key, s.size, s.etag, false])],
    );
    await driver.delete(manifest);
    for (const k of [manifest, ...segments.map((s) => s.key)]) assert.equal(await driver.head(k), null, k);
  });

  it('reports a failing source stream as its own error and stores nothing', async () => {
    const driver = driverFor(swiftConfig(1, newContainer()));
    const boom = new Error('backup tool exited with 2');
    const body = Readable.from(
      (async function* () {
        yield randomBytes(512 * 1024);
        throw boom;
      })(),
    );
    assert.equal(await driver.put('source-failed', body).catch((e) => e), boom);
    assert.equal(await driver.head('source-failed'), null);
  });

  it('reads its limits from /info', async () => {
    const driver = driverFor(swiftConfig(2, newContainer(2)));
    assert.deepEqual(await driver.limits(), { maxSegmentSize: 5 * 1024 ** 3 + 2, maxManifestSegments: 1000 });
  });

  it('keeps a put without md5 honest: the etag is the MD5 of what was sent', async () => {
    const driver = driverFor(swiftConfig(2, newContainer(2)));
    const data = randomBytes(MiB + 1);
    const res = await driver.put('plain', chunked(data, 1000), { metadata: { datastore: 'postgresql' } });
    assert.deepEqual(res, { etag: md5(data), size: data.length });
    assert.deepEqual(await readAll(driver, 'plain'), data);
    // Region1 has never heard of it: the regions are separate clusters.
    const other = driverFor(swiftConfig(1, driver.container));
    assert.equal(await other.head('plain'), null);
  });
});

describe('SwiftDriver behind a faulty connection', () => {
  it('retries a 503 on idempotent requests, and gives up with transient StorageUnavailable', async () => {
    const { driver, proxy } = await proxied();
    const data = Buffer.from('survives a blip');
    await driver.put('blip', Readable.from([data]));
    await proxy.failNext(2);
    assert.equal((await driver.head('blip'))?.size, data.length);
    await proxy.failNext(2);
    assert.deepEqual(await readAll(driver, 'blip'), data);
    await proxy.failNext(3); // maxAttempts is 3
    const err = await driver.head('blip').catch((e) => e);
    assert.ok(err instanceof StorageUnavailable && isTransient(err), `unexpected ${err}`);
    assert.match(err.message, /503/);
  });

  it('never replays a streamed put: a 503 fails it at once', async () => {
    const { driver, proxy } = await proxied();
    await driver.put('warm-up', Readable.from([Buffer.from('x')])); // token and container ready
    await proxy.failNext(2);
    const err = await driver.put('once', chunked(randomBytes(256 * 1024))).catch((e) => e);
    assert.ok(err instanceof StorageUnavailable, `unexpected ${err}`);
    assert.equal(await driver.head('once'), null);
  });

  it('fails a download cut mid-body instead of returning a short stream', async () => {
    const { driver, proxy } = await proxied();
    const data = randomBytes(4 * MiB);
    await driver.put('cut', chunked(data));
    for (const range of [undefined, { start: 10, end: 3 * MiB }]) {
      const body = await driver.get('cut', { range });
      proxy.cutDownloadAfter(512 * 1024);
      let received = 0;
      const err = await (async () => {
        for await (const chunk of body) received += (chunk as Buffer).length;
      })().catch((e) => e);
      assert.ok(err instanceof StorageUnavailable, `unexpected ${err} after ${received} bytes`);
      assert.ok(received < (range ? range.end - range.start + 1 : data.length));
    }
    assert.deepEqual(await readAll(driver, 'cut'), data);
  });

  it('fails a segmented download cut mid-body too', async () => {
    const { driver, proxy } = await proxied();
    const parts = [randomBytes(MiB), randomBytes(MiB), randomBytes(MiB)];
    const segments = [];
    for (const [i, part] of parts.entries()) {
      const res = await driver.put(segmentKey('slo-cut', i), chunked(part));
      segments.push({ key: segmentKey('slo-cut', i), ...res });
    }
    await driver.putManifest('slo-cut.tar.gz', segments);
    const body = await driver.get('slo-cut.tar.gz');
    proxy.cutDownloadAfter(1.5 * MiB);
    await assert.rejects(body.toArray(), StorageUnavailable);
    assert.equal((await readAll(driver, 'slo-cut.tar.gz')).length, 3 * MiB);
  });

  it('re-authenticates once when Swift answers 401, then carries on', async () => {
    const { driver, proxy } = await proxied();
    await driver.put('renew', Readable.from([Buffer.from('renewed')]));
    assert.equal(proxy.authRequests, 1);
    await proxy.unauthorizedNext(1);
    assert.equal((await driver.head('renew'))?.size, 7);
    assert.equal(proxy.authRequests, 2);
  });

  it('fails a streamed put hit by a 401 as transient, with a fresh token for the next try', async () => {
    const { driver, proxy } = await proxied();
    await driver.put('warm-up', Readable.from([Buffer.from('x')]));
    await proxy.unauthorizedNext(1);
    const err = await driver.put('after-401', chunked(randomBytes(64 * 1024))).catch((e) => e);
    assert.ok(err instanceof StorageUnavailable && isTransient(err), `unexpected ${err}`);
    assert.equal(proxy.authRequests, 2);
    const data = randomBytes(64 * 1024);
    assert.deepEqual(await driver.put('after-401', chunked(data)), { etag: md5(data), size: data.length });
  });

  it('reports StorageAuthFailed when the renewed token is refused as well', async () => {
    const { driver, proxy } = await proxied();
    await driver.put('warm-up', Readable.from([Buffer.from('x')]));
    await proxy.unauthorizedNext(2);
    const err = await driver.head('warm-up').catch((e) => e);
    assert.ok(err instanceof StorageAuthFailed, `unexpected ${err}`);
    assert.equal(proxy.authRequests, 2, 'one re-authentication, not more');
    assert.equal((await driver.head('warm-up'))?.size, 1);
  });
});
