import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequest, ConfigError } from '../errors.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { FsDriver } from '../storage/drivers/fs.ts';
import { Catalog } from './catalog.ts';

// Only endpoint/keyOf/locationOf matter to the trust check; the rest must never be called.
function fakeDriver(endpoint: string, server?: string): StorageDriver {
  const refuse = () => {
    throw new Error('the trust check must not touch storage');
  };
  return {
    kind: 'fake',
    endpoint,
    server,
    locationOf: (key) => endpoint + key.split('/').map(encodeURIComponent).join('/'),
    keyOf: (location) => (location.startsWith(endpoint) ? decodeURIComponent(location.slice(endpoint.length)) : null),
    head: refuse,
    get: refuse,
    put: refuse,
    delete: refuse,
    list: refuse,
    segments: refuse,
    headSegment: refuse,
    getSegment: refuse,
    putManifest: refuse,
    limits: refuse,
    close: refuse,
  } as StorageDriver;
}

const SWIFT1 = 'http://127.0.0.1:8081/v1/AUTH_test/database_backups/';
const SWIFT2 = 'http://[::1]:8082/v1/AUTH_test/database_backups/';
const FS = 'file:///srv/tern/region3/database_backups/';
const ID = 'cdb59309-7a07-44c4-9187-edf1f006546f';

const catalog = new Catalog([
  { region: 'region1', apiUrl: 'http://127.0.0.1:8779', driver: fakeDriver(SWIFT1) },
  { region: 'region2', driver: fakeDriver(SWIFT2) },
  { region: 'region3', driver: fakeDriver(FS) },
]);

describe('Catalog.resolve', () => {
  const accepted: Array<[string, string, string, string]> = [
    ['swift object', `${SWIFT1}${ID}.xbstream.gz.enc`, 'region1', `${ID}.xbstream.gz.enc`],
    ['segment name', `${SWIFT1}${ID}_00000003`, 'region1', `${ID}_00000003`],
    ['127.1 is 127.0.0.1', `http://127.1:8081/v1/AUTH_test/database_backups/${ID}.tar.gz`, 'region1', `${ID}.tar.gz`],
    ['decimal host', `http://2130706433:8081/v1/AUTH_test/database_backups/${ID}.tar.gz`, 'region1', `${ID}.tar.gz`],
    ['upper-case scheme', `HTTP://127.0.0.1:8081/v1/AUTH_test/database_backups/${ID}.tar.gz`, 'region1', `${ID}.tar.gz`],
    ['long IPv6 form', `http://[0:0:0:0:0:0:0:1]:8082/v1/AUTH_test/database_backups/${ID}.tar.gz`, 'region2', `${ID}.tar.gz`],
    ['file endpoint', `${FS}${ID}.tar.gz.enc`, 'region3', `${ID}.tar.gz.enc`],
    ['file://localhost', `file://localhost/srv/tern/region3/database_backups/${ID}.tar.gz`, 'region3', `${ID}.tar.gz`],
    ['encoded space in name', `${SWIFT1}my%20backup.tar.gz`, 'region1', 'my backup.tar.gz'],
    ['literal percent in name', `${SWIFT1}100%25.tar.gz`, 'region1', '100%.tar.gz'],
    ['dots inside a name', `${SWIFT1}a..b.tar.gz`, 'region1', 'a..b.tar.gz'],
    ['pseudo folder', `${SWIFT1}folder/${ID}.tar.gz`, 'region1', `folder/${ID}.tar.gz`],
  ];
  for (const [name, location, region, key] of accepted) {
    it(`accepts ${name}`, () => {
      const got = catalog.resolve(location);
      assert.equal(got.region, region);
      assert.equal(got.key, key);
      assert.equal(got.driver, catalog.region(region)!.driver);
    });
  }

  const refused: Array<[string, unknown, RegExp]> = [
    ['a number', 42, /must be a URL string/],
    ['an empty string', '', /must be a URL string/],
    ['a relative path', `database_backups/${ID}.tar.gz`, /not an absolute URL/],
    ['a plain file path', '/etc/passwd', /not an absolute URL/],
    ['file URL outside every root', 'file:///etc/passwd', /region this region trusts \(catalog: region1, region2, region3\)/],
    ['an unknown host', `http://10.0.0.1:8081/v1/AUTH_test/database_backups/${ID}.tar.gz`, /trusts/],
    ['a hostname for a trusted IP', `http://localhost:8081/v1/AUTH_test/database_backups/${ID}.tar.gz`, /trusts/],
    ['another port', `http://127.0.0.1:8083/v1/AUTH_test/database_backups/${ID}.tar.gz`, /trusts/],
    ['https for an http endpoint', `https://127.0.0.1:8081/v1/AUTH_test/database_backups/${ID}.tar.gz`, /trusts/],
    ['another account', `http://127.0.0.1:8081/v1/AUTH_other/database_backups/${ID}.tar.gz`, /trusts/],
    ['a sibling container sharing the prefix', `http://127.0.0.1:8081/v1/AUTH_test/database_backups_x/${ID}`, /trusts/],
    ['the endpoint itself', SWIFT1, /does not name an object/],
    ['an empty segment', `${SWIFT1}a//b`, /empty path segment/],
    ['a trailing slash', `${SWIFT1}folder/`, /empty path segment/],
    ['user-info', `http://admin:s3cret@127.0.0.1:8081/v1/AUTH_test/database_backups/${ID}`, /credentials/],
    ['empty user-info', `http://@127.0.0.1:8081/v1/AUTH_test/database_backups/${ID}`, /credentials/],
    ['a query', `${SWIFT1}${ID}.tar.gz?multipart-manifest=get`, /query or fragment/],
    ['an empty query', `${SWIFT1}${ID}.tar.gz?`, /query or fragment/],
    ['a fragment', `${SWIFT1}${ID}.tar.gz#x`, /query or fragment/],
    ['a .. segment', `${SWIFT1}../AUTH_test/database_backups/${ID}`, /"\.\."/],
    ['a .. escaping the account', `http://127.0.0.1:8081/v1/AUTH_other/../AUTH_test/database_backups/${ID}`, /"\.\."/],
    ['a . segment', `${SWIFT1}./${ID}.tar.gz`, /"\.\."/],
    ['%2e%2e', `${SWIFT1}%2e%2e/x`, /"\.\."/],
    ['%2E%2e', `${SWIFT1}%2E%2e/x`, /"\.\."/],
    ['.%2e', `${SWIFT1}.%2e/x`, /"\.\."/],
    ['%2e', `${SWIFT1}%2e/x`, /"\.\."/],
    ['double-encoded dots', `${SWIFT1}%252e%252e/x`, /"\.\."/],
    ['..%2f', `${SWIFT1}..%2fsecret`, /"\.\."/],
    ['an encoded slash', `${SWIFT1}a%2Fb`, /encoded slashes/],
    ['an encoded backslash', `${SWIFT1}a%5cb`, /encoded slashes/],
    ['file traversal', `file:///srv/tern/region3/database_backups/../../../../etc/passwd`, /"\.\."/],
    ['file encoded traversal', `file:///srv/tern/region3/database_backups/%2e%2e/%2e%2e/x`, /"\.\."/],
    ['a backslash', `${SWIFT1}a\\..\\x`, /backslashes/],
    ['a tab hiding dots', `${SWIFT1}.\t./x`, /control characters/],
    ['a newline', `${SWIFT1}x\ny`, /control characters/],
    ['a NUL', `${SWIFT1}x\u0000y`, /control characters/],
    ['an encoded NUL', `${SWIFT1}x%00y`, /encoded slashes|control/],
    ['an encoded newline', `${SWIFT1}x%0ay`, /encoded slashes|control/],
    ['leading space', ` ${SWIFT1}x`, /spaces/],
    ['malformed encoding', `${SWIFT1}x%zzy`, /malformed/],
    ['a huge location', `${SWIFT1}${'a'.repeat(5000)}`, /longer than/],
  ];
  for (const [name, location, message] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => catalog.resolve(location),
        (err: unknown) => {
          assert.ok(err instanceof BadRequest, `expected BadRequest, got ${err}`);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  it('never echoes credentials or raw control characters', () => {
    const err = catch_(() => catalog.resolve('http://admin:s3cret@10.0.0.1/x'));
    assert.ok(!err.message.includes('s3cret'));
    const err2 = catch_(() => catalog.resolve(`http://10.0.0.1/x\u0007y`));
    assert.ok(!err2.message.includes('\u0007'));
  });

  it('refuses a key the driver disowns', () => {
    const picky = fakeDriver(SWIFT1);
    picky.keyOf = () => null;
    const c = new Catalog([{ region: 'r', driver: picky }]);
    assert.throws(() => c.resolve(`${SWIFT1}x.tar.gz`), /trusts \(catalog: r\)/);
  });

  it('refuses an unsafe key a sloppy driver hands back', () => {
    for (const bad of ['../escape', '/abs', 'a/./b', 'a\\b', 'a\u0000b', '']) {
      const sloppy = fakeDriver(SWIFT1);
      sloppy.keyOf = () => bad;
      const c = new Catalog([{ region: 'r', driver: sloppy }]);
      assert.throws(() => c.resolve(`${SWIFT1}x.tar.gz`), /trusts \(catalog: r\)/, JSON.stringify(bad));
    }
  });

  it('picks the closer region when endpoints nest', () => {
    const outer = 'http://127.0.0.1:9000/store/';
    const inner = 'http://127.0.0.1:9000/store/inner/';
    const c = new Catalog([
      { region: 'outer', driver: fakeDriver(outer) },
      { region: 'inner', driver: fakeDriver(inner) },
    ]);
    assert.equal(c.resolve(`${inner}x`).region, 'inner');
    assert.equal(c.resolve(`${outer}x`).region, 'outer');
  });

  it('an empty catalog trusts nothing', () => {
    assert.throws(() => new Catalog([]).resolve(`${SWIFT1}x`), /catalog: empty/);
  });
});

describe('Catalog', () => {
  it('lists and looks up regions', () => {
    assert.deepEqual(
      catalog.regions().map((r) => r.region),
      ['region1', 'region2', 'region3'],
    );
    assert.equal(catalog.region('region1')!.apiUrl, 'http://127.0.0.1:8779');
    assert.equal(catalog.region('nowhere'), undefined);
  });

  it('refuses duplicate regions and endpoints', () => {
    assert.throws(
      () =>
        new Catalog([
          { region: 'a', driver: fakeDriver(SWIFT1) },
          { region: 'a', driver: fakeDriver(SWIFT2) },
        ]),
      ConfigError,
    );
    assert.throws(
      () =>
        new Catalog([
          { region: 'a', driver: fakeDriver(SWIFT1) },
          { region: 'b', driver: fakeDriver('http://127.1:8081/v1/AUTH_test/database_backups') },
        ]),
      /same storage endpoint/,
    );
    assert.throws(() => new Catalog([{ region: 'a', driver: fakeDriver('not a url') }]), ConfigError);
  });

  it('refuses at start-up two regions with the same S3 bucket name on different servers', () => {
    const twoServers = () =>
      new Catalog([
        { region: 'a', driver: fakeDriver('s3://backups/', 'http://s3.region-a:8080') },
        { region: 'b', driver: fakeDriver('s3://backups/b/', 'http://s3.region-b:8080') },
      ]);
    assert.throws(twoServers, (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /regions a and b both use s3:\/\/backups\/ but on different servers/);
      assert.match(err.message, /http:\/\/s3\.region-a:8080 and http:\/\/s3\.region-b:8080/);
      return true;
    });
    // The same bucket on the same server under other prefixes is one store: fine.
    const shared = new Catalog([
      { region: 'a', driver: fakeDriver('s3://backups/a/', 'http://s3:8080') },
      { region: 'b', driver: fakeDriver('s3://backups/b/', 'http://s3:8080') },
    ]);
    assert.equal(shared.resolve('s3://backups/b/x.tar.gz').region, 'b');
    // Different buckets on different servers: fine.
    new Catalog([
      { region: 'a', driver: fakeDriver('s3://backups-a/', 'http://s3.region-a:8080') },
      { region: 'b', driver: fakeDriver('s3://backups-b/', 'http://s3.region-b:8080') },
    ]);
  });

  it('refuses the same configuration built from real S3 drivers', async () => {
    const { S3Driver } = await import('../storage/drivers/s3.ts');
    const s3 = (endpoint: string) =>
      new S3Driver({
        endpoint,
        region: 'us-east-1',
        bucket: 'backups',
        prefix: '',
        accessKeyId: 'k',
        secretAccessKey: 's',
        forcePathStyle: true,
        partSize: 5 * 1024 * 1024,
      });
    const [a, b] = [s3('http://127.0.0.1:9001'), s3('http://127.0.0.1:9002/')];
    try {
      assert.throws(
        () =>
          new Catalog([
            { region: 'a', driver: a },
            { region: 'b', driver: b },
          ]),
        /different servers/,
      );
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('trusts a region whose driver learns its endpoint only after connecting', () => {
    let connected = false;
    const late = fakeDriver(SWIFT1);
    Object.defineProperty(late, 'endpoint', {
      get() {
        if (!connected) throw new ConfigError('endpoint is known after connect()');
        return SWIFT1;
      },
    });
    const c = new Catalog([{ region: 'keystone', driver: late }]);
    assert.throws(() => c.resolve(`${SWIFT1}x.tar.gz`), /trusts \(catalog: keystone\)/);
    connected = true;
    assert.equal(c.resolve(`${SWIFT1}x.tar.gz`).key, 'x.tar.gz');
  });
});

function catch_(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

describe('Catalog with the real fs driver (keyOf/locationOf are pure)', () => {
  const fs1 = new FsDriver({ root: '/srv/tern/region 1%', container: 'database_backups' });
  const fs2 = new FsDriver({ root: '/srv/tern/region2', container: 'database_backups' });
  const c = new Catalog([
    { region: 'region1', driver: fs1 },
    { region: 'region2', driver: fs2 },
  ]);

  for (const key of [`${ID}.xbstream.gz.enc`, `${ID}_00000001`, 'a b#c?.tar.gz', 'ünï.tar.gz', 'folder/x.tar.gz']) {
    it(`round-trips ${JSON.stringify(key)}`, () => {
      const got = c.resolve(fs1.locationOf(key));
      assert.equal(got.region, 'region1');
      assert.equal(got.key, key);
    });
  }
  it('keeps the two roots apart', () => {
    assert.equal(c.resolve(fs2.locationOf('x.tar.gz')).region, 'region2');
    assert.throws(() => c.resolve('file:///srv/tern/region2/other/x.tar.gz'), /trusts/);
    assert.throws(() => c.resolve('file:///srv/tern/region2/database_backups/../../region%201%25/database_backups/x'), /"\.\."/);
    assert.throws(() => c.resolve('file:///srv/tern/region2/.meta/database_backups/x.tar.gz'), /trusts/);
  });
});
