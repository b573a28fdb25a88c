import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { BadRequest } from '../errors.ts';
import { BIN } from '../instances/binaries.ts';
import { mariadbClientConfig, runMariadb } from '../instances/mariadb-process.ts';
import { chownTree, privateTempDir, removeQuietly, serviceUser, writeSecretFile } from '../instances/process.ts';
import { createEmptyInstanceDir, layoutOf, type ManagedServer } from '../instances/server.ts';
import { runTool, spawnTool, streamToolInto } from '../instances/tool.ts';
import { createParallelGzip } from '../streams/gzip-parallel.ts';
import type {
  BackupOptions,
  BackupResult,
  BackupRun,
  BackupSource,
  ChainLink,
  DatastoreRunner,
  RestoreOptions,
} from './types.ts';

// MariaDB backups as Trove takes them: `mariabackup --backup --stream=xbstream | gzip`, full or
// incremental from a parent's LSN; restores with `mbstream -x` and `mariabackup --prepare`.

const COMPLETED = /completed OK!/;

/** Streams a (full or incremental) backup of a running local server as xbstream.gz. */
export function backupStream(server: BackupSource, options: BackupOptions): BackupRun {
  const fromLsn = options.incremental?.fromLsn;
  if (fromLsn !== undefined && !/^\d+$/.test(fromLsn)) throw new BadRequest('incremental LSN must be a decimal number');
  const gzip = createParallelGzip(options.gzip);
  const done = (async (): Promise<BackupResult> => {
    const tmp = await privateTempDir('tern-mariabackup-');
    try {
      // Credentials in a 0600 defaults file: not on argv (ps), not in xtrabackup_info's tool_command.
      const defaults = join(tmp, 'client.cnf');
      await writeSecretFile(defaults, mariadbClientConfig(server, options.user ?? 'root', options.password));
      const lsnDir = join(tmp, 'lsn');
      const targetDir = join(tmp, 'target');
      await mkdir(lsnDir);
      await mkdir(targetDir);
      const args = [
        `--defaults-file=${defaults}`, // must come first; also keeps /etc/mysql/my.cnf out
        '--backup',
        '--stream=xbstream',
        `--target-dir=${targetDir}`,
        `--extra-lsndir=${lsnDir}`,
        ...(fromLsn !== undefined ? [`--incremental-lsn=${fromLsn}`] : []),
      ];
      const tool = spawnTool(BIN.mariabackup, args, { stdout: 'pipe', signal: options.signal });
      const exit = await streamToolInto(tool, gzip, { okPattern: COMPLETED, signal: options.signal });
      return { lsn: await readLsn(lsnDir, exit.log), toolLog: exit.log };
    } finally {
      await removeQuietly(tmp);
    }
  })();
  done.catch((err) => gzip.destroy(err));
  return { stream: gzip, done };
}

/**
 * The LSN a child incremental starts from. A streamed backup leaves no checkpoints file in the
 * target dir; --extra-lsndir has one (to_lsn), and the log has the same number.
 */
async function readLsn(lsnDir: string, log: string): Promise<string | undefined> {
  const checkpoints = await readFile(join(lsnDir, 'xtrabackup_checkpoints'), 'utf8').catch(() => '');
  const fromFile = /^to_lsn\s*=\s*(\d+)\s*$/m.exec(checkpoints)?.[1];
  return fromFile ?? /The latest check point \(for incremental\): '(\d+)'/.exec(log)?.[1];
}

/** Restores a full backup and its incrementals into a new instance folder and starts mariadbd on it. */
export async function restore(options: RestoreOptions): Promise<ManagedServer> {
  if (options.chain.length === 0) throw new BadRequest('a restore needs at least the full backup');
  const layout = layoutOf(options.targetDataDir);
  const signal = options.signal;
  await createEmptyInstanceDir(layout.dataDir);
  try {
    await mkdir(layout.dbDir, { mode: 0o750 });
    await extract(options.chain[0], layout.dbDir, signal);
    await prepare([`--target-dir=${layout.dbDir}`], signal);
    for (let i = 1; i < options.chain.length; i++) {
      const incDir = join(layout.dataDir, `incremental-${i}`);
      await mkdir(incDir, { mode: 0o700 });
      await extract(options.chain[i], incDir, signal);
      // mariabackup refuses an incremental whose from_lsn does not continue the prepared data.
      await prepare([`--target-dir=${layout.dbDir}`, `--incremental-dir=${incDir}`], signal);
      await removeQuietly(incDir);
    }
    // mbstream wrote the files as Tern's user; the server runs as mysql.
    const user = serviceUser('mysql');
    if (user) await chownTree(layout.dbDir, user);
    return await runMariadb(layout.dataDir, { port: options.port, extraArgs: options.extraArgs, signal });
  } catch (err) {
    await removeQuietly(layout.dataDir);
    throw err;
  }
}

async function extract(link: ChainLink, dir: string, signal?: AbortSignal): Promise<void> {
  const source = await link();
  await runTool(BIN.mbstream, ['-x', '-C', dir], { input: [source, createGunzip()], signal });
}

async function prepare(args: string[], signal?: AbortSignal): Promise<void> {
  await runTool(BIN.mariabackup, ['--no-defaults', '--prepare', ...args], { okPattern: COMPLETED, signal });
}

export const mariadbRunner: DatastoreRunner = {
  kind: 'mariadb',
  extension: '.xbstream.gz',
  supportsIncremental: true,
  backupStream,
  restore,
};
