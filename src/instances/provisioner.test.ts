import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Cleanup,
  commandLinesOf,
  ensureDatastorePackages,
  makeTestDir,
  mariadbSql,
  pgQuery,
} from '../../test/datastores/helpers.ts';
import { BadRequest, Conflict } from '../errors.ts';
import { isRunning } from './process.ts';
import { adopt, freePort, type ManagedServer, startMariadb, startPostgres } from './provisioner.ts';
import { InstanceServers } from './registry.ts';
import { removeShortSocketDir, shortSocketDir } from './server.ts';

// The local provisioner on real mariadbd and postgres processes.

const PASSWORD = 's3cret-"pw"\\:#';

function assertNoSecretIn(server: ManagedServer): void {
  for (const file of [server.logFile, join(server.dataDir, 'tern-server.json')]) {
    assert.ok(!readFileSync(file, 'utf8').includes(PASSWORD), `${file} holds no password`);
  }
  const argv = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8');
  assert.ok(!argv.includes(PASSWORD), 'the password is not on the command line');
}

describe('local provisioner', { timeout: 300_000 }, () => {
  const cleanup = new Cleanup();
  let dir: string;

  before(() => {
    ensureDatastorePackages();
    dir = cleanup.dir(makeTestDir('provisioner'));
  });
  after(() => cleanup.run());

  it('picks free loopback ports', async () => {
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((resolve) => server.close(resolve));
  });

  it('starts MariaDB with a root password set without a command line or log ever holding it', async () => {
    const server = cleanup.server(await startMariadb({ dataDir: join(dir, 'maria'), rootPassword: PASSWORD }));
    assert.equal(server.kind, 'mariadb');
    assert.equal(server.host, '127.0.0.1');
    assert.ok(isRunning(server.pid));
    assert.match(
      await mariadbSql(server, PASSWORD, 'SELECT CURRENT_USER(), @@bind_address, @@port;'),
      new RegExp(`root@127.0.0.1\t127.0.0.1\t${server.port}`),
    );
    await assert.rejects(mariadbSql(server, 'wrong', 'SELECT 1;'), /Access denied/);
    // Only root with a password is left (no passwordless or socket-only accounts).
    assert.equal(
      await mariadbSql(
        server,
        PASSWORD,
        "SELECT COUNT(*) FROM mysql.user WHERE authentication_string = '' AND User <> 'mariadb.sys';",
      ),
      '0\n',
    );
    assert.ok(!existsSync(join(server.dataDir, 'run', 'init.sql')), 'the init file is gone');
    assert.ok(existsSync(join(server.socketDir, 'mysqld.sock')));
    assertNoSecretIn(server);
  });

  it('adopts a running MariaDB, and restarts a stopped one on the same port with its data', async () => {
    const server = cleanup.server(await startMariadb({ dataDir: join(dir, 'maria2'), rootPassword: PASSWORD }));
    await mariadbSql(
      server,
      PASSWORD,
      'CREATE DATABASE kept; CREATE TABLE kept.t (id INT PRIMARY KEY); INSERT INTO kept.t VALUES (1), (2);',
    );
    const same = await adopt(server.dataDir);
    assert.equal(same.pid, server.pid);
    assert.equal(same.port, server.port);
    await same.stop();
    assert.ok(!isRunning(server.pid));
    const again = cleanup.server(await adopt(server.dataDir));
    assert.notEqual(again.pid, server.pid);
    assert.equal(again.port, server.port);
    assert.equal(await mariadbSql(again, PASSWORD, 'SELECT COUNT(*) FROM kept.t;'), '2\n');
    await again.destroy();
    assert.ok(!isRunning(again.pid));
    assert.ok(!existsSync(server.dataDir));
  });

  it('starts PostgreSQL with password auth on TCP', async () => {
    const server = cleanup.server(await startPostgres({ dataDir: join(dir, 'pg'), rootPassword: PASSWORD }));
    assert.equal(server.kind, 'postgresql');
    const { rows } = await pgQuery(
      server,
      PASSWORD,
      "SELECT current_user, current_setting('listen_addresses') AS listen, current_setting('port') AS port",
    );
    assert.deepEqual(rows[0], { current_user: 'postgres', listen: '127.0.0.1', port: String(server.port) });
    await assert.rejects(pgQuery(server, 'wrong', 'SELECT 1'), /password authentication failed/);
    assert.ok(!readdirSync(join(server.dataDir, 'run')).includes('initdb.pw'), 'the password file is gone');
    assertNoSecretIn(server);
  });

  it('adopts a PostgreSQL started by another Tern process that has exited', async () => {
    const dataDir = join(dir, 'pg-other');
    // A separate Node process plays the Tern that started the server and then went away.
    const script = `
      import { startPostgres } from ${JSON.stringify(new URL('./provisioner.ts', import.meta.url).href)};
      const s = await startPostgres({ dataDir: ${JSON.stringify(dataDir)}, rootPassword: process.env.PW });
      console.log(JSON.stringify({ pid: s.pid, port: s.port }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, PW: PASSWORD } });
    const started = JSON.parse(String(out)) as { pid: number; port: number };
    const server = cleanup.server(await adopt(dataDir));
    assert.equal(server.pid, started.pid);
    assert.equal(server.port, started.port);
    assert.equal((await pgQuery(server, PASSWORD, 'SELECT 1 AS one')).rows[0].one, 1);
    await server.destroy();
    assert.ok(!isRunning(started.pid));
    assert.ok(!existsSync(dataDir));
  });

  it('uses a short socket folder for long paths and removes it with the server', async () => {
    const deep = join(dir, 'a-rather-long-folder-name-'.repeat(3), 'instance');
    mkdirSync(deep, { recursive: true });
    execFileSync('chmod', ['-R', 'o+x', join(dir, 'a-rather-long-folder-name-'.repeat(3))]);
    const server = cleanup.server(await startPostgres({ dataDir: deep, rootPassword: PASSWORD }));
    assert.ok(server.socketDir.startsWith('/tmp/tern-sock-'));
    assert.ok(existsSync(join(server.socketDir, `.s.PGSQL.${server.port}`)));
    await server.destroy();
    assert.ok(!existsSync(server.socketDir));
  });

  it('leaves no short socket folder behind a server that stopped: not when restarted, not when its folder goes', async () => {
    const long = join(dir, 'another-rather-long-folder-name-'.repeat(3));
    const deep = join(long, 'instance');
    mkdirSync(deep, { recursive: true });
    execFileSync('chmod', ['-R', 'o+x', long]);
    const first = cleanup.server(await startPostgres({ dataDir: deep, rootPassword: PASSWORD }));
    assert.equal(first.socketDir, shortSocketDir(deep));
    // Stopped behind Tern's back (a reboot, an operator), with a stale file left in its socket
    // folder: the next Tern adopts the instance folder and starts the server again.
    await first.stop();
    writeFileSync(join(first.socketDir, 'stale'), '');
    const second = cleanup.server(await adopt(deep));
    assert.equal(second.socketDir, first.socketDir);
    assert.deepEqual(readdirSync(second.socketDir).sort(), [`.s.PGSQL.${second.port}`, `.s.PGSQL.${second.port}.lock`]);
    assert.equal((await pgQuery(second, PASSWORD, 'SELECT 1 AS one')).rows[0].one, 1);
    // Stopped again, then deleted by a Tern that holds no handle on it.
    await second.stop();
    await new InstanceServers().destroy('pg-long', deep);
    assert.ok(!existsSync(deep));
    assert.ok(!existsSync(second.socketDir), 'the socket folder went with the instance');
  });

  it('removes the short socket folder of an instance killed before it recorded one', async () => {
    const deep = join(dir, 'killed-before-its-state-file-'.repeat(3), 'instance');
    mkdirSync(deep, { recursive: true });
    mkdirSync(shortSocketDir(deep));
    await new InstanceServers().destroy('half-made', deep);
    assert.ok(!existsSync(deep));
    assert.ok(!existsSync(shortSocketDir(deep)));
  });

  it('removes only socket folders it made under /tmp, whatever the state file says', async () => {
    const foreign = join(dir, 'tern-sock-not-ours');
    mkdirSync(foreign);
    const instance = join(dir, 'guarded-instance');
    await removeShortSocketDir(instance, { socketDir: foreign, ownSocketDir: true });
    await removeShortSocketDir(instance, { socketDir: '/tmp/tern-sock-x/../..', ownSocketDir: true });
    assert.ok(existsSync(foreign));
    // A random name, as earlier releases recorded it.
    const made = mkdtempSync('/tmp/tern-sock-');
    await removeShortSocketDir(instance, { socketDir: made, ownSocketDir: false });
    assert.ok(existsSync(made), "a folder the caller chose is the caller's");
    await removeShortSocketDir(instance, { socketDir: made, ownSocketDir: true });
    assert.ok(!existsSync(made));
  });

  it('refuses a non-empty folder, an empty password and a busy fixed port', async () => {
    const used = join(dir, 'used');
    mkdirSync(used);
    writeFileSync(join(used, 'something'), 'x');
    await assert.rejects(startMariadb({ dataDir: used, rootPassword: PASSWORD }), Conflict);
    assert.ok(existsSync(join(used, 'something')), 'existing files are left alone');
    await assert.rejects(startPostgres({ dataDir: join(dir, 'nopw'), rootPassword: '' }), BadRequest);

    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(
        startMariadb({ dataDir: join(dir, 'busy'), port, rootPassword: PASSWORD }),
        /Address already in use|Bind on TCP\/IP port/,
      );
      assert.ok(!existsSync(join(dir, 'busy')), 'a failed start leaves no folder');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    assert.equal(commandLinesOf('mariadbd').filter((cmd) => cmd.includes(join(dir, 'busy'))).length, 0, 'no server left running');
  });
});
