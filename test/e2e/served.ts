import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { mariadbSql } from '../datastores/helpers.ts';
import { type ServedRegion, serveRegion } from '../helpers/serve.ts';
import { swiftProxyUrl } from '../helpers/swift.ts';

// A region as a real `tern serve` process for end-to-end tests with instances: its own folder
// (0711, so mariadbd running as mysql reaches its instance folder), an API client for one project,
// and a stop that deletes what the test left through the API and ends any database server still
// running from the region's folder.

export interface ServedApi {
  name: string;
  url: string;
  dir: string;
  /** The config file `tern serve` runs with (also what `tern backup copy --config` reads). */
  configFile: string;
  project: string;
  served: ServedRegion;
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string }>;
  /** Polls GET /backups/{id} until COMPLETED or FAILED. */
  waitBackup(id: string): Promise<any>;
  /** Polls GET /instances/{id} until ACTIVE or ERROR. */
  waitInstance(id: string): Promise<any>;
  /** DELETE, then wait until GET answers 404 (deletes are jobs). */
  remove(path: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startServed(
  name: string,
  config: Record<string, unknown>,
  auth: { token: string; project: string },
): Promise<ServedApi> {
  const dir = mkdtempSync(join(tmpdir(), `tern-e2e-${name}-`));
  chmodSync(dir, 0o711);
  let served: ServedRegion;
  try {
    served = await serveRegion(dir, {
      region: name,
      auth: { tokens: [{ token: auth.token, project: auth.project, roles: ['member'] }] },
      worker: { pollMs: 100 },
      ...config,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const base = `${served.url}/v1.0/${auth.project}`;
  const api: ServedApi = {
    name,
    url: served.url,
    dir,
    configFile: join(dir, 'tern.json'),
    project: auth.project,
    served,
    async call(method, path, body) {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { 'x-auth-token': auth.token, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: any = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = null;
      }
      return { status: res.status, body: parsed, text };
    },
    async waitBackup(id) {
      const body = await poll(api, `/backups/${id}`, (b) => ['COMPLETED', 'FAILED'].includes(b?.backup?.status));
      return body.backup;
    },
    async waitInstance(id) {
      const body = await poll(api, `/instances/${id}`, (b) => ['ACTIVE', 'ERROR'].includes(b?.instance?.status));
      return body.instance;
    },
    async remove(path) {
      const res = await api.call('DELETE', path);
      assert.ok(res.status === 202 || res.status === 404, `DELETE ${path}: ${res.status} ${res.text}`);
      for (let i = 0; i < 600; i++) {
        if ((await api.call('GET', path)).status === 404) return;
        await sleep(200);
      }
      assert.fail(`${path} still there 120 s after DELETE`);
    },
    async stop() {
      await served.stop();
      // Servers outlive Tern by design; one a failed test left behind is ended here, by pid.
      killServersUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return api;
}

async function poll(api: ServedApi, path: string, done: (body: any) => boolean, timeoutMs = 300_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api.call('GET', path);
    if (done(res.body)) return res.body;
    if (Date.now() > deadline) assert.fail(`timed out on ${api.name} ${path}; last: ${res.text.slice(0, 500)}`);
    await sleep(250);
  }
}

/** Ends processes whose command line names a path under dir (database servers of that region only). */
function killServersUnder(dir: string): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv.some((a) => a.includes(`${dir}/`))) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // ended meanwhile
      }
    }
  }
}

/** A Swift storage section for a `tern serve` config on a loopback Swift region. */
export function swiftStorage(region: 1 | 2, container: string, segmentSize: number): Record<string, unknown> {
  return {
    driver: 'swift',
    authUrl: `${swiftProxyUrl(region)}/auth/v1.0`,
    user: 'test:tester',
    key: 'testing',
    container,
    segmentSize,
  };
}

export type Server = { host: string; port: number };
export const serverOf = (instance: any): Server => ({ host: instance.ip[0], port: instance.port });

/** Table list, row counts and CHECKSUM TABLE ... EXTENDED of the given tables: equal iff the data is. */
export async function snapshot(server: Server, password: string, tables: string[]): Promise<string> {
  const names = await mariadbSql(
    server,
    password,
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' ORDER BY 1;",
  );
  const present = tables.filter((t) => names.split('\n').includes(t.split('.')[1]));
  const checksums = await mariadbSql(server, password, `CHECKSUM TABLE ${present.join(', ')} EXTENDED;`);
  const counts = await mariadbSql(
    server,
    password,
    'SELECT COUNT(*), SUM(amount) FROM shop.orders; SELECT COUNT(*) FROM shop.customers;',
  );
  return `${names}\n${checksums}\n${counts}`;
}

/** Restores a backup into a new instance of `region`, snapshots it, and deletes the instance again. */
export async function restoreAndSnapshot(
  region: ServedApi,
  backupId: string,
  password: string,
  tables: string[],
): Promise<string> {
  const res = await region.call('POST', '/instances', {
    instance: {
      name: `restore-${backupId.slice(0, 8)}`,
      datastore: { type: 'mariadb', version: '10.11' },
      volume: { size: 2 },
      restorePoint: { backupRef: backupId },
    },
  });
  assert.equal(res.status, 200, res.text);
  const id = res.body.instance.id;
  try {
    const instance = await region.waitInstance(id);
    assert.equal(instance.status, 'ACTIVE', JSON.stringify(instance.fault));
    assert.equal(instance.restore_backup_id, backupId);
    // A restored server keeps the users and passwords of the backed-up one.
    return await snapshot(serverOf(instance), password, tables);
  } finally {
    await region.remove(`/instances/${id}`);
  }
}
