import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { startTestRegion, type TestRegion } from '../helpers/tern.ts';

// Property-based fuzzing of request bodies: whatever arrives, Tern answers with a Trove fault (or
// a 202 for a body that is really valid), never a 5xx, and a refusal changes nothing.

const RUNS = Number(process.env.TERN_FUZZ_RUNS ?? 300);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * True for a create-instance body Tern must accept (JSON bodies are not coerced): a name with a
 * non-blank character, an integer volume size in range, no datastore named (the default one) and
 * no restore point (a random backupRef names no backup).
 */
function acceptableInstanceBody(body: unknown): boolean {
  if (!isObject(body) || !isObject(body.instance)) return false;
  const { name, volume, datastore, restorePoint } = body.instance;
  const size = isObject(volume) ? volume.size : undefined;
  return (
    typeof name === 'string' &&
    name.length <= 255 &&
    /\S/.test(name) &&
    Number.isInteger(size) &&
    (size as number) >= 1 &&
    (size as number) <= 1_000_000 &&
    (datastore === undefined || (isObject(datastore) && datastore.type === undefined && datastore.version === undefined)) &&
    restorePoint === undefined
  );
}

describe('abuse: fuzzed request bodies', () => {
  let region: TestRegion;
  let cases = 0;

  before(async () => {
    region = await startTestRegion({ name: 'fuzz' });
  });
  after(async () => {
    await region?.stop();
  });

  const snapshot = async () => {
    const r = await region.call('GET', '/v1.0/admin/backups?all_projects=1&limit=1000', { token: region.tokens.admin });
    assert.equal(r.status, 200);
    const i = await region.call('GET', '/v1.0/p1/instances');
    assert.equal(i.status, 200);
    return JSON.stringify([r.body.backups.map((b: any) => [b.id, b.status]), i.body.instances.map((x: any) => [x.id, x.status])]);
  };

  const check = async (label: string, send: () => Promise<{ status: number; text: string; body: any }>) => {
    const before = await snapshot();
    const r = await send();
    cases++;
    assert.ok(r.status < 500, `${label}: ${r.status} ${r.text.slice(0, 300)}`);
    if (r.status >= 400) {
      const [name, fault] = Object.entries(r.body ?? {})[0] ?? [];
      assert.ok(name && typeof fault === 'object', `${label}: a Trove fault body, got ${r.text.slice(0, 300)}`);
      assert.equal((fault as any).code, r.status);
      assert.equal(await snapshot(), before, `${label}: a refused request changed nothing`);
    }
    return r;
  };

  const fuzzString = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 80 }),
    fc.constantFrom('', ' ', 'a'.repeat(256), 'file:///etc/passwd', 'http://127.0.0.1:1/x', '../..', '\u0000', '%00', 'null'),
  );
  const anyValue = fc.oneof(fuzzString, fc.anything({ maxDepth: 3 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
  const backupBody = fc.record(
    {
      name: anyValue,
      description: anyValue,
      instance: anyValue,
      location: anyValue,
      parent_id: anyValue,
      incremental: fc.oneof(fc.constantFrom(0, 1, 2, -1, '1', true), anyValue),
      restore_from: fc.oneof(
        anyValue,
        fc.record({ remote_location: anyValue, local_datastore_version_id: anyValue, size: anyValue }, { requiredKeys: [] }),
      ),
      source: fc.oneof(anyValue, fc.record({ region: anyValue, id: anyValue }, { requiredKeys: [] })),
    },
    { requiredKeys: [] },
  );

  test('POST /backups with structured random bodies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          backupBody.map((backup) => ({ backup })),
          anyValue,
        ),
        async (body) => {
          await check(`POST /backups ${JSON.stringify(body)?.slice(0, 200)}`, () =>
            region.call('POST', '/v1.0/p1/backups', { body }),
          );
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('POST /instances with structured random bodies', async () => {
    const instanceBody = fc.record(
      {
        name: anyValue,
        datastore: fc.oneof(anyValue, fc.record({ type: anyValue, version: anyValue }, { requiredKeys: [] })),
        volume: fc.oneof(anyValue, fc.record({ size: fc.oneof(fc.integer(), fc.double(), anyValue) }, { requiredKeys: [] })),
        restorePoint: fc.oneof(anyValue, fc.record({ backupRef: fc.oneof(fc.uuid(), anyValue) }, { requiredKeys: [] })),
        flavorRef: anyValue,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          instanceBody.map((instance) => ({ instance })),
          anyValue,
        ),
        async (body) => {
          // A body that is really valid is accepted and starts a server, whose BUILD -> ACTIVE/ERROR
          // in the background would then differ between two snapshots. Valid bodies are the e2e
          // tests' business; this property is about refusals.
          fc.pre(!acceptableInstanceBody(body));
          const r = await check(`POST /instances ${JSON.stringify(body)?.slice(0, 200)}`, () =>
            region.call('POST', '/v1.0/p1/instances', { body }),
          );
          assert.ok(r.status >= 400, `a random body never makes an instance: ${r.text.slice(0, 200)}`);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('POST /backups with random raw bytes and content types', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 500 }),
          fc.json(),
          fc.uint8Array({ maxLength: 500 }).map((a) => Buffer.from(a).toString('latin1')),
        ),
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/x-www-form-urlencoded',
          'application/json; charset=utf-16',
          '',
        ),
        async (raw, type) => {
          await check(`raw ${type} ${JSON.stringify(raw).slice(0, 200)}`, () =>
            region.call('POST', '/v1.0/p1/backups', { raw, headers: type ? { 'content-type': type } : {} }),
          );
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('ids, markers, limits and filters in paths and queries', async () => {
    const part = fc.oneof(fuzzString, fc.uuid(), fc.constantFrom('-1', '0', '1e9', 'NaN', '%', '%zz', '..', '%2e%2e'));
    await fc.assert(
      fc.asyncProperty(part, part, part, async (id, limit, marker) => {
        const q = `limit=${encodeURIComponent(limit)}&marker=${encodeURIComponent(marker)}&datastore=${encodeURIComponent(id)}&instance_id=${encodeURIComponent(id)}`;
        const enc = encodeURIComponent(id);
        await check(`GET list ${q}`, () => region.call('GET', `/v1.0/p1/backups?${q}`));
        await check(`GET /backups/${enc}`, () => region.call('GET', `/v1.0/p1/backups/${enc}`));
        await check(`DELETE /backups/${enc}`, () => region.call('DELETE', `/v1.0/p1/backups/${enc}`));
        await check(`GET /instances/${enc}/backups`, () => region.call('GET', `/v1.0/p1/instances/${enc}/backups?${q}`));
        await check(`GET /datastores/${enc}/versions`, () => region.call('GET', `/v1.0/p1/datastores/${enc}/versions`));
        await check(`GET /instances/${enc}`, () => region.call('GET', `/v1.0/p1/instances/${enc}`));
        await check(`DELETE /instances/${enc}`, () => region.call('DELETE', `/v1.0/p1/instances/${enc}`));
      }),
      { numRuns: Math.ceil(RUNS / 3) },
    );
  });

  test('oversized bodies and headers are refused, not crashed on', async (t) => {
    const big = await check('2 MiB body', () =>
      region.call('POST', '/v1.0/p1/backups', { raw: JSON.stringify({ backup: { name: 'x'.repeat(2 * 1024 * 1024) } }) }),
    );
    assert.equal(big.status, 413);
    const res = await fetch(`${region.url}/v1.0/p1/backups`, {
      headers: { 'x-auth-token': region.tokens.member, 'x-padding': 'y'.repeat(64 * 1024) },
    });
    await res.arrayBuffer();
    assert.equal(res.status, 431, 'a header section over the limit is refused by the HTTP layer');
    t.diagnostic(`fuzz cases run: ${cases}`);
  });
});
