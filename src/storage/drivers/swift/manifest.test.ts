import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequest, InvalidKey } from '../../../errors.ts';
import { parseDloManifest, parseSloManifest, sloManifestBody } from './manifest.ts';

const H = 'd41d8cd98f00b204e9800998ecf8427e';

describe('SLO manifests', () => {
  it('gives segments of the own container without a container, others with theirs', () => {
    const entries = [
      { name: '/database_backups/a_00000001', hash: H, bytes: 5 },
      { name: '/database_backups_segments/a.enc/slo/1/2/3/00000001', hash: `"${H.toUpperCase()}"`, bytes: 0 },
    ];
    assert.deepEqual(parseSloManifest(entries, 'database_backups', 'm'), [
      { key: 'a_00000001', size: 5, etag: H },
      { key: 'a.enc/slo/1/2/3/00000001', size: 0, etag: H, container: 'database_backups_segments' },
    ]);
  });

  it('refuses names that are not "/<container>/<object>" of this account, ranges, nested manifests and bad entries', () => {
    const bad = [
      { name: 'database_backups/x', hash: H, bytes: 1 },
      { name: '/x', hash: H, bytes: 1 },
      { name: '//x', hash: H, bytes: 1 },
      { name: '/../AUTH_other/c/x', hash: H, bytes: 1 },
      { name: '/./x', hash: H, bytes: 1 },
      { name: '/c\u0001/x', hash: H, bytes: 1 },
      { name: '/c/x', hash: H, bytes: 1, range: '0-0' },
      { name: '/c/x', hash: H, bytes: 1, sub_slo: true },
      { name: '/c/x', hash: 'nope', bytes: 1 },
      { name: '/c/x', hash: H, bytes: -1 },
      { name: 7, hash: H, bytes: 1 },
    ];
    for (const entry of bad) assert.throws(() => parseSloManifest([entry], 'c', 'm'), BadRequest, JSON.stringify(entry));
    assert.throws(() => parseSloManifest({ not: 'a list' }, 'c', 'm'), BadRequest);
    // The object part must be a safe key as everywhere else.
    for (const name of ['/c/', '/c/a/../b', '/c//x']) {
      assert.throws(() => parseSloManifest([{ name, hash: H, bytes: 1 }], 'c', 'm'), InvalidKey, name);
    }
  });

  it('writes each segment under its own container, refusing one that is not a plain name', () => {
    const body = sloManifestBody(
      [
        { key: 'a_00000001', size: 1, etag: H },
        { key: 'b/00000000', size: 2, etag: H, container: 'c_segments' },
      ],
      'c',
      'm',
    );
    assert.deepEqual(JSON.parse(body), [
      { path: '/c/a_00000001', etag: H, size_bytes: 1 },
      { path: '/c_segments/b/00000000', etag: H, size_bytes: 2 },
    ]);
    assert.throws(() => sloManifestBody([{ key: 'x', size: 1, etag: H, container: '..' }], 'c', 'm'), BadRequest);
    assert.throws(() => sloManifestBody([{ key: 'x', size: 1, etag: 'zz' }], 'c', 'm'), BadRequest);
  });
});

describe('DLO manifests', () => {
  it('splits X-Object-Manifest into a container and a prefix, percent-decoded', () => {
    assert.deepEqual(parseDloManifest('db_segments/a.enc/1700000000.0/42/', 'm'), {
      container: 'db_segments',
      prefix: 'a.enc/1700000000.0/42/',
    });
    assert.deepEqual(parseDloManifest('my%20segments/b%2Bc', 'm'), { container: 'my segments', prefix: 'b+c' });
  });

  it('refuses a manifest without a plain container and a prefix, bad escapes and unsafe prefixes', () => {
    for (const bad of ['', 'noslash', '/prefix', 'c/', '%ZZ/p', '../p', 'c%2Fd/p']) {
      assert.throws(() => parseDloManifest(bad, 'm'), BadRequest, bad);
    }
    assert.throws(() => parseDloManifest('c/../etc', 'm'), InvalidKey);
  });
});
