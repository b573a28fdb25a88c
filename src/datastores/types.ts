import type { Readable } from 'node:stream';
import type { DatastoreKind, ManagedServer } from '../instances/provisioner.ts';
import type { ParallelGzipOptions } from '../streams/gzip-parallel.ts';

// The common shape of the per-datastore backup and restore runners (mariadb.ts, postgresql.ts).
//
// Bytes: backupStream emits the tool's archive compressed with gzip (concatenated gzip members,
// readable by `gzip -d`): an xbstream for MariaDB, a tar for PostgreSQL, as Trove stores them
// (before its optional openssl encryption, which the caller adds with streams/openssl-cipher.ts).
// restore takes exactly those bytes back: each chain link opens one backup's gzip stream, already
// decrypted. So  backupStream().stream -> [encrypt -> storage -> decrypt] -> restore({chain}).

export { ToolError } from '../instances/tool.ts';

export interface BackupSource {
  host: string;
  port: number;
}

export interface BackupOptions {
  /** Password of `user` on the server; handed to the tool in a 0600 file, never on argv. */
  password: string;
  /** Default: root (MariaDB) or postgres (PostgreSQL). */
  user?: string;
  /** MariaDB only: copy only pages changed after the parent's LSN (its BackupResult.lsn). */
  incremental?: { fromLsn: string };
  /** Parallel gzip settings (level, workers, chunk size). */
  gzip?: ParallelGzipOptions;
  signal?: AbortSignal;
}

export interface BackupResult {
  /**
   * MariaDB: the checkpoint LSN an incremental child starts from ("The latest check point (for
   * incremental)"). PostgreSQL: the WAL end position of the backup, e.g. "0/3000100".
   */
  lsn?: string;
  /** The tail of what the tool printed (no secrets: credentials never reach the tool's output). */
  toolLog: string;
}

export interface BackupRun {
  /**
   * The gzip bytes. They end only after the tool reported success; if it fails (or is aborted)
   * the stream errors instead, so a consumer can never mistake a broken backup for a complete one.
   * Destroying the stream stops the tool.
   */
  stream: Readable;
  /** Resolves after the tool succeeded; rejects with ToolError (tool's last error line) or Cancelled. */
  done: Promise<BackupResult>;
}

/** Opens one backup of a chain: the gzip bytes backupStream produced, already decrypted. */
export type ChainLink = () => Readable | Promise<Readable>;

export interface RestoreOptions {
  /** Full backup first, then its incrementals in order (MariaDB); exactly one for PostgreSQL. */
  chain: ChainLink[];
  /** A new instance folder (must not exist or be empty); removed again if the restore fails. */
  targetDataDir: string;
  /** Port of the restored server; default a free one. */
  port?: number;
  /** More server arguments, as for startMariadb / startPostgres. */
  extraArgs?: string[];
  signal?: AbortSignal;
}

export interface DatastoreRunner {
  readonly kind: DatastoreKind;
  /** Object name suffix before any ".enc": Trove's "<id>.xbstream.gz" / "<id>.tar.gz". */
  readonly extension: '.xbstream.gz' | '.tar.gz';
  readonly supportsIncremental: boolean;
  backupStream(server: BackupSource, options: BackupOptions): BackupRun;
  /** Restores the chain into targetDataDir and starts a server on it (same users and passwords as the source). */
  restore(options: RestoreOptions): Promise<ManagedServer>;
}
