import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { BIN } from '../src/instances/binaries.ts';
import { privateTempDir, removeQuietly, writeSecretFile } from '../src/instances/process.ts';
import { mariadbClientConfig } from '../src/instances/provisioner.ts';

// Tern's main story on one machine, all on loopback: two Swift regions (scripts/swift-regions.sh),
// two `tern serve` processes each on its own Swift, a MariaDB instance in region1 with data, a
// backup, a copy to region2 by `location` (the blueprint's form), a restore into a new instance in
// region2, and a comparison of the data. Everything it creates is removed again at the end.

const root = resolve(import.meta.dirname, '..');
const work = join(root, 'var', 'demo', new Date().toISOString().replace(/[:.]/g, '-'));
const token = randomBytes(16).toString('hex');
const children: ChildProcess[] = [];
/** What to delete at the end, newest first: [region URL, API path]. */
const cleanups: Array<[string, string]> = [];

function step(text: string): void {
  console.log(`\n== ${text}`);
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

const swift = (port: number) => ({
  driver: 'swift',
  authUrl: `http://127.0.0.1:${port}/auth/v1.0`,
  user: 'test:tester',
  key: 'testing',
  container: 'database_backups',
  segmentSize: 8 * 1024 * 1024,
});

async function startRegion(name: string, config: Record<string, unknown>): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o711); // database servers run as the mysql/postgres users
  const port = await freePort();
  const file = join(dir, 'tern.json');
  writeFileSync(
    file,
    JSON.stringify({
      region: name,
      listen: { host: '127.0.0.1', port },
      dataDir: dir,
      auth: { tokens: [{ token, project: 'demo', roles: ['member'] }] },
      worker: { pollMs: 100 },
      logLevel: 'warn',
      ...config,
    }),
    { mode: 0o600 },
  );
  // bin/tern execs Node with the production settings, so the child's PID is the server's.
  const child = spawn(join(root, 'bin/tern'), ['serve', '--config', file], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return url;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not start`);
}

async function api(url: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}/v1.0/demo${path}`, {
    method,
    headers: { 'x-auth-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function until<T>(what: string, poll: () => Promise<T>, done: (v: T) => boolean, show?: (v: T) => string): Promise<T> {
  let last = '';
  for (let i = 0; i < 3000; i++) {
    const v = await poll();
    const line = show?.(v) ?? '';
    if (line && line !== last) console.log(line);
    last = line;
    if (done(v)) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function waitInstance(url: string, id: string): Promise<any> {
  const instance = await until(
    `instance ${id}`,
    async () => (await api(url, 'GET', `/instances/${id}`)).instance,
    (i) => i.status === 'ACTIVE' || i.status === 'ERROR',
    (i) => `instance ${i.name}: ${i.status}`,
  );
  if (instance.status !== 'ACTIVE') throw new Error(`instance ${instance.name} failed: ${JSON.stringify(instance.fault)}`);
  return instance;
}

async function waitBackup(url: string, id: string): Promise<any> {
  const backup = await until(
    `backup ${id}`,
    async () => (await api(url, 'GET', `/backups/${id}`)).backup,
    (b) => b.status === 'COMPLETED' || b.status === 'FAILED',
    (b) => `backup ${b.name}: ${b.status}${b.progress ? ` ${b.progress.percent ?? 0}%` : ''}`,
  );
  if (backup.status !== 'COMPLETED') throw new Error(`backup ${backup.name} failed: ${backup.fail_reason}`);
  return backup;
}

/** Runs SQL with the mariadb client; the password goes in a 0600 file, never on the command line. */
async function sql(instance: any, password: string, text: string): Promise<string> {
  const dir = await privateTempDir('tern-demo-');
  try {
    const file = join(dir, 'client.cnf');
    await writeSecretFile(file, mariadbClientConfig({ host: instance.ip[0], port: instance.port }, 'root', password));
    const child = spawn(BIN.mariadb, [`--defaults-file=${file}`, '--batch', '--skip-column-names'], { stdio: 'pipe' });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      err += c;
    });
    child.stdin.end(text);
    const code = await new Promise((r) => child.on('close', r));
    if (code !== 0) throw new Error(`mariadb: ${err.trim()}`);
    return out.trim();
  } finally {
    await removeQuietly(dir);
  }
}

const LOAD = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128)) ENGINE=InnoDB;
INSERT INTO shop.customers SELECT seq, CONCAT('name-', seq), CONCAT('c', seq, '@example.org') FROM seq_1_to_20000;
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), note TEXT) ENGINE=InnoDB;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 20000, seq * 1.25, REPEAT(MD5(seq), 8) FROM seq_1_to_200000;
`;
const FINGERPRINT = 'CHECKSUM TABLE shop.customers, shop.orders EXTENDED; SELECT COUNT(*), SUM(amount) FROM shop.orders;';

async function main(): Promise<void> {
  const region1Key = { id: 'region1-demo', secret: randomBytes(32).toString('base64') };
  const region2Key = { id: 'region2-demo', secret: randomBytes(32).toString('base64') };

  step('starting region1 and region2: two `tern serve` processes, each on its own Swift cluster');
  const url1 = await startRegion('region1', { storage: swift(8081), encryption: { keys: [region1Key] } });
  const url2 = await startRegion('region2', {
    storage: swift(8082),
    encryption: { keys: [region2Key] },
    // region2 trusts region1's storage, and may unwrap backup passphrases made under region1's key.
    catalog: [{ region: 'region1', apiUrl: url1, storage: swift(8081), keys: [region1Key] }],
  });
  console.log(`region1 ${url1} (Swift 127.0.0.1:8081)\nregion2 ${url2} (Swift 127.0.0.1:8082, trusts region1)`);

  step('region1: a MariaDB 10.11 instance with data');
  const created = (
    await api(url1, 'POST', '/instances', {
      instance: { name: 'shop-db', datastore: { type: 'mariadb', version: '10.11' }, volume: { size: 2 } },
    })
  ).instance;
  cleanups.unshift([url1, `/instances/${created.id}`]);
  const password: string = created.credential.password;
  const source = await waitInstance(url1, created.id);
  await sql(source, password, LOAD);
  const original = await sql(source, password, FINGERPRINT);
  console.log(original);

  step('region1: a backup of the instance (mariabackup | parallel gzip | openssl-compatible AES, SLO in Swift)');
  const b1 = (await api(url1, 'POST', '/backups', { backup: { name: 'shop-nightly', instance: source.id } })).backup;
  cleanups.unshift([url1, `/backups/${b1.id}`]);
  const backup = await waitBackup(url1, b1.id);
  console.log(`locationRef ${backup.locationRef}\nchecksum    ${backup.checksum}  size ${backup.size_bytes} bytes`);

  step("region2: create a backup from region1's location (the blueprint's form)");
  const c = (
    await api(url2, 'POST', '/backups', {
      backup: {
        name: 'shop-nightly-copy',
        description: 'Backup from a different region',
        location: backup.locationRef,
        instance: null,
      },
    })
  ).backup;
  cleanups.unshift([url2, `/backups/${c.id}`]);
  const copy = await waitBackup(url2, c.id);
  console.log(`locationRef ${copy.locationRef}\nchecksum    ${copy.checksum}  size ${copy.size_bytes} bytes`);
  if (copy.checksum !== backup.checksum) throw new Error('the copy checksum differs from the source');

  step('region2: restore the copy into a new instance');
  const r = (
    await api(url2, 'POST', '/instances', {
      instance: {
        name: 'shop-db-restored',
        datastore: { type: 'mariadb', version: '10.11' },
        volume: { size: 2 },
        restorePoint: { backupRef: copy.id },
      },
    })
  ).instance;
  cleanups.unshift([url2, `/instances/${r.id}`]);
  const restored = await waitInstance(url2, r.id);

  step('comparing the data (CHECKSUM TABLE ... EXTENDED, row counts, sums)');
  // A restored instance keeps the users and passwords of the instance it was backed up from.
  const copied = await sql(restored, password, FINGERPRINT);
  console.log(copied);
  if (copied !== original) throw new Error('the restored data differs from the original');
  console.log("\nOK: region2 restored region1's database from a verified cross-region copy");
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  console.error(`\nFAILED: ${(err as Error).message}`);
} finally {
  step('cleaning up (instances and backups in both regions)');
  for (const [url, path] of cleanups) {
    try {
      await api(url, 'DELETE', path);
      // Deletes are jobs (a server to stop, objects to remove): wait until the thing is gone.
      await until(
        path,
        () => fetch(`${url}/v1.0/demo${path}`, { headers: { 'x-auth-token': token } }).then((r) => r.status),
        (s) => s === 404,
      );
    } catch (err) {
      console.error(`cleanup of ${path}: ${(err as Error).message}`);
    }
  }
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  if (!failed) rmSync(work, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
