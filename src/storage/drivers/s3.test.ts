import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BadRequest, IntegrityError, InvalidKey, ObjectNotFound, StorageAuthFailed, StorageUnavailable } from '../../errors.ts';
import { S3Driver, type S3DriverConfig } from './s3.ts';
import { s3Error } from './s3-support.ts';

// Offline checks: locations and the classification of S3 failures. The same paths run against a
// real Swift s3api in test/storage/s3.test.ts.

const base: S3DriverConfig = {
  endpoint: 'http://127.0.0.1:8081',
  region: 'us-east-1',
  bucket: 'backups',
  prefix: 'region1/',
  accessKeyId: 'test:tester',
  secretAccessKey: 'testing',
  forcePathStyle: true,
  partSize: 5 * 1024 * 1024,
};

test('locations are s3://bucket/prefix+key and keyOf inverts them', async () => {
  const d = new S3Driver(base);
  try {
    assert.equal(d.kind, 's3');
    assert.equal(d.endpoint, 's3://backups/region1/');
    assert.equal(d.locationOf('abc.xbstream.gz'), 's3://backups/region1/abc.xbstream.gz');
    assert.equal(d.keyOf('s3://backups/region1/abc_00000001'), 'abc_00000001');
    assert.equal(d.keyOf('s3://other/region1/abc'), null);
    assert.equal(d.keyOf('s3://backups/region2/abc'), null);
    assert.equal(d.keyOf('s3://backups/region1/../x'), null);
    assert.equal(d.keyOf('file:///backups/region1/abc'), null);
    assert.throws(() => d.locationOf('../escape'), InvalidKey);
  } finally {
    await d.close();
  }
});

test('parts smaller than S3 allows are refused up front', () => {
  assert.throws(() => new S3Driver({ ...base, partSize: 1024 }), BadRequest);
});

test('S3 failures map to Tern errors without secrets', () => {
  const sdk = (name: string, status?: number, code?: string) =>
    Object.assign(new Error(`${name} testing`), { name, code, $metadata: { httpStatusCode: status } });
  const cases: [Error, new (...args: never[]) => Error][] = [
    [sdk('SignatureDoesNotMatch', 403), StorageAuthFailed],
    [sdk('InvalidAccessKeyId', 403), StorageAuthFailed],
    [sdk('Forbidden', 403), StorageAuthFailed],
    [sdk('NoSuchKey', 404), ObjectNotFound],
    [sdk('NotFound', 404), ObjectNotFound],
    [sdk('NoSuchBucket', 404), ObjectNotFound],
    [sdk('BadDigest', 400), IntegrityError],
    [sdk('ServiceUnavailable', 503), StorageUnavailable],
    [sdk('InternalError', 500), StorageUnavailable],
    [sdk('Error', undefined, 'ECONNRESET'), StorageUnavailable],
    [sdk('TimeoutError'), StorageUnavailable],
  ];
  for (const [err, type] of cases) {
    const mapped = s3Error(err, 'head s3://backups/x', 'backups') as Error;
    assert.ok(mapped instanceof type, `${err.name} -> ${mapped.name}`);
    assert.ok(!mapped.message.includes('testing'), mapped.message);
  }
  assert.match((s3Error(sdk('NoSuchBucket', 404), 'get', 'backups') as Error).message, /bucket "backups" does not exist/);
  const bug = new TypeError('not an S3 failure');
  assert.equal(s3Error(bug, 'get', 'backups'), bug);
  const controller = new AbortController();
  controller.abort(new Error('stop'));
  assert.equal((s3Error(sdk('AbortError'), 'get', 'backups', controller.signal) as Error).message, 'stop');
});
