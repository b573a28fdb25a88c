import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { mariadbRunner } from '../../src/datastores/mariadb.ts';
import { ToolError } from '../../src/datastores/types.ts';
import { Cancelled } from '../../src/errors.ts';
import { type ManagedServer, startMariadb } from '../../src/instances/provisioner.ts';
import { createDecryptStream, createEncryptStream } from '../../src/streams/openssl-cipher.ts';
import { Cleanup, commandLinesOf, ensureDatastorePackages, makeTestDir, mariadbSql } from './helpers.ts';

// Real MariaDB 10.11 servers: full and incremental backups in Trove's format, restored into new
// servers and compared with the source's state at each backup.

const PASSWORD = `r00t'pa"ss\\word#x`;
const KEY = 'backup-key-for-tests';
const TABLES = ['shop.customers', 'shop.orders', 'shop.audit', 'shop.added'];

// seq_1_to_N tables come from the Sequence engine and need a current database.
const LOAD = `
CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128)) ENGINE=InnoDB;
INSERT INTO shop.customers SELECT seq, CONCAT('name-', seq), CONCAT('c', seq, '@example.org') FROM seq_1_to_3000;
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), note TEXT,
  KEY (customer_id)) ENGINE=InnoDB;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 3000, seq * 1.25, REPEAT(MD5(seq), 4) FROM seq_1_to_5000;
CREATE TABLE shop.audit (id INT PRIMARY KEY, event VARCHAR(64)) ENGINE=Aria;
INSERT INTO shop.audit SELECT seq, CONCAT('event-', seq) FROM seq_1_to_2000;
`;

const CHANGE = `
USE shop;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + seq % 3000, seq, 'after the full backup' FROM seq_1_to_1500;
UPDATE shop.customers SET email = CONCAT('new-', id, '@example.org') WHERE id % 7 = 0;
DELETE FROM shop.customers WHERE id > 2900;
INSERT INTO shop.audit SELECT seq, 'later' FROM seq_2001_to_2500;
CREATE TABLE shop.added (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO shop.added SELECT seq, HEX(seq) FROM seq_1_to_700;
`;

/** Table list, row counts and CHECKSUM TABLE ... EXTENDED of every table: equal iff the data is. */
async function snapshot(server: ManagedServer): Promise<string> {
  const tables = await mariadbSql(
    server,
    PASSWORD,
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' ORDER BY 1;",
  );
  const checksums = await mariadbSql(server, PASSWORD, `CHECKSUM TABLE ${TABLES.join(', ')} EXTENDED;`);
  const counts = await mariadbSql(
    server,
    PASSWORD,
    'SELECT COUNT(*), SUM(amount) FROM shop.orders; SELECT COUNT(*) FROM shop.customers;',
  );
  return `${tables}\n${checksums}\n${counts}`;
}

/** A chain link that decrypts a file with our cipher. */
function decrypted(file: string): () => Readable {
  return () => {
    const decrypt = createDecryptStream(KEY);
    pipeline(createReadStream(file), decrypt).catch(() => {}); // errors reach the reader through `decrypt`
    return decrypt;
  };
}

describe('MariaDB backups and restores (real mariadbd, mariabackup, mbstream)', { timeout: 600_000 }, () => {
  const cleanup = new Cleanup();
  let dir: string;
  let source: ManagedServer;
  let fullLsn: string;
  let atFull: string;
  let atIncremental: string;

  before(async () => {
    ensureDatastorePackages();
    dir = cleanup.dir(makeTestDir('mariadb'));
    source = cleanup.server(await startMariadb({ dataDir: join(dir, 'source'), rootPassword: PASSWORD }));
    await mariadbSql(source, PASSWORD, LOAD);
  });
  after(() => cleanup.run());

  it('takes an encrypted full backup without exposing the password', async () => {
    const run = mariadbRunner.backupStream(source, { password: PASSWORD, gzip: { workers: 2, chunkSize: 256 * 1024 } });
    const seen: string[] = [];
    const watcher = setInterval(() => seen.push(...commandLinesOf('mariabackup')), 5);
    try {
      await pipeline(run.stream, createEncryptStream(KEY), createWriteStream(join(dir, 'full.xbstream.gz.enc')));
    } finally {
      clearInterval(watcher);
    }
    const result = await run.done;
    assert.match(result.lsn ?? '', /^\d+$/);
    fullLsn = result.lsn!;
    atFull = await snapshot(source);
    assert.match(result.toolLog, /completed OK!/);
    assert.ok(!result.toolLog.includes(PASSWORD), 'the tool log never holds the password');
    assert.ok(seen.length > 0, 'saw the mariabackup process');
    assert.ok(
      seen.every((cmd) => !cmd.includes(PASSWORD) && cmd.includes('--defaults-file=')),
      'no password on argv',
    );
  });

  it('writes bytes that openssl enc -d | gzip -d | mbstream -x read (Trove compatibility)', async () => {
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
    const out = join(dir, 'extracted');
    await mkdir(out);
    const openssl = spawn('openssl', [
      'enc',
      '-d',
      '-aes-256-cbc',
      '-md',
      'sha512',
      '-pbkdf2',
      '-iter',
      '10000',
      '-salt',
      '-pass',
      `file:${keyFile}`,
      '-in',
      join(dir, 'full.xbstream.gz.enc'),
    ]);
    const gunzip = spawn('gzip', ['-d']);
    const mbstream = spawn('mbstream', ['-x', '-C', out]);
    openssl.stdout.pipe(gunzip.stdin);
    gunzip.stdout.pipe(mbstream.stdin);
    const codes = await Promise.all([openssl, gunzip, mbstream].map((p) => new Promise((r) => p.on('close', r))));
    assert.deepEqual(codes, [0, 0, 0]);
    const checkpoints = readFileSync(join(out, 'xtrabackup_checkpoints'), 'utf8');
    assert.match(checkpoints, /backup_type = full-backuped/);
    assert.match(checkpoints, new RegExp(`to_lsn = ${fullLsn}\\b`));
    // InnoDB data comes as .ibd, or as .new for tables filled by a bulk insert (renamed by --prepare).
    const shop = readdirSync(join(out, 'shop'));
    assert.ok(shop.includes('orders.frm') && (shop.includes('orders.ibd') || shop.includes('orders.new')), `${shop}`);
  });

  it('takes an incremental backup from the full backup LSN', async () => {
    await mariadbSql(source, PASSWORD, CHANGE);
    atIncremental = await snapshot(source);
    assert.notEqual(atIncremental, atFull, 'the changes are visible');
    const run = mariadbRunner.backupStream(source, { password: PASSWORD, incremental: { fromLsn: fullLsn } });
    await pipeline(run.stream, createEncryptStream(KEY), createWriteStream(join(dir, 'inc.xbstream.gz.enc')));
    const result = await run.done;
    assert.match(result.lsn ?? '', /^\d+$/);
    assert.ok(BigInt(result.lsn!) >= BigInt(fullLsn));
    assert.match(result.toolLog, new RegExp(`incremental backup from ${fullLsn} is enabled`));
  });

  it('restores the full backup into a new server with the state at full-backup time', async () => {
    const restored = cleanup.server(
      await mariadbRunner.restore({
        chain: [decrypted(join(dir, 'full.xbstream.gz.enc'))],
        targetDataDir: join(dir, 'restored-full'),
      }),
    );
    assert.notEqual(restored.port, source.port);
    assert.notEqual(restored.pid, source.pid);
    assert.equal(await snapshot(restored), atFull);
    await restored.destroy();
    assert.ok(!existsSync(restored.dataDir));
  });

  it('restores full + incremental into another server with the final state', async () => {
    const restored = cleanup.server(
      await mariadbRunner.restore({
        chain: [decrypted(join(dir, 'full.xbstream.gz.enc')), decrypted(join(dir, 'inc.xbstream.gz.enc'))],
        targetDataDir: join(dir, 'restored-inc'),
      }),
    );
    assert.equal(await snapshot(restored), atIncremental);
    // The restored server is a working server, not a read-only copy.
    await mariadbSql(restored, PASSWORD, 'INSERT INTO shop.added VALUES (100000, "x");');
    await restored.destroy();
  });

  it('fails a restore of corrupt bytes and leaves no folder behind', async () => {
    const target = join(dir, 'restored-corrupt');
    await assert.rejects(
      mariadbRunner.restore({ chain: [() => Readable.from([Buffer.from('not a gzip stream')])], targetDataDir: target }),
    );
    assert.ok(!existsSync(target));
    const wrongKey = () => {
      const decrypt = createDecryptStream('not-the-key');
      pipeline(createReadStream(join(dir, 'full.xbstream.gz.enc')), decrypt).catch(() => {});
      return decrypt;
    };
    await assert.rejects(mariadbRunner.restore({ chain: [wrongKey], targetDataDir: target }));
    assert.ok(!existsSync(target));
  });

  it('rejects with the tool error line on a wrong password, and errors the stream', async () => {
    const run = mariadbRunner.backupStream(source, { password: 'wrong-password' });
    const streamed = assert.rejects(pipeline(run.stream, createWriteStream(join(dir, 'bad.xbstream.gz'))), ToolError);
    await assert.rejects(run.done, (err: Error) => {
      assert.ok(err instanceof ToolError);
      assert.match(err.message, /^mariabackup failed: .*Access denied for user 'root'@'127\.0\.0\.1'/);
      assert.ok(!err.message.includes('wrong-password'));
      return true;
    });
    await streamed;
  });

  it('rejects with the tool error line when the server is stopped', async () => {
    const stopped = cleanup.server(await startMariadb({ dataDir: join(dir, 'stopped'), rootPassword: PASSWORD }));
    await stopped.stop();
    const run = mariadbRunner.backupStream(stopped, { password: PASSWORD });
    const streamError = new Promise((resolve) => run.stream.on('error', resolve));
    run.stream.resume();
    await assert.rejects(run.done, /mariabackup failed: .*Can't connect to server on '127\.0\.0\.1'/);
    assert.ok((await streamError) instanceof ToolError);
  });

  it('stops the tool and rejects with Cancelled when aborted', async () => {
    const controller = new AbortController();
    const run = mariadbRunner.backupStream(source, { password: PASSWORD, signal: controller.signal });
    const streamError = new Promise((resolve) => run.stream.on('error', resolve));
    run.stream.once('data', () => controller.abort());
    run.stream.resume();
    await assert.rejects(run.done, Cancelled);
    assert.ok((await streamError) instanceof Cancelled);
  });

  it('starts servers at once, each with its own temporary folder', async () => {
    // With a shared /tmp, servers remove each other's "#sql-temptable-*" files: 1 to 3 of 8
    // mariadb-install-db runs at once failed, and so did instance creations that overlapped.
    const dirs = [1, 2, 3, 4].map((n) => join(dir, `together-${n}`));
    const servers = await Promise.all(
      dirs.map(async (dataDir) => cleanup.server(await startMariadb({ dataDir, rootPassword: PASSWORD }))),
    );
    for (const [i, server] of servers.entries()) {
      assert.equal(await mariadbSql(server, PASSWORD, 'SELECT @@tmpdir;'), `${join(dirs[i], 'run', 'tmp')}\n`);
    }
    await Promise.all(servers.map((server) => server.stop()));
  });

  it('refuses an incremental LSN that is not a number', () => {
    assert.throws(
      () => mariadbRunner.backupStream(source, { password: PASSWORD, incremental: { fromLsn: '1; rm -rf /' } }),
      /LSN/,
    );
  });
});
