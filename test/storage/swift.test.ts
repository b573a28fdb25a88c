import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BadRequest,
  IntegrityError,
  isTransient,
  ObjectNotFound,
  StorageAuthFailed,
  StorageUnavailable,
} from '../../src/errors.ts';
import { SwiftDriver, type SwiftDriverConfig } from '../../src/storage/drivers/swift.ts';
import { segmentKey } from '../../src/storage/keys.ts';
import { manifestEtag } from '../../src/streams/swift-etag.ts';
import { swiftObjectFile } from '../faults/helpers.ts';
import {
  ensureKeystone,
  ensureSwiftRegions,
  FaultProxy,
  KEYSTONE_URL,
  keystoneConfig,
  swiftConfig,
  swiftProxyUrl,
  tempAuth,
} from '../helpers/swift.ts';
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

  it('reads an SLO whose segments live in "<container>_segments" (as swiftclient makes them), and never another account', async () => {
    const name = newContainer();
    const driver = driverFor(swiftConfig(1, name));
    const segDriver = driverFor(swiftConfig(1, `${name}_segments`));
    containers.push({ region: 1, name: `${name}_segments` });
    const parts = [randomBytes(300 * 1024), randomBytes(5)];
    const base = 'trove.xbstream.gz.enc/slo/1700000000.000000/307205/307200';
    const segments = [];
    for (const [i, part] of parts.entries()) {
      const key = `${base}/${String(i).padStart(8, '0')}`;
      const res = await segDriver.put(key, chunked(part));
      segments.push({ key, size: res.size, etag: res.etag, container: `${name}_segments` });
    }
    const put = await driver.putManifest('trove.xbstream.gz.enc', segments);
    assert.equal(put.etag, manifestEtag(parts.map(md5)));
    assert.deepEqual(await driver.segments('trove.xbstream.gz.enc'), segments);
    for (const [i, seg] of segments.entries()) {
      const there = await driver.headSegment(seg);
      assert.deepEqual([there?.size, there?.etag], [parts[i].length, md5(parts[i])]);
      const chunks: Buffer[] = [];
      for await (const c of await driver.getSegment(seg)) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(parts[i]));
    }
    // The same key in the driver's own container is another object (absent): the container is honoured.
    assert.equal(await driver.head(segments[0].key), null);
    assert.equal(await driver.headSegment({ ...segments[0], container: undefined }), null);
    assert.ok((await readAll(driver, 'trove.xbstream.gz.enc')).equals(Buffer.concat(parts)));
    // Not a container of this account: "..", "" or a path with "/" are refused before any request.
    for (const container of ['..', '', 'a/b']) {
      await assert.rejects(driver.headSegment({ ...segments[0], container }), BadRequest);
      await assert.rejects(driver.getSegment({ ...segments[0], container }), BadRequest);
    }
    // Deleting the manifest takes the segments in the other container along.
    await driver.delete('trove.xbstream.gz.enc');
    for (const seg of segments) assert.equal(await driver.headSegment(seg), null);
  });

  it('reads a Dynamic Large Object (X-Object-Manifest): its segments in name order, checked like an SLO', async () => {
    const name = newContainer();
    const driver = driverFor(swiftConfig(1, name));
    const parts = [randomBytes(200 * 1024), randomBytes(200 * 1024), randomBytes(7)];
    // Written out of order: a DLO joins by name, not by upload time.
    for (const i of [2, 0, 1]) await driver.put(`old.xbstream.gz.enc_${String(i + 1).padStart(8, '0')}`, chunked(parts[i]));
    const { token, storageUrl } = await tempAuth(1);
    const putManifest = (key: string, manifest: string) =>
      fetch(`${storageUrl}/${name}/${key}`, {
        method: 'PUT',
        headers: { 'x-auth-token': token, 'x-object-manifest': manifest },
        body: '',
      });
    assert.equal((await putManifest('old.xbstream.gz.enc', `${name}/old.xbstream.gz.enc_`)).status, 201);
    const head = await driver.head('old.xbstream.gz.enc');
    assert.equal(head?.segmented, true);
    assert.equal(head?.size, 200 * 1024 * 2 + 7);
    assert.equal(head?.etag, manifestEtag(parts.map(md5)), "Swift's DLO ETag is the MD5 of the segment MD5s");
    const segments = await driver.segments('old.xbstream.gz.enc');
    assert.deepEqual(
      segments,
      parts.map((p, i) => ({ key: `old.xbstream.gz.enc_${String(i + 1).padStart(8, '0')}`, size: p.length, etag: md5(p) })),
    );
    assert.ok((await readAll(driver, 'old.xbstream.gz.enc')).equals(Buffer.concat(parts)));
  });

  it('learns that an object is plain without reading it: a rotted one is not quarantined by segments()', async () => {
    const name = newContainer();
    const driver = driverFor(swiftConfig(1, name));
    await driver.put('plain.xbstream.gz.enc', Readable.from([randomBytes(64 * 1024)]));
    // Swift checks an object's MD5 whenever a read goes from its first byte to its last, and
    // quarantines it (404 from then on) on a mismatch; a small object is read whole at once.
    const file = swiftObjectFile(1, name, 'plain.xbstream.gz.enc');
    const onDisk = readFileSync(file);
    onDisk[onDisk.length / 2] ^= 0xff;
    writeFileSync(file, onDisk);
    assert.equal(await driver.segments('plain.xbstream.gz.enc'), null);
    // A quarantine follows the read within milliseconds; the object must still be there after.
    for (let i = 0; i < 10; i++) {
      await sleep(100);
      assert.ok(await driver.head('plain.xbstream.gz.enc'), `still there after ${(i + 1) * 100} ms`);
    }
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
      // Armed before the GET: armed after it, the body may already sit in socket buffers whole.
      proxy.cutDownloadAfter(512 * 1024);
      const body = await driver.get('cut', { range });
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
    proxy.cutDownloadAfter(1.5 * MiB);
    const body = await driver.get('slo-cut.tar.gz');
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

describe('SwiftDriver with Keystone v3 (a real Keystone and a Keystone-authenticated Swift proxy)', () => {
  const ksContainers: { config: SwiftDriverConfig }[] = [];
  let userToken: string;
  let userId: string;
  let projectId: string;

  /** Keystone's own API, for what the test sets up behind the driver's back. */
  async function keystoneCall(method: string, path: string, body?: unknown, token?: string): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${KEYSTONE_URL}${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...(token ? { 'x-auth-token': token } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      // Keystone on SQLite now and then answers 500 "database is locked"; it passes.
      if (res.status !== 500 || attempt === 4) return res;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  function ksDriver(overrides: Partial<SwiftDriverConfig> = {}): SwiftDriver {
    const config = { ...keystoneConfig(`tern-test-${randomBytes(6).toString('hex')}`), ...overrides };
    ksContainers.push({ config });
    return driverFor(config);
  }

  before(async () => {
    await ensureKeystone();
    const res = await keystoneCall('POST', '/auth/tokens', {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: 'tern', domain: { name: 'Default' }, password: 'ternpass' } },
        },
        scope: { project: { name: 'tern', domain: { name: 'Default' } } },
      },
    });
    assert.equal(res.status, 201);
    userToken = res.headers.get('x-subject-token')!;
    const body = (await res.json()) as { token: { user: { id: string }; project: { id: string } } };
    userId = body.token.user.id;
    projectId = body.token.project.id;
  });

  after(async () => {
    for (const { config } of ksContainers) {
      const cleaner = new SwiftDriver({ ...keystoneConfig(config.container), storageUrl: config.storageUrl });
      try {
        await cleaner.connect();
        for await (const o of cleaner.list('')) await cleaner.delete(o.key);
        await fetch(cleaner.endpoint, { method: 'DELETE', headers: { 'x-auth-token': userToken } });
      } finally {
        await cleaner.close();
      }
    }
  });

  it('authenticates with a password, takes the object-store endpoint of its region, and works', async () => {
    const driver = ksDriver();
    assert.throws(() => driver.endpoint, /connect/);
    assert.equal(driver.keyOf(`http://127.0.0.1:8083/v1/AUTH_${projectId}/${driver.container}/x`), null);
    await driver.connect();
    assert.equal(driver.endpoint, `http://127.0.0.1:8083/v1/AUTH_${projectId}/${driver.container}/`);
    const parts = [randomBytes(100_000), randomBytes(5)];
    const segments = [];
    for (const [i, part] of parts.entries()) {
      const res = await driver.put(segmentKey('ks', i + 1), chunked(part), { md5: md5(part) });
      segments.push({ key: segmentKey('ks', i + 1), ...res });
    }
    const put = await driver.putManifest('ks.tar.gz', segments, { metadata: { datastore: 'postgresql' } });
    assert.equal(put.etag, manifestEtag(parts.map(md5)));
    assert.deepEqual(await readAll(driver, 'ks.tar.gz'), Buffer.concat(parts));
    assert.equal((await driver.head('ks.tar.gz'))?.metadata.datastore, 'postgresql');
    assert.equal(driver.keyOf(driver.locationOf('ks.tar.gz')), 'ks.tar.gz');
    await driver.delete('ks.tar.gz');
    assert.equal(await driver.head(segments[0].key), null);
  });

  it('chooses the endpoint by region and interface', async () => {
    const two = ksDriver({ regionName: 'RegionTwo' });
    await two.connect();
    assert.equal(two.endpoint, `http://127.0.0.1:8084/v1/AUTH_${projectId}/${two.container}/`);
    const internal = ksDriver({ interface: 'internal' });
    await internal.connect();
    assert.equal(internal.endpoint, `http://127.0.0.1:8083/v1/AUTH_${projectId}/${internal.container}/`);
    const none = ksDriver({ regionName: 'RegionTwo', interface: 'internal' });
    await assert.rejects(none.connect(), (err: Error) => err instanceof StorageAuthFailed && /RegionTwo/.test(err.message));
    const pinned = ksDriver({ storageUrl: `http://127.0.0.1:8083/v1/AUTH_${projectId}`, regionName: 'RegionTwo' });
    assert.equal(pinned.endpoint, `http://127.0.0.1:8083/v1/AUTH_${projectId}/${pinned.container}/`);
    assert.equal(await pinned.head('nothing-here'), null);
  });

  it('refuses a wrong password with StorageAuthFailed and never shows it', async () => {
    const secret = `wrong-${randomBytes(8).toString('hex')}`;
    const driver = ksDriver({ key: secret });
    const err = await driver.head('x').catch((e) => e);
    assert.ok(err instanceof StorageAuthFailed, `unexpected ${err}`);
    assert.ok(!err.message.includes(secret) && !String(err.stack).includes(secret), err.message);
  });

  it('authenticates with an existing token', async () => {
    const driver = ksDriver({ user: undefined, userDomain: undefined, key: userToken });
    await driver.put('by-token', Readable.from([Buffer.from('token')]));
    assert.equal((await driver.head('by-token'))?.size, 5);
  });

  it('authenticates with an application credential', async () => {
    const name = `tern-test-${randomBytes(4).toString('hex')}`;
    const res = await keystoneCall(
      'POST',
      `/users/${userId}/application_credentials`,
      { application_credential: { name } },
      userToken,
    );
    assert.equal(res.status, 201);
    const { application_credential: cred } = (await res.json()) as { application_credential: { id: string; secret: string } };
    try {
      const driver = ksDriver({
        user: undefined,
        key: undefined,
        projectName: undefined,
        applicationCredentialId: cred.id,
        applicationCredentialSecret: cred.secret,
      });
      await driver.put('by-app-cred', Readable.from([Buffer.from('app')]));
      assert.equal((await driver.head('by-app-cred'))?.size, 3);
      assert.equal(driver.endpoint, `http://127.0.0.1:8083/v1/AUTH_${projectId}/${driver.container}/`);
      const wrong = ksDriver({
        user: undefined,
        key: undefined,
        applicationCredentialId: cred.id,
        applicationCredentialSecret: 'nope',
      });
      await assert.rejects(wrong.connect(), StorageAuthFailed);
    } finally {
      await keystoneCall('DELETE', `/users/${userId}/application_credentials/${cred.id}`, undefined, userToken);
    }
  });
});
