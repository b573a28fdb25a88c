import type { Db } from '../../db/connect.ts';
import { nowIso } from '../../db/connect.ts';
import type { JobHandler } from '../../jobs/types.ts';
import type { StorageDriver } from '../../storage/driver.ts';
import { removeBackupObjects } from '../backup-objects.ts';

// Removes a deleted backup's bytes. The row was hidden when the DELETE was accepted; if the bytes
// cannot be removed after every retry, the row comes back as DELETE_FAILED so nothing is lost silently.

export function deleteBackupTask(deps: { db: Db; storage: StorageDriver }): JobHandler<{ backupId: string }> {
  const { db, storage } = deps;
  return {
    async run({ backupId }, ctx) {
      const row = await db.kysely.selectFrom('backups').select(['location']).where('id', '=', backupId).executeTakeFirst();
      const key = row?.location ? storage.keyOf(row.location) : null;
      if (key) await storage.delete(key, ctx.signal);
      // Segments of an unfinished upload that never got a manifest, and anything else named after it.
      const { missed } = await removeBackupObjects(storage, backupId, ctx.signal);
      if (missed.length > 0) throw missed[0].error;
    },
    async onGiveUp({ backupId }, error) {
      await db.kysely
        .updateTable('backups')
        .set({ status: 'DELETE_FAILED', deleted_at: null, fail_reason: `delete failed: ${error.message}`, updated_at: nowIso() })
        .where('id', '=', backupId)
        .execute();
    },
  };
}
