import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { runnerFor } from '../../datastores/runners.ts';
import type { Db } from '../../db/connect.ts';
import { findBackup, transitionBackup, updateBackupProgress } from '../../db/repos/backups.ts';
import { findDatastoreVersion } from '../../db/repos/datastores.ts';
import { findInstance, transitionInstance } from '../../db/repos/instances.ts';
import { BadRequest, Cancelled, Unprocessable } from '../../errors.ts';
import { oneLine } from '../../jobs/reason.ts';
import type { JobHandler } from '../../jobs/types.ts';
import { Keyring, type Wrapped } from '../../keys/keyring.ts';
import type { ObjectMetadata, StorageDriver } from '../../storage/driver.ts';
import { createEncryptStream } from '../../streams/openssl-cipher.ts';
import { createProgressStream } from '../../streams/progress.ts';
import { removeBackupObjects } from '../backup-objects.ts';
import { type BackupDatastore, backupObjectKey, envelopeMetadata, PROJECT_META } from '../object-names.ts';
import { uploadSegments } from '../segmented-upload.ts';
import { enqueueSweep } from './sweep.ts';

// The 'backup.create' job: streams the instance's backup tool output (gzip) through optional
// openssl-compatible encryption into storage as segments, then publishes the manifest with
// Trove's metadata once the tool reported success. The instance is BACKUP while this runs and
// ACTIVE again afterwards, whatever the outcome. A retry starts over (what was written is removed).

export interface CreateTaskDeps {
  db: Db;
  storage: StorageDriver;
  keyring: Keyring;
  /** Encrypt new backups (config encryption.enabled). */
  encrypt: boolean;
  /** Bytes per segment. */
  segmentSize: number;
  /** Attempts of the sweep enqueued after a failure. */
  maxAttempts?: number;
  /** How long after a failed backup's cleanup a second one runs (sweep.ts; default a minute). */
  sweepDelayMs?: number;
  logger?: Pick<Logger, 'info' | 'warn'>;
}

const DONE = new Set(['COMPLETED', 'FAILED', 'DELETE_FAILED']);

export function createBackupTask(deps: CreateTaskDeps): JobHandler<{ backupId: string }> {
  const { db, storage, keyring, logger } = deps;

  async function run(backupId: string, signal: AbortSignal): Promise<void> {
    const row = await findBackup(db.kysely, backupId);
    if (!row || DONE.has(row.status)) return;
    if (!(await transitionBackup(db.kysely, backupId, 'BUILDING'))) return;
    const instance = row.instance_id ? await findInstance(db.kysely, row.instance_id) : undefined;
    if (!instance?.host || !instance.port) throw new Unprocessable(`instance ${row.instance_id} is gone or has no server`);
    const version = row.datastore_version_id ? await findDatastoreVersion(db.kysely, row.datastore_version_id) : undefined;
    const runner = version && runnerFor(version.datastore);
    if (!version || !runner) throw new BadRequest(`backup ${backupId} has a datastore this region cannot back up`);
    if (!instance.wrapped_password || !instance.password_key_id) {
      throw new Unprocessable(`Tern does not know the admin password of instance ${instance.id}`);
    }
    const password = keyring.unwrap({ keyId: instance.password_key_id, wrapped: instance.wrapped_password });
    const parent = row.parent_id ? await findBackup(db.kysely, row.parent_id) : undefined;
    if (row.parent_id && (parent?.status !== 'COMPLETED' || !parent.lsn)) {
      throw new Unprocessable(`parent backup ${row.parent_id} is missing, not COMPLETED, or has no LSN`);
    }
    await removeWritten(backupId);

    const key = backupObjectKey(backupId, version.datastore as BackupDatastore, deps.encrypt);
    const passphrase = deps.encrypt ? Keyring.newPassphrase() : null;
    const wrapped: Wrapped | null = passphrase ? keyring.wrap(passphrase) : null;
    const backup = runner.backupStream(
      { host: instance.host, port: instance.port },
      { password, user: instance.admin_user ?? undefined, incremental: parent ? { fromLsn: parent.lsn! } : undefined, signal },
    );
    const started = Date.now();
    const progress = createProgressStream({
      onProgress: (bytes) => {
        const seconds = (Date.now() - started) / 1000;
        const rate = seconds > 0 ? Math.round(bytes / seconds) : null;
        updateBackupProgress(db.kysely, backupId, { done: bytes, total: null, rate }).catch((err) =>
          logger?.warn({ backupId, err: oneLine(err) }, 'could not record backup progress'),
        );
      },
    });
    // pipeline destroys every stage on an error anywhere: the upload sees a failed tool, and a
    // failed upload (which destroys the last stage) stops the tool.
    const last = passphrase ? createEncryptStream(passphrase) : progress;
    const stages = (passphrase ? [progress, last] : [progress]) as [NodeJS.ReadWriteStream];
    pipeline(backup.stream, ...stages).catch(() => {});
    const body = last as Readable;
    const [uploaded, tool] = await Promise.allSettled([
      uploadSegments({ storage, backupId, body, segmentSize: deps.segmentSize, signal }),
      backup.done,
    ]);
    // The tool's own error (its last error line) says more than the broken upload it caused.
    if (tool.status === 'rejected') throw tool.reason;
    if (uploaded.status === 'rejected') throw uploaded.reason;
    const lsn = tool.value.lsn ?? null;
    const metadata: ObjectMetadata = {
      datastore: version.datastore,
      'datastore-version': version.name,
      lsn: lsn ?? '',
      'parent-location': parent?.location ?? '',
      'parent-checksum': parent?.checksum ?? '',
      [PROJECT_META]: row.project_id,
      ...envelopeMetadata(wrapped?.keyId ?? null, wrapped?.wrapped ?? null),
    };
    const manifest = await storage.putManifest(key, uploaded.value, { metadata, signal });
    const completed = await transitionBackup(db.kysely, backupId, 'COMPLETED', {
      location: storage.locationOf(key),
      size_bytes: manifest.size,
      checksum: manifest.etag,
      lsn,
      metadata: JSON.stringify(metadata),
      encryption_key_id: wrapped?.keyId ?? null,
      wrapped_passphrase: wrapped?.wrapped ?? null,
      progress_done: manifest.size,
      progress_total: manifest.size,
      fail_reason: null,
    });
    if (!completed) {
      await removeWritten(backupId);
      logger?.warn({ backupId }, 'backup moved away while it was taken; bytes discarded');
    }
    await transitionInstance(db.kysely, instance.id, 'ACTIVE');
    logger?.info({ backupId, instanceId: instance.id, bytes: manifest.size, lsn }, 'backup completed');
  }

  /** Removes the manifest and every segment of this backup (from this or an earlier attempt). */
  async function removeWritten(backupId: string): Promise<void> {
    const { missed } = await removeBackupObjects(storage, backupId, AbortSignal.timeout(120_000));
    if (missed.length > 0) throw missed[0].error;
  }

  return {
    run: ({ backupId }, ctx) => run(backupId, ctx.signal),

    async onGiveUp({ backupId }, error) {
      await removeWritten(backupId).catch((err) =>
        logger?.warn({ backupId, err: oneLine(err) }, 'could not remove the objects of a failed backup'),
      );
      const reason = error instanceof Cancelled ? `backup cancelled: ${oneLine(error)}` : oneLine(error);
      await db.kysely.transaction().execute(async (trx) => {
        await transitionBackup(trx, backupId, 'FAILED', { fail_reason: reason, progress_rate: null });
        // A segment upload cut off after its last byte left may still be stored after the cleanup.
        await enqueueSweep(trx, backupId, { delayMs: deps.sweepDelayMs, maxAttempts: deps.maxAttempts });
      });
      const row = await findBackup(db.kysely, backupId);
      if (row?.instance_id) await transitionInstance(db.kysely, row.instance_id, 'ACTIVE');
      logger?.warn({ backupId, reason }, 'backup failed');
    },
  };
}
