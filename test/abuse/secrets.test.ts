import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.ts';
import { SwiftDriver } from '../../src/storage/drivers/swift.ts';
import { dropContainer, ensureSwiftRegions, swiftConfig, swiftProxyUrl } from '../helpers/swift.ts';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';

// Secrets (API tokens, storage keys and tokens, key material) never appear in logs, faults or API
// output. A region logs at trace level into memory while it is driven through successes and
// failures against real Swift; then everything it said is scanned for every secret it knew.

const MiB = 1024 * 1024;

describe('abuse: secrets stay out of logs, faults and API output', () => {
  let region: TestRegion;
  let source: SwiftDriver;
  const logged: string[] = [];
  const answered: string[] = [];
  const container = `secrets_${randomUUID().slice(0, 8)}`;
  const wrongToken = randomBytes(20).toString('hex');

  before(async () => {
    await ensureSwiftRegions();
    source = new SwiftDriver({ ...swiftConfig(1, container), segmentSize: MiB });
    region = await startTestRegion({
      name: 'secrets',
      logger: createLogger('trace', { write: (line: string) => logged.push(line) }),
      extra: {
        logLevel: 'trace',
        storage: { ...swiftConfig(2, container), driver: 'swift' },
        catalog: [{ region: 'region1', storage: { ...swiftConfig(1, container), driver: 'swift' } }],
      },
    });
  });

  after(async () => {
    await region?.stop();
    await source?.close();
    // The objects and the containers themselves: an emptied container was left in each region.
    await Promise.all([dropContainer(1, container), dropContainer(2, container)]);
  });

  const call = async (...args: Parameters<TestRegion['call']>) => {
    const r = await region.call(...args);
    answered.push(r.text);
    return r;
  };

  const settle = async (id: string) => {
    for (let i = 0; i < 300; i++) {
      const r = await call('GET', `/v1.0/p1/backups/${id}`);
      if (['COMPLETED', 'FAILED'].includes(r.body.backup.status)) return r.body.backup;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    throw new Error(`backup ${id} did not settle`);
  };

  test('successes and failures, then a scan of everything said', async (t) => {
    const key = `${randomUUID()}.xbstream.gz.enc`;
    await source.put(key, Readable.from([randomBytes(3 * MiB + 5)]), {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' },
    });
    const ok = await call('POST', '/v1.0/p1/backups', { body: { backup: { name: 'ok', location: source.locationOf(key) } } });
    assert.equal(ok.status, 202, ok.text);
    assert.equal((await settle(ok.body.backup.id)).status, 'COMPLETED');

    await call('POST', '/v1.0/p1/backups', {
      body: { backup: { name: 'gone', location: source.locationOf('missing.xbstream.gz') } },
    });
    await call('GET', '/v1.0/p1/backups', { token: wrongToken });
    await call('GET', '/v1.0/p2/backups', { token: region.tokens.member });
    await call('POST', '/v1.0/p1/backups', {
      body: { backup: { name: 'creds', location: `http://test:tester:testing@127.0.0.1:8081/v1/AUTH_test/${container}/${key}` } },
    });
    await call('GET', '/v1.0/p1/backups', { headers: { authorization: `Bearer ${wrongToken}` }, token: null });

    // The storage token Tern holds for region1: TempAuth hands the same user the same token.
    const auth = await fetch(`${swiftProxyUrl(1)}/auth/v1.0`, {
      headers: { 'x-storage-user': 'test:tester', 'x-storage-pass': 'testing' },
    });
    const swiftToken = auth.headers.get('x-auth-token')!;
    await auth.arrayBuffer();
    const secrets: Record<string, string> = {
      'admin token': region.tokens.admin,
      'member token': region.tokens.member,
      'other token': region.tokens.other,
      'wrong token': wrongToken,
      'swift key': 'testing',
      'swift token': swiftToken,
      'master key': readFileSync(join(region.dir, 'master-key'), 'utf8').trim(),
    };
    const everything = [...logged, ...answered];
    assert.ok(
      logged.length >= answered.length,
      `the region logged every request (${logged.length} lines, ${answered.length} answers)`,
    );
    for (const [what, secret] of Object.entries(secrets)) {
      assert.ok(secret.length >= 7, what);
      const leaks = everything.filter((line) => line.includes(secret));
      assert.deepEqual(leaks, [], `${what} leaked`);
    }
    t.diagnostic(
      `scanned ${logged.length} log lines and ${answered.length} API answers for ${Object.keys(secrets).length} secrets: 0 found`,
    );
  });
});
