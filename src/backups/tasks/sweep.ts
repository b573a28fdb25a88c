import type { Logger } from 'pino';
import type { Db } from '../../db/connect.ts';
import { StorageUnavailable } from '../../errors.ts';
import { enqueue } from '../../jobs/queue.ts';
import { oneLine } from '../../jobs/reason.ts';
import type { JobHandler } from '../../jobs/types.ts';
import type { StorageDriver } from '../../storage/driver.ts';
import { removeBackupObjects } from '../backup-objects.ts';
import { SWEEP_JOB } from '../jobs.ts';

// The 'backup.sweep' job: a second cleanup of a copy that failed or was cancelled, some time after
// the first. An upload cut off after its last byte had left may still be stored by the server
// after the first cleanup listed the container; this removes what such late uploads left. It only
// ever touches a backup that is FAILED or deleted, so a sweep can never take a live backup's bytes.

export interface SweepPayload {
  backupId: string;
}

/** A minute: far longer than a store takes to commit an upload whose last byte it has. */
export const DEFAULT_SWEEP_DELAY_MS = 60_000;

/** Enqueues the sweep of a backup that just failed; call it in the transaction that fails the row. */
export function enqueueSweep(
  trx: Parameters<typeof enqueue>[0],
  backupId: string,
  options: { delayMs?: number; maxAttempts?: number } = {},
) {
  return enqueue(trx, {
    kind: SWEEP_JOB,
    payload: { backupId },
    resourceId: backupId,
    runAfter: Date.now() + Math.max(0, options.delayMs ?? DEFAULT_SWEEP_DELAY_MS),
    maxAttempts: options.maxAttempts,
  });
}

export function sweepBackupTask(deps: {
  db: Db;
  storage: StorageDriver;
  logger?: Pick<Logger, 'info' | 'warn'>;
}): JobHandler<SweepPayload> {
  const { db, storage, logger } = deps;
  return {
    async run({ backupId }, ctx) {
      const row = await db.kysely
        .selectFrom('backups')
        .select(['status', 'deleted_at'])
        .where('id', '=', backupId)
        .executeTakeFirst();
      if (row && row.deleted_at === null && row.status !== 'FAILED') {
        logger?.warn({ backupId, status: row.status }, 'sweep skipped: the backup is not FAILED or deleted');
        return;
      }
      const { removed, missed } = await removeBackupObjects(storage, backupId, ctx.signal);
      if (removed > 0) logger?.warn({ backupId, removed }, 'removed objects that late uploads of a failed copy left');
      if (missed.length > 0) {
        throw new StorageUnavailable(
          `could not remove ${missed.length} leftover object(s) of backup ${backupId}: ${oneLine(missed[0].error)}`,
        );
      }
    },
    async onGiveUp({ backupId }, error) {
      logger?.warn({ backupId, err: error.message }, 'sweep of a failed copy gave up; objects may be left behind');
    },
  };
}
