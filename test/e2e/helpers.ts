import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestRegion, type TestRegion, type TestRegionOptions } from '../helpers/tern.ts';

// A real Tern region for end-to-end tests of instances: its folder open to the mysql and postgres
// users (0711), and every server it started stopped again at the end.

export async function startInstanceRegion(options: TestRegionOptions = {}): Promise<TestRegion> {
  const region = await startTestRegion({ name: 'e2e', ...options });
  chmodSync(region.dir, 0o711);
  const stop = region.stop.bind(region);
  region.stop = async () => {
    const servers = region.tern.container.servers.all();
    await region.tern.close();
    for (const [, server] of servers) await server.destroy().catch(() => {});
    await stop();
  };
  return region;
}

/** Polls GET path until pick(body) returns a value that `done` accepts; returns the last body. */
export async function waitFor(region: TestRegion, path: string, done: (body: any) => boolean, timeoutMs = 180_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await region.call('GET', path);
    if (done(res.body)) return res.body;
    if (Date.now() > deadline) assert.fail(`timed out waiting on ${path}; last: ${res.text.slice(0, 500)}`);
    await sleep(200);
  }
}

export async function waitForInstance(region: TestRegion, id: string, statuses = ['ACTIVE', 'ERROR']): Promise<any> {
  const body = await waitFor(region, `/v1.0/p1/instances/${id}`, (b) => statuses.includes(b?.instance?.status));
  return body.instance;
}

export async function waitForBackup(region: TestRegion, id: string): Promise<any> {
  const body = await waitFor(region, `/v1.0/p1/backups/${id}`, (b) => ['COMPLETED', 'FAILED'].includes(b?.backup?.status));
  return body.backup;
}

/** Creates an instance through the API and waits until it is ACTIVE; returns the record and the credential. */
export async function createInstance(
  region: TestRegion,
  body: Record<string, unknown>,
): Promise<{ instance: any; created: any }> {
  const res = await region.call('POST', '/v1.0/p1/instances', { body: { instance: body } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.instance.status, 'BUILD');
  const instance = await waitForInstance(region, res.body.instance.id);
  assert.equal(instance.status, 'ACTIVE', JSON.stringify(instance.fault));
  return { instance, created: res.body.instance };
}

export async function createBackup(region: TestRegion, backup: Record<string, unknown>): Promise<any> {
  const res = await region.call('POST', '/v1.0/p1/backups', { body: { backup } });
  assert.equal(res.status, 202, res.text);
  return waitForBackup(region, res.body.backup.id);
}
