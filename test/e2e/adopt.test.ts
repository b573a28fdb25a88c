import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { type RunningTern, startTern } from '../../src/main/server.ts';
import { ensureDatastorePackages, mariadbSql } from '../datastores/helpers.ts';
import type { TestRegion } from '../helpers/tern.ts';
import { createInstance, startInstanceRegion } from './helpers.ts';

// Instance servers outlive Tern: a restarted Tern re-adopts the running ones and restarts those
// that stopped meanwhile, so ACTIVE keeps meaning "accepts connections".

describe('re-adoption of instance servers when Tern restarts (real MariaDB)', { timeout: 300_000 }, () => {
  let region: TestRegion;
  const restarted: RunningTern[] = [];

  before(async () => {
    ensureDatastorePackages();
    region = await startInstanceRegion();
  });
  after(async () => {
    for (const tern of restarted) {
      const servers = tern.container.servers.all();
      await tern.close();
      for (const [, server] of servers) await server.destroy().catch(() => {});
    }
    await region?.stop();
  });

  async function restartTern(): Promise<RunningTern> {
    const config = loadConfig({ file: join(region.dir, 'tern.json') });
    const tern = await startTern(config, { logger: createLogger('silent') });
    restarted.push(tern);
    return tern;
  }

  async function show(tern: RunningTern, id: string): Promise<any> {
    const res = await fetch(`${tern.url}/v1.0/p1/instances/${id}`, { headers: { 'x-auth-token': region.tokens.member } });
    return ((await res.json()) as any).instance;
  }

  it('adopts a running server and restarts a stopped one', async () => {
    const { instance, created } = await createInstance(region, { name: 'kept', volume: { size: 1 } });
    const password = created.credential.password;
    await region.tern.close(); // the server keeps running

    const second = await restartTern();
    const adopted = second.container.servers.get(instance.id);
    assert.ok(adopted, 'the running server was adopted');
    assert.equal(adopted.port, instance.port);
    const shown = await show(second, instance.id);
    assert.equal(shown.status, 'ACTIVE');
    assert.equal(await mariadbSql(adopted, password, 'SELECT 41 + 1;'), '42\n');

    // Stopped while Tern is down: the next Tern starts it again.
    await adopted.stop();
    await second.close();
    const third = await restartTern();
    const again = third.container.servers.get(instance.id);
    assert.ok(again, 'the stopped server was started again');
    assert.notEqual(again.pid, adopted.pid);
    const after = await show(third, instance.id);
    assert.equal(after.status, 'ACTIVE');
    assert.equal(after.port, again.port);
    assert.equal(await mariadbSql(again, password, 'SELECT 1;'), '1\n');
  });
});
