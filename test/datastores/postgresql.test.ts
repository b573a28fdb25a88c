import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { postgresqlRunner } from '../../src/datastores/postgresql.ts';
import { ToolError } from '../../src/datastores/types.ts';
import { type ManagedServer, startPostgres } from '../../src/instances/provisioner.ts';
import { createDecryptStream, createEncryptStream } from '../../src/streams/openssl-cipher.ts';
import { Cleanup, commandLinesOf, ensureDatastorePackages, makeTestDir, pgQuery } from './helpers.ts';

// Real PostgreSQL 15 servers: a pg_basebackup tar in Trove's format, restored into a new server.

const PASSWORD = 'pg:pass\\word';
const KEY = 'pg-backup-key';

async function contentOf(server: ManagedServer): Promise<{ count: string; md5: string }> {
  const { rows } = await pgQuery(
    server,
    PASSWORD,
    "SELECT count(*)::text AS count, md5(string_agg(id || ':' || name || ':' || amount, ',' ORDER BY id)) AS md5 FROM items",
    'shop',
  );
  return rows[0];
}

describe('PostgreSQL backups and restores (real postgres, pg_basebackup, tar)', { timeout: 600_000 }, () => {
  const cleanup = new Cleanup();
  let dir: string;
  let source: ManagedServer;
  let atBackup: { count: string; md5: string };

  before(async () => {
    ensureDatastorePackages();
    dir = cleanup.dir(makeTestDir('postgresql'));
    source = cleanup.server(await startPostgres({ dataDir: join(dir, 'source'), rootPassword: PASSWORD }));
    await pgQuery(source, PASSWORD, 'CREATE DATABASE shop');
    await pgQuery(
      source,
      PASSWORD,
      `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount numeric(10,2));
       INSERT INTO items SELECT g, 'item-' || g || '-' || md5(g::text), g * 1.5 FROM generate_series(1, 5000) g;`,
      'shop',
    );
  });
  after(() => cleanup.run());

  it('takes an encrypted full backup without a password on any command line', async () => {
    const run = postgresqlRunner.backupStream(source, { password: PASSWORD });
    const seen: string[] = [];
    const watcher = setInterval(() => seen.push(...commandLinesOf('pg_basebackup')), 5);
    try {
      await pipeline(run.stream, createEncryptStream(KEY), createWriteStream(join(dir, 'base.tar.gz.enc')));
    } finally {
      clearInterval(watcher);
    }
    const result = await run.done;
    atBackup = await contentOf(source);
    assert.equal(atBackup.count, '5000');
    assert.match(result.lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.ok(!result.toolLog.includes(PASSWORD));
    assert.ok(seen.length > 0, 'saw the pg_basebackup process');
    assert.ok(seen.every((cmd) => !cmd.includes(PASSWORD)));
  });

  it('writes a tar.gz that openssl enc -d and gzip -d read', () => {
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
    const decrypted = spawnSync('openssl', [
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
      join(dir, 'base.tar.gz.enc'),
      '-out',
      join(dir, 'base.tar.gz'),
    ]);
    assert.equal(decrypted.status, 0, String(decrypted.stderr));
    const listing = spawnSync('tar', ['-tzf', join(dir, 'base.tar.gz')], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(listing.status, 0, String(listing.stderr));
    const names = String(listing.stdout).split('\n');
    for (const name of ['backup_label', 'PG_VERSION', 'global/pg_control']) assert.ok(names.includes(name), name);
    assert.ok(
      names.some((n) => n.startsWith('pg_wal/0000')),
      'the WAL needed to recover is in the tar (-X fetch)',
    );
  });

  it('restores into a new server with the content at backup time', async () => {
    await pgQuery(source, PASSWORD, "DELETE FROM items WHERE id > 4000; UPDATE items SET name = 'changed' WHERE id < 10", 'shop');
    assert.notDeepEqual(await contentOf(source), atBackup);
    const restored = cleanup.server(
      await postgresqlRunner.restore({
        chain: [
          () => {
            const decrypt = createDecryptStream(KEY);
            pipeline(createReadStream(join(dir, 'base.tar.gz.enc')), decrypt).catch(() => {});
            return decrypt;
          },
        ],
        targetDataDir: join(dir, 'restored'),
      }),
    );
    assert.notEqual(restored.port, source.port);
    assert.deepEqual(await contentOf(restored), atBackup);
    // It is a normal, writable primary with the source's password.
    await pgQuery(restored, PASSWORD, "INSERT INTO items VALUES (100000, 'new', 1)", 'shop');
    await restored.destroy();
    assert.ok(!existsSync(restored.dataDir));
  });

  it('rejects with the tool error line on a wrong password', async () => {
    const run = postgresqlRunner.backupStream(source, { password: 'wrong-password' });
    const streamed = assert.rejects(pipeline(run.stream, createWriteStream(join(dir, 'bad.tar.gz'))), ToolError);
    await assert.rejects(run.done, (err: Error) => {
      assert.ok(err instanceof ToolError);
      assert.match(err.message, /^pg_basebackup failed: .*password authentication failed for user "postgres"/);
      assert.ok(!err.message.includes('wrong-password'));
      return true;
    });
    await streamed;
  });

  it('refuses incrementals and chains longer than one backup', async () => {
    assert.throws(
      () => postgresqlRunner.backupStream(source, { password: PASSWORD, incremental: { fromLsn: '1' } }),
      /incremental/,
    );
    const link = () => createReadStream(join(dir, 'base.tar.gz'));
    await assert.rejects(postgresqlRunner.restore({ chain: [link, link], targetDataDir: join(dir, 'two') }), /exactly one/);
    assert.ok(!existsSync(join(dir, 'two')));
  });

  it('fails a restore of a truncated backup and leaves no folder behind', async () => {
    const target = join(dir, 'truncated');
    const truncated = () => createReadStream(join(dir, 'base.tar.gz'), { start: 0, end: 200_000 });
    await assert.rejects(postgresqlRunner.restore({ chain: [truncated], targetDataDir: target }));
    assert.ok(!existsSync(target));
  });
});
