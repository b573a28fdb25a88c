import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { BadRequest } from '../errors.ts';
import { BIN } from '../instances/binaries.ts';
import { POSTGRES_SUPERUSER, pgpassLine, runPostgres } from '../instances/postgres-process.ts';
import { assertReachable, privateTempDir, removeQuietly, serviceUser, writeSecretFile } from '../instances/process.ts';
import { createEmptyInstanceDir, layoutOf, type ManagedServer } from '../instances/server.ts';
import { runTool, spawnTool, streamToolInto } from '../instances/tool.ts';
import { createParallelGzip } from '../streams/gzip-parallel.ts';
import type { BackupOptions, BackupResult, BackupRun, BackupSource, DatastoreRunner, RestoreOptions } from './types.ts';

// PostgreSQL backups as Trove takes them: `pg_basebackup -Ft` (one tar, to stdout) | gzip.
// `-X stream` cannot write to stdout, so the WAL needed for consistency is fetched into the tar at
// the end (-X fetch). Restores untar into a new data folder; the server replays that WAL on start.

const COMPLETED = /base backup completed/;

/** Streams a full base backup of a running server as tar.gz. PostgreSQL 15 has no incremental ones. */
export function backupStream(server: BackupSource, options: BackupOptions): BackupRun {
  if (options.incremental) throw new BadRequest('PostgreSQL backups cannot be incremental');
  const gzip = createParallelGzip(options.gzip);
  const done = (async (): Promise<BackupResult> => {
    const tmp = await privateTempDir('tern-pgbasebackup-');
    try {
      const passFile = join(tmp, 'pgpass');
      const user = options.user ?? POSTGRES_SUPERUSER;
      await writeSecretFile(passFile, pgpassLine(server, user, options.password));
      const args = [
        ...['-h', server.host, '-p', String(server.port), '-U', user],
        '-w', // never prompt: with no terminal it would wait forever
        ...['-c', 'fast'], // checkpoint now instead of waiting for the next one
        ...['-F', 't', '-X', 'fetch', '-D', '-'],
        '-v', // prints the WAL end point and "base backup completed"
      ];
      const tool = spawnTool(BIN.pgBasebackup, args, { stdout: 'pipe', env: { PGPASSFILE: passFile }, signal: options.signal });
      const exit = await streamToolInto(tool, gzip, { okPattern: COMPLETED, signal: options.signal });
      const lsn = /write-ahead log end point: ([0-9A-F]+\/[0-9A-F]+)/i.exec(exit.log)?.[1];
      return { lsn, toolLog: exit.log };
    } finally {
      await removeQuietly(tmp);
    }
  })();
  done.catch((err) => gzip.destroy(err));
  return { stream: gzip, done };
}

/** Restores a base backup into a new instance folder and starts postgres on it. */
export async function restore(options: RestoreOptions): Promise<ManagedServer> {
  if (options.chain.length !== 1) throw new BadRequest('a PostgreSQL restore takes exactly one (full) backup');
  const layout = layoutOf(options.targetDataDir);
  await createEmptyInstanceDir(layout.dataDir);
  try {
    const user = serviceUser('postgres');
    await mkdir(layout.dbDir, { mode: 0o700 });
    if (user) {
      await chown(layout.dataDir, user.uid, user.gid);
      await chown(layout.dbDir, user.uid, user.gid);
      await assertReachable(layout.dbDir, user);
    }
    // Untar as the server's user, so every file belongs to it and nothing can land outside.
    const source = await options.chain[0]();
    await runTool(BIN.tar, ['-x', '-f', '-', '-C', layout.dbDir], {
      user,
      input: [source, createGunzip()],
      signal: options.signal,
    });
    await chmod(layout.dbDir, 0o700);
    return await runPostgres(layout.dataDir, { port: options.port, extraArgs: options.extraArgs, signal: options.signal });
  } catch (err) {
    await removeQuietly(layout.dataDir);
    throw err;
  }
}

export const postgresqlRunner: DatastoreRunner = {
  kind: 'postgresql',
  extension: '.tar.gz',
  supportsIncremental: false,
  backupStream,
  restore,
};
