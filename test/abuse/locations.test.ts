import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { stableId } from '../../src/config.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';
import { type CountingListener, countingListener, redirectingSwift } from './listeners.ts';

// Locations that must be refused before any connection is opened. Every host they name that could
// be reached on loopback is a listener that counts accepted connections; after the whole matrix the
// count must be 0. The catalog holds region1's real Swift endpoint (127.0.0.1:8081, account test)
// and two fake "catalog" Swifts whose answers try to send Tern to the counting listener.

const SWIFT1 = 'http://127.0.0.1:8081/v1/AUTH_test/database_backups';
const MARIADB_10_11 = stableId('datastore-version', 'mariadb', '10.11');

describe('abuse: locations outside the catalog open no connection', () => {
  let region: TestRegion;
  let v4: CountingListener;
  let v6: CountingListener | undefined;
  const fakes: Array<{ close(): Promise<void> }> = [];
  let redirectPort = 0;
  let elsewherePort = 0;

  before(async () => {
    v4 = await countingListener('127.0.0.1');
    v6 = await countingListener('::1').catch(() => undefined);
    const elsewhere = `http://127.0.0.1:${v4.port}`;
    const redirecting = await redirectingSwift(elsewhere);
    const storageElsewhere = await redirectingSwift(elsewhere, { storageElsewhere: true });
    fakes.push(redirecting, storageElsewhere);
    redirectPort = redirecting.port;
    elsewherePort = storageElsewhere.port;
    const swift = (authUrl: string) => ({ driver: 'swift', authUrl, user: 'test:tester', key: 'testing' });
    region = await startTestRegion({
      name: 'abuse',
      extra: {
        catalog: [
          { region: 'region1', storage: swift('http://127.0.0.1:8081/auth/v1.0') },
          { region: 'redirecting', storage: swift(`http://127.0.0.1:${redirectPort}/auth/v1.0`) },
          { region: 'storage-elsewhere', storage: swift(`http://127.0.0.1:${elsewherePort}/auth/v1.0`) },
        ],
      },
    });
  });

  after(async () => {
    await region?.stop();
    await Promise.all([v4?.close(), v6?.close(), ...fakes.map((f) => f.close())]);
  });

  const rowCount = async () => {
    const r = await region.call('GET', '/v1.0/admin/backups?all_projects=1&limit=1000', { token: region.tokens.admin });
    assert.equal(r.status, 200, r.text);
    return r.body.backups.length as number;
  };

  test('the matrix of hostile locations is refused with a Trove fault, no row and no connection', async (t) => {
    const P = v4.port;
    const P6 = v6?.port ?? P;
    const obj = 'v1/AUTH_test/database_backups/a.xbstream.gz';
    const locations = [
      `http://127.0.0.1:${P}/${obj}`, // another loopback port
      `http://[::1]:${P6}/${obj}`, // IPv6 loopback
      `http://[::ffff:127.0.0.1]:${P}/${obj}`, // IPv4-mapped IPv6
      `http://2130706433:${P}/${obj}`, // decimal IP
      `http://0x7f000001:${P}/${obj}`, // hex IP
      `http://0177.0.0.1:${P}/${obj}`, // octal IP
      `http://127.1:${P}/${obj}`, // short IP
      `http://localhost:${P}/${obj}`, // a DNS name not in the catalog
      `http://localhost:8081/${obj}`, // the catalog host under another name
      `http://127.0.0.1:8081.attacker.example/${obj}`,
      'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      'file:///etc/passwd',
      'file:///proc/self/environ',
      `ftp://127.0.0.1:${P}/${obj}`,
      `gopher://127.0.0.1:${P}/_a`,
      `https://127.0.0.1:8081/${obj}`, // scheme differs from the catalog's
      `//127.0.0.1:${P}/${obj}`, // scheme-relative
      `http://tester:testing@127.0.0.1:8081/${obj}`, // user-info on the catalog host
      `http://127.0.0.1:8081@127.0.0.1:${P}/${obj}`, // user-info that hides the real host
      `http://127.0.0.1:${P}\\@127.0.0.1:8081/${obj}`, // backslash
      `${SWIFT1}/../../AUTH_other/database_backups/a.xbstream.gz`,
      `${SWIFT1}/%2e%2e/%2e%2e/AUTH_other/database_backups/a.xbstream.gz`,
      `${SWIFT1}/%252e%252e/%252e%252e/AUTH_other/database_backups/a.xbstream.gz`, // double-encoded
      `${SWIFT1}%2f..%2f..%2fAUTH_other%2fdatabase_backups%2fa.xbstream.gz`, // encoded slashes
      'http://127.0.0.1:8081/v1/AUTH_other/database_backups/a.xbstream.gz', // another project's account
      `${SWIFT1}/a.xbstream.gz?multipart-manifest=get`,
      `${SWIFT1}/a.xbstream.gz#x`,
      `${SWIFT1}/`, // no object
      `${SWIFT1}/a\u0000b`, // control character
      ` ${SWIFT1}/a.xbstream.gz`, // leading space
      `${SWIFT1}/${'a'.repeat(5000)}`, // over-long
      `http://127.0.0.1:${P}`,
      'not a url',
    ];
    const rowsBefore = await rowCount();
    const seen: Record<number, number> = {};
    for (const location of locations) {
      for (const body of [
        { backup: { name: 'abuse', location } },
        {
          backup: {
            name: 'abuse',
            restore_from: { remote_location: location, local_datastore_version_id: MARIADB_10_11, size: 1 },
          },
        },
      ]) {
        const r = await region.call('POST', '/v1.0/p1/backups', { body });
        seen[r.status] = (seen[r.status] ?? 0) + 1;
        assert.ok([400, 403, 404].includes(r.status), `${location}: ${r.status} ${r.text}`);
        const fault = Object.values(r.body ?? {})[0] as { code: number; message: string } | undefined;
        assert.equal(fault?.code, r.status, `${location}: Trove fault body: ${r.text}`);
        assert.ok(fault!.message.length > 10, `${location}: a message a person can act on`);
        assert.ok(!fault!.message.includes('testing'), `${location}: credentials are not echoed: ${fault!.message}`);
      }
    }
    assert.equal(await rowCount(), rowsBefore, 'no row was created');
    assert.equal(v4.accepted(), 0, 'no connection to 127.0.0.1');
    assert.equal(v6?.accepted() ?? 0, 0, 'no connection to ::1');
    t.diagnostic(
      `refused ${locations.length * 2} requests (${locations.length} locations x 2 forms): ${JSON.stringify(seen)}; connections opened: 0`,
    );
  });

  test('a catalog Swift that redirects elsewhere is not followed', async () => {
    const r = await region.call('POST', '/v1.0/p1/backups', {
      body: {
        backup: { name: 'redirected', location: `http://127.0.0.1:${redirectPort}/v1/AUTH_test/database_backups/a.xbstream.gz` },
      },
    });
    assert.ok(r.status >= 400 && r.status !== 500, `${r.status} ${r.text}`);
    assert.equal(v4.accepted(), 0, 'the redirect target was never contacted');
  });

  test('a catalog Swift whose auth names a storage URL outside the catalog is not used', async () => {
    const r = await region.call('POST', '/v1.0/p1/backups', {
      body: {
        backup: { name: 'elsewhere', location: `http://127.0.0.1:${elsewherePort}/v1/AUTH_test/database_backups/a.xbstream.gz` },
      },
    });
    assert.ok(r.status >= 400 && r.status !== 500, `${r.status} ${r.text}`);
    assert.equal(v4.accepted(), 0, 'the storage URL named by the auth answer was never contacted');
  });
});
