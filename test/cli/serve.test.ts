import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { FsDriver } from '../../src/storage/drivers/fs.ts';
import { tern } from './run.ts';

// End to end: `bin/tern serve` as a real process with a temp config and no tokens (so it makes a
// development token), then the CLI against it from the same folder, using ./var/dev-token.

const TERN = resolve(import.meta.dirname, '../../bin/tern');

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

describe('tern serve + tern CLI', () => {
  let dir: string;
  let server: ChildProcess;
  let url: string;
  let stderr = '';
  let exited: Promise<number | null>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tern-serve-'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'tern.json'),
      JSON.stringify({
        region: 'clitest',
        listen: { host: '127.0.0.1', port },
        dataDir: join(dir, 'var'),
        worker: { pollMs: 50 },
        logLevel: 'warn',
      }),
    );
    server = spawn(TERN, ['serve', '--config', join(dir, 'tern.json')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    exited = new Promise((ok) => server.on('exit', (code) => ok(code)));
    server.stderr!.on('data', (d) => {
      stderr += d;
    });
    url = `http://127.0.0.1:${port}`;
    for (let i = 0; !stderr.includes('development token') && i < 200; i++) {
      if (server.exitCode !== null) throw new Error(`tern serve exited ${server.exitCode}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(async () => {
    if (server.exitCode === null) server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('prints the region, URL and the development token once', () => {
    const token = readFileSync(join(dir, 'var', 'dev-token'), 'utf8').trim();
    assert.match(stderr, new RegExp(`region clitest serving on ${url}`));
    assert.match(stderr, new RegExp(`development token: ${token} \\(project dev, admin\\)`));
    assert.equal(stderr.split('development token').length, 2);
  });

  test('backup list and datastore list work with the dev token from ./var/dev-token', async () => {
    const list = await tern(['backup', 'list'], { cwd: dir, env: { TERN_URL: url } });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /ID.+Name.+Status.+Size GB.+Datastore.+Created/);
    const ds = await tern(['datastore', 'list'], { cwd: dir, env: { TERN_URL: url } });
    assert.equal(ds.code, 0, ds.stderr);
    assert.match(ds.stdout, /mariadb +│ 10\.11 \(/);
    assert.match(ds.stdout, /postgresql +│ 15 \(/);
  });

  test('a location outside every trusted region is refused with the fault, exit 1', async () => {
    const r = await tern(['backup', 'create', 'bad', '--location', 'http://evil.example/x.xbstream.gz'], {
      cwd: dir,
      env: { TERN_URL: url },
    });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^error: location http:\/\/evil\.example\/x\.xbstream\.gz is not in .+ \(HTTP 400\)\n$/);
    const wrongToken = await tern(['backup', 'list'], { cwd: dir, env: { TERN_URL: url, TERN_TOKEN: 'not-the-token' } });
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /\(HTTP 401\)/);
  });

  test('create --wait copies a backup to COMPLETED; delete --wait removes it', { timeout: 60_000 }, async () => {
    const storage = new FsDriver({ root: join(dir, 'var', 'objects'), container: 'database_backups' });
    const key = `${crypto.randomUUID()}.xbstream.gz.enc`;
    const put = storage.put(key, Readable.from([randomBytes(3 * 1024 * 1024)]), {
      metadata: { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'dev' },
    });
    // Fail with a reason rather than hang if the storage layer itself is stuck.
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, fail) => {
      timer = setTimeout(() => fail(new Error('FsDriver.put of 3 MiB did not finish in 10 s')), 10_000);
    });
    await Promise.race([put, stuck]).finally(() => clearTimeout(timer));
    const created = await tern(['backup', 'create', 'e2e', '--location', storage.locationOf(key), '--wait', '--json'], {
      cwd: dir,
      env: { TERN_URL: url },
    });
    assert.equal(created.code, 0, created.stderr);
    const backup = JSON.parse(created.stdout).backup;
    assert.equal(backup.status, 'COMPLETED');
    assert.equal(backup.size_bytes, 3 * 1024 * 1024);
    const listed = await tern(['backup', 'list'], { cwd: dir, env: { TERN_URL: url } });
    assert.match(listed.stdout, new RegExp(`${backup.id} +│ e2e +│ COMPLETED +│ 0\\.00293 +│ mariadb 10\\.11`));
    const deleted = await tern(['backup', 'delete', backup.id, '--wait'], { cwd: dir, env: { TERN_URL: url } });
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /deleted\n$/);
    const gone = await tern(['backup', 'show', backup.id], { cwd: dir, env: { TERN_URL: url } });
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /\(HTTP 404\)/);
  });

  test('SIGTERM stops the server cleanly (exit 0)', async () => {
    server.kill('SIGTERM');
    assert.equal(await exited, 0);
    const r = await tern(['backup', 'list'], { cwd: dir, env: { TERN_URL: url } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /connection refused/);
  });
});
