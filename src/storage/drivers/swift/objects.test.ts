import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequest } from '../../../errors.ts';
import { encodePath, keyOfLocation, listingInfo, metadataHeaders } from './objects.ts';

const EP = 'http://127.0.0.1:8081/v1/AUTH_test/database_backups/';

describe('Swift object names', () => {
  it('percent-encodes each path segment and keeps the slashes', () => {
    assert.equal(encodePath('a b/c%d/#?+&=é'), 'a%20b/c%25d/%23%3F%2B%26%3D%C3%A9');
    assert.equal(keyOfLocation(EP, EP + encodePath('a b/c%d/#?+&=é')), 'a b/c%d/#?+&=é');
  });

  it('maps only safe keys under the endpoint, compared as text', () => {
    assert.equal(keyOfLocation(EP, `${EP}abc_00000001`), 'abc_00000001');
    assert.equal(keyOfLocation(EP, `${EP}a..b.tar.gz`), 'a..b.tar.gz');
    for (const foreign of [
      EP,
      `${EP}../x`,
      `${EP}a/../../x`,
      `${EP}%2e%2e/x`,
      `${EP}.%2E/x`,
      `${EP}a%2Fb`,
      `${EP}x?y`,
      `${EP}x#y`,
      `${EP}%zz`,
      `${EP}a%00b`,
      `${EP}/abs`,
      'http://127.0.0.1:8081/v1/AUTH_test/database_backups_segments/x',
      'http://127.0.0.1:8081/v1/AUTH_test/database_backups',
      'http://user@127.0.0.1:8081/v1/AUTH_test/database_backups/x',
      'HTTP://127.0.0.1:8081/v1/AUTH_test/database_backups/x',
    ]) {
      assert.equal(keyOfLocation(EP, foreign), null, foreign);
    }
  });
});

describe('Swift metadata', () => {
  it('turns metadata into X-Object-Meta-* headers and refuses what would not round-trip', () => {
    assert.deepEqual(metadataHeaders({ Datastore: 'mariadb', 'parent-location': 'http://h/x%20y' }, 'put x'), {
      'x-object-meta-datastore': 'mariadb',
      'x-object-meta-parent-location': 'http://h/x%20y',
    });
    const bads: Record<string, string>[] = [{ 'a b': 'x' }, { a_b: 'x' }, { '': 'x' }, { ok: 'é' }, { ok: 'line\nbreak' }];
    for (const bad of bads) {
      assert.throws(() => metadataHeaders(bad, 'put x'), BadRequest, JSON.stringify(bad));
    }
  });

  it('reads a manifest in a listing by its slo_etag and total size', () => {
    const slo = listingInfo({
      name: 'id.tar.gz',
      hash: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      bytes: 300,
      slo_etag: '"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"',
      last_modified: '2026-01-02T03:04:05.678900',
    });
    assert.deepEqual(slo, {
      key: 'id.tar.gz',
      size: 300,
      etag: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
      metadata: {},
      segmented: true,
      lastModified: new Date('2026-01-02T03:04:05.678Z'),
    });
    const plain = listingInfo({ name: 'id_00000001', hash: 'cccccccccccccccccccccccccccccccc', bytes: 5 });
    assert.equal(plain.segmented, false);
    assert.equal(plain.etag, 'cccccccccccccccccccccccccccccccc');
  });
});
