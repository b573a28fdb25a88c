import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { FsDriver } from '../src/storage/drivers/fs.ts';

// Walks through Tern's main story on loopback: two `tern serve` processes, each with its own folder,
// database and storage; region2 trusts region1's storage and copies a backup from it.

const root = resolve(import.meta.dirname, '..');
const work = join(root, 'var', 'demo');
const children: ChildProcess[] = [];

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

async function startRegion(name: string, port: number, token: string, catalog: object[]): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const config = {
    region: name,
    listen: { host: '127.0.0.1', port },
    dataDir: dir,
    storage: { driver: 'fs', root: join(dir, 'objects') },
    auth: { tokens: [{ token, project: 'demo', roles: ['member'] }] },
    catalog,
    worker: { pollMs: 100 },
    logLevel: 'warn',
  };
  writeFileSync(join(dir, 'tern.json'), JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [join(root, 'src/main/cli.ts'), 'serve', '--config', join(dir, 'tern.json')], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
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

async function api(url: string, token: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}/v1.0/demo${path}`, {
    method,
    headers: { 'x-auth-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function main(): Promise<void> {
  rmSync(work, { recursive: true, force: true });
  const token = randomBytes(16).toString('hex');
  const region1Root = join(work, 'region1', 'objects');

  step('starting region1 and region2 (two `tern serve` processes on loopback)');
  const url1 = await startRegion('region1', await freePort(), token, []);
  const url2 = await startRegion('region2', await freePort(), token, [
    { region: 'region1', apiUrl: url1, storage: { driver: 'fs', root: region1Root } },
  ]);
  console.log(`region1 ${url1}\nregion2 ${url2} (trusts region1's storage)`);

  step("placing a 32 MiB MariaDB backup in region1's storage");
  const source = new FsDriver({ root: region1Root, container: 'database_backups' });
  const bytes = randomBytes(32 * 1024 * 1024);
  const key = `${crypto.randomUUID()}.xbstream.gz.enc`;
  await source.put(key, Readable.from([bytes]), { metadata: { datastore: 'mariadb', 'datastore-version': '10.11' } });
  const location = source.locationOf(key);
  console.log(`location ${location}`);

  step('asking region2 to create a backup from that location (the blueprint form)');
  const created = await api(url2, token, 'POST', '/backups', {
    backup: { name: 'backup-from-different-region', description: 'Backup from a different region', location, instance: null },
  });
  console.log(JSON.stringify(created, null, 2));

  step('waiting for the copy');
  let backup = created.backup;
  while (!['COMPLETED', 'FAILED'].includes(backup.status)) {
    await new Promise((r) => setTimeout(r, 200));
    backup = (await api(url2, token, 'GET', `/backups/${backup.id}`)).backup;
    if (backup.progress) console.log(`${backup.status} ${backup.progress.percent ?? 0}%`);
  }
  console.log(JSON.stringify({ backup }, null, 2));
  if (backup.status !== 'COMPLETED') throw new Error(`copy failed: ${backup.fail_reason}`);

  step('verifying the copy in region2 against the original');
  const target = new FsDriver({ root: join(work, 'region2', 'objects'), container: 'database_backups' });
  const hash = createHash('md5');
  for await (const chunk of await target.get(target.keyOf(backup.locationRef)!)) hash.update(chunk as Buffer);
  const expected = createHash('md5').update(bytes).digest('hex');
  const got = hash.digest('hex');
  console.log(`source md5 ${expected}\ncopy   md5 ${got}\nchecksum  ${backup.checksum}`);
  if (got !== expected || backup.checksum !== expected) throw new Error('copy does not match the source');
  console.log("\nOK: region2 holds a verified copy of region1's backup");
}

try {
  await main();
} finally {
  for (const c of children) c.kill('SIGTERM');
}
