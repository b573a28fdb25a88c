import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { IntegrityError, ObjectNotFound, StorageAuthFailed, StorageUnavailable } from '../../src/errors.ts';
import { S3Driver, type S3DriverConfig } from '../../src/storage/drivers/s3.ts';
import { chunked, md5, storageContract } from './contract.ts';

// Against region1's Swift s3api (scripts/swift-regions.sh start), each run in its own bucket,
// removed at the end. Faults that a healthy Swift never shows (503s, connections cut mid-body)
// come from a small TCP proxy in front of it that this file controls.

const ENDPOINT = process.env.TERN_TEST_S3_URL ?? 'http://127.0.0.1:8081';
const MiB = 1024 * 1024;
const BUCKETS: string[] = [];

function config(overrides: Partial<S3DriverConfig> = {}): S3DriverConfig {
  const bucket = `tern-test-${randomBytes(6).toString('hex')}`;
  BUCKETS.push(overrides.bucket ?? bucket);
  return {
    endpoint: ENDPOINT,
    region: 'us-east-1',
    bucket,
    prefix: '',
    accessKeyId: 'test:tester',
    secretAccessKey: 'testing',
    forcePathStyle: true,
    partSize: 5 * MiB,
    ...overrides,
  };
}

// An independent client for looking behind the driver's back and for cleaning up.
const raw = new S3Client({
  endpoint: ENDPOINT,
  region: 'us-east-1',
  credentials: { accessKeyId: 'test:tester', secretAccessKey: 'testing' },
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});

async function removeBucket(Bucket: string): Promise<void> {
  try {
    const uploads = await raw.send(new ListMultipartUploadsCommand({ Bucket }));
    for (const u of uploads.Uploads ?? []) {
      await raw.send(new AbortMultipartUploadCommand({ Bucket, Key: u.Key, UploadId: u.UploadId }));
    }
    let token: string | undefined;
    do {
      const page = await raw.send(new ListObjectsV2Command({ Bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) await raw.send(new DeleteObjectCommand({ Bucket, Key: o.Key }));
      token = page.NextContinuationToken;
    } while (token);
    await raw.send(new DeleteBucketCommand({ Bucket }));
  } catch (err) {
    if ((err as Error).name !== 'NoSuchBucket') throw err;
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * A TCP proxy in front of Swift for faults a healthy server never shows. 'pass' forwards,
 * '503' answers every request itself, 'cut-response' drops the connection once 256 KiB went
 * through in that mode; breakUploads > 0 drops the next that many connections sending > 1 MiB.
 */
class FaultProxy {
  mode: 'pass' | '503' | 'cut-response' = 'pass';
  breakUploads = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();

  async url(): Promise<string> {
    if (!this.server) {
      this.server = net.createServer((client) => this.handle(client));
      this.server.listen(0, '127.0.0.1');
      await once(this.server, 'listening');
    }
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
  }

  // The mode is looked at on every chunk, as the SDK keeps connections alive across mode changes.
  private handle(client: net.Socket): void {
    this.track(client);
    let upstream: net.Socket | null = null;
    const drop = () => {
      client.destroy();
      upstream?.destroy();
    };
    let up = 0;
    let down = 0;
    let breaking = false;
    client.on('data', (chunk: Buffer) => {
      if (this.mode === '503') {
        upstream?.destroy();
        client.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      up += chunk.length;
      if (!breaking && up > MiB && this.breakUploads > 0) {
        breaking = true;
        this.breakUploads--;
      }
      if (breaking) return drop();
      if (!upstream) {
        upstream = net.connect(Number(new URL(ENDPOINT).port), '127.0.0.1');
        this.track(upstream);
        upstream.on('data', (data: Buffer) => {
          if (this.mode === 'cut-response') down += data.length;
          if (down > 256 * 1024) drop();
          else client.write(data);
        });
        upstream.on('end', () => client.end());
        upstream.on('close', () => client.destroy());
      }
      upstream.write(chunk);
    });
    client.on('end', () => upstream?.end());
    client.on('close', () => upstream?.destroy());
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    if (this.server) {
      this.server.close();
      await once(this.server, 'close');
    }
  }
}

const proxy = new FaultProxy();

before(async () => {
  const res = await fetch(`${ENDPOINT}/info`).catch(() => null);
  assert.ok(res?.ok, `Swift region1 is not answering at ${ENDPOINT}: run bash scripts/swift-regions.sh start`);
});

after(async () => {
  await proxy.close();
  for (const bucket of BUCKETS) await removeBucket(bucket);
  raw.destroy();
});

// The contract's driver talks through the proxy, so its fault hooks are real dropped connections
// and real 503 answers.
storageContract('s3', async () => {
  const driver = new S3Driver({ ...config(), endpoint: await proxy.url(), maxAttempts: 3 });
  return {
    driver,
    faults: {
      breakNextPut() {
        proxy.breakUploads = 3; // the put and each of the SDK's retries
      },
      async outage() {
        proxy.breakUploads = 0;
        proxy.mode = '503';
        return async () => {
          proxy.mode = 'pass';
        };
      },
    },
  };
});

describe('S3Driver against Swift s3api', () => {
  let driver: S3Driver;
  let bucket: string;
  before(() => {
    const c = config();
    bucket = c.bucket;
    driver = new S3Driver(c);
  });
  after(() => driver.close());

  test('a wrong secret fails with StorageAuthFailed and never shows the secret', async () => {
    const secret = `not-the-secret-${randomBytes(8).toString('hex')}`;
    const bad = new S3Driver(config({ bucket, secretAccessKey: secret }));
    try {
      const failures = [
        await bad.put('auth-probe', Readable.from([Buffer.from('x')])).catch((e) => e),
        await bad.head('auth-probe').catch((e) => e),
        await bad.get('auth-probe').catch((e) => e),
      ];
      for (const err of failures) {
        assert.ok(err instanceof StorageAuthFailed, `expected StorageAuthFailed, got ${err}`);
        assert.ok(!err.message.includes(secret));
        assert.ok(!JSON.stringify(err).includes(secret));
      }
    } finally {
      await bad.close();
    }
  });

  test('an unknown-length body larger than one part goes up as multipart and round trips', async () => {
    const data = randomBytes(12 * MiB + 12345);
    const sum = md5(data);
    const put = await driver.put('big-unknown', chunked(data), { md5: sum, metadata: { Datastore: 'mariadb' } });
    assert.deepEqual(put, { etag: sum, size: data.length });
    // S3 saw three parts: the ETag of a multipart object ends in "-<parts>".
    const behind = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: 'big-unknown' }));
    assert.match(behind.ETag ?? '', /-3"?$/);
    const info = await driver.head('big-unknown');
    assert.equal(info?.size, data.length);
    assert.equal(info?.etag, sum);
    assert.deepEqual(info?.metadata, { datastore: 'mariadb' });
    assert.equal(md5(await readAll(await driver.get('big-unknown'))), sum);
    const slice = await readAll(await driver.get('big-unknown', { range: { start: 5 * MiB - 10, end: 5 * MiB + 9 } }));
    assert.deepEqual(slice, data.subarray(5 * MiB - 10, 5 * MiB + 10));
    // ifMatch names our etag (the MD5); S3 is asked with its own ("...-3"), which it accepts.
    const range = { start: 6 * MiB, end: 6 * MiB + 99 };
    assert.deepEqual(
      await readAll(await driver.get('big-unknown', { range, ifMatch: sum })),
      data.subarray(range.start, range.end + 1),
    );
    await assert.rejects(driver.get('big-unknown', { range, ifMatch: md5(Buffer.from('other')) }), IntegrityError);
    // Without an expected MD5 the result still reports the MD5 of what was sent.
    const again = await driver.put('big-unknown-2', chunked(data));
    assert.equal(again.etag, sum);
  });

  test('a known-size body larger than one part goes up as one PutObject: its S3 ETag is its MD5', async () => {
    const data = randomBytes(12 * MiB + 12345);
    const sum = md5(data);
    assert.deepEqual(await driver.put('big-known', chunked(data), { md5: sum, size: data.length }), {
      etag: sum,
      size: data.length,
    });
    assert.deepEqual(await driver.put('big-known-2', chunked(data), { size: data.length }), { etag: sum, size: data.length });
    for (const key of ['big-known', 'big-known-2']) {
      const behind = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(behind.ETag?.replaceAll('"', ''), sum, 'no multipart "-<parts>" ETag');
      assert.equal(md5(await readAll(await driver.get(key))), sum);
    }
  });

  test('an md5 mismatch on a multipart put aborts it: no object, no pending upload', async () => {
    const data = randomBytes(11 * MiB);
    const err = await driver.put('big-bad', chunked(data), { md5: md5(Buffer.from('other')) }).catch((e) => e);
    assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${err}`);
    assert.equal(await driver.head('big-bad'), null);
    const uploads = await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(uploads.Uploads ?? [], []);
    const short = await driver.put('big-short', chunked(data), { size: data.length + 1 }).catch((e) => e);
    assert.ok(short instanceof IntegrityError);
    const long = await driver.put('big-long', chunked(data), { size: 6 * MiB }).catch((e) => e);
    assert.ok(long instanceof IntegrityError);
    assert.equal(await driver.head('big-short'), null);
    assert.equal(await driver.head('big-long'), null);
    assert.deepEqual((await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], []);
  });

  test('aborting a multipart put after its first part aborts the upload', async () => {
    const controller = new AbortController();
    const body = Readable.from(
      (async function* () {
        for (let i = 0; i < 48; i++) {
          if (i === 24) controller.abort(new Error('stop'));
          yield randomBytes(256 * 1024); // 6 MiB before the abort: one part is already up
        }
      })(),
    );
    const err = await driver.put('big-aborted', body, { signal: controller.signal }).catch((e) => e);
    assert.ok(err === controller.signal.reason || err?.name === 'AbortError', `unexpected ${err}`);
    assert.equal(await driver.head('big-aborted'), null);
    assert.deepEqual((await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], []);
  });

  test('a missing bucket reads as not found and lists as empty', async () => {
    const empty = new S3Driver(config());
    try {
      const err = await empty.get('nothing').catch((e) => e);
      assert.ok(err instanceof ObjectNotFound);
      assert.equal(await empty.head('nothing'), null);
      const listed = [];
      for await (const o of empty.list('')) listed.push(o);
      assert.deepEqual(listed, []);
      await empty.delete('nothing');
    } finally {
      await empty.close();
    }
  });

  test('AWS_* variables in the environment change nothing', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_CA_BUNDLE: '/nonexistent/ca.pem',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
      AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9',
      AWS_REGION: 'eu-west-3',
      AWS_ACCESS_KEY_ID: 'AKIAWRONG',
      AWS_SECRET_ACCESS_KEY: 'wrong',
      AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_SUPPORTED',
      AWS_MAX_ATTEMPTS: '1',
    });
    const d = new S3Driver(config({ bucket }));
    try {
      const put = await d.put('env-probe', Readable.from([Buffer.from('hello')]));
      assert.equal(put.etag, md5(Buffer.from('hello')));
      assert.equal((await readAll(await d.get('env-probe'))).toString(), 'hello');
    } finally {
      process.env = saved;
      await d.close();
    }
  });
});

describe('S3Driver when the network fails', () => {
  let driver: S3Driver;
  let direct: S3Driver;
  const data = randomBytes(2 * MiB);

  before(async () => {
    const c = config();
    direct = new S3Driver(c);
    await direct.put('blob', Readable.from([data]));
    driver = new S3Driver({ ...c, endpoint: await proxy.url(), maxAttempts: 2, idleTimeoutMs: 5000 });
  });

  after(async () => {
    proxy.mode = 'pass';
    await driver.close();
    await direct.close();
  });

  test('the proxy passes traffic through when healthy', async () => {
    proxy.mode = 'pass';
    assert.equal(md5(await readAll(await driver.get('blob'))), md5(data));
  });

  test('503 answers are StorageUnavailable (transient)', async () => {
    proxy.mode = '503';
    for (const op of [() => driver.head('blob'), () => driver.get('blob'), () => driver.put('x', Readable.from([data]))]) {
      const err = await op().catch((e) => e);
      assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${err}`);
      assert.equal(err.transient, true);
    }
    assert.equal(await direct.head('x'), null);
  });

  test('a connection cut mid-body fails the read with StorageUnavailable', async () => {
    proxy.mode = 'cut-response';
    const stream = await driver.get('blob');
    const err = await readAll(stream).catch((e) => e);
    assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${err}`);
  });

  test('a connection cut mid-upload fails the put with StorageUnavailable and leaves nothing', async () => {
    proxy.mode = 'pass';
    proxy.breakUploads = 2; // every attempt the SDK makes
    const err = await driver.put('cut-upload', Readable.from([data])).catch((e) => e);
    assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${err}`);
    assert.equal(proxy.breakUploads, 0);
    assert.equal(await direct.head('cut-upload'), null);
  });

  test('a refused connection is StorageUnavailable', async () => {
    const closed = net.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port } = closed.address() as net.AddressInfo;
    closed.close();
    await once(closed, 'close');
    const d = new S3Driver({ ...config(), endpoint: `http://127.0.0.1:${port}`, maxAttempts: 1 });
    try {
      const err = await d.head('x').catch((e) => e);
      assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${err}`);
    } finally {
      await d.close();
    }
  });
});
