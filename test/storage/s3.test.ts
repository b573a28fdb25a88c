import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
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
import { storageContract } from './contract.ts';

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

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** A stream of unknown length: chunks of 64 KiB from a generator, no size anywhere. */
function unknownLength(data: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += 64 * 1024) yield data.subarray(i, i + 64 * 1024);
    })(),
  );
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

before(async () => {
  const res = await fetch(`${ENDPOINT}/info`).catch(() => null);
  assert.ok(res?.ok, `Swift region1 is not answering at ${ENDPOINT}: run bash scripts/swift-regions.sh start`);
});

after(async () => {
  for (const bucket of BUCKETS) await removeBucket(bucket);
  raw.destroy();
});

storageContract('s3', async () => {
  const driver = new S3Driver(config());
  return driver;
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
    const put = await driver.put('big-unknown', unknownLength(data), { md5: sum, metadata: { Datastore: 'mariadb' } });
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
    // Without an expected MD5 the result still reports the MD5 of what was sent.
    const again = await driver.put('big-unknown-2', unknownLength(data));
    assert.equal(again.etag, sum);
  });

  test('an md5 mismatch on a multipart put aborts it: no object, no pending upload', async () => {
    const data = randomBytes(11 * MiB);
    const err = await driver.put('big-bad', unknownLength(data), { md5: md5(Buffer.from('other')) }).catch((e) => e);
    assert.ok(err instanceof IntegrityError, `expected IntegrityError, got ${err}`);
    assert.equal(await driver.head('big-bad'), null);
    const uploads = await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(uploads.Uploads ?? [], []);
    const short = await driver.put('big-short', unknownLength(data), { size: data.length + 1 }).catch((e) => e);
    assert.ok(short instanceof IntegrityError);
    const long = await driver.put('big-long', unknownLength(data), { size: 6 * MiB }).catch((e) => e);
    assert.ok(long instanceof IntegrityError);
    assert.equal(await driver.head('big-short'), null);
    assert.equal(await driver.head('big-long'), null);
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
  type Mode = 'pass' | '503' | 'cut';
  let mode: Mode = 'pass';
  let proxy: net.Server;
  const sockets = new Set<net.Socket>();
  let driver: S3Driver;
  let direct: S3Driver;
  const data = randomBytes(2 * MiB);

  before(async () => {
    // Forwards to Swift; '503' answers every request itself; 'cut' drops the connection once
    // 256 KiB of the response went through (mid-body for a 2 MiB object).
    proxy = net.createServer((client) => {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      client.on('error', () => {});
      if (mode === '503') {
        client.once('data', () =>
          client.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'),
        );
        return;
      }
      const upstream = net.connect(Number(new URL(ENDPOINT).port), '127.0.0.1');
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.pipe(upstream);
      let sent = 0;
      const cutting = mode === 'cut';
      upstream.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        if (cutting && sent > 256 * 1024) {
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(chunk);
      });
      upstream.on('end', () => client.end());
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const { port } = proxy.address() as net.AddressInfo;
    const c = config();
    direct = new S3Driver(c);
    await direct.put('blob', Readable.from([data]));
    driver = new S3Driver({ ...c, endpoint: `http://127.0.0.1:${port}`, maxAttempts: 2, idleTimeoutMs: 5000 });
  });

  after(async () => {
    await driver.close();
    await direct.close();
    for (const s of sockets) s.destroy();
    proxy.close();
  });

  test('the proxy passes traffic through when healthy', async () => {
    mode = 'pass';
    assert.equal(md5(await readAll(await driver.get('blob'))), md5(data));
  });

  test('503 answers are StorageUnavailable (transient)', async () => {
    mode = '503';
    for (const op of [() => driver.head('blob'), () => driver.get('blob'), () => driver.put('x', Readable.from([data]))]) {
      const err = await op().catch((e) => e);
      assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${err}`);
      assert.equal(err.transient, true);
    }
  });

  test('a connection cut mid-body fails the read with StorageUnavailable', async () => {
    mode = 'cut';
    const stream = await driver.get('blob');
    const err = await readAll(stream).catch((e) => e);
    assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${err}`);
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
