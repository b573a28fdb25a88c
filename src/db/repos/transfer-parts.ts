import type { Kysely, Selectable, Transaction } from 'kysely';
import { nowIso } from '../connect.ts';
import type { Database, TransferPartsTable } from '../schema.ts';

// The resume points of a transfer: one row per finished part, so a reclaimed job skips them.

export type TransferPart = Omit<Selectable<TransferPartsTable>, 'finished_at'>;
type Executor = Kysely<Database> | Transaction<Database>;

export async function finishedParts(db: Executor, backupId: string): Promise<Selectable<TransferPartsTable>[]> {
  return db.selectFrom('transfer_parts').selectAll().where('backup_id', '=', backupId).orderBy('part_number').execute();
}

/** Records a finished part; recording the same part twice (a re-run) keeps the newer row. */
export async function recordPart(db: Executor, part: TransferPart): Promise<void> {
  await db
    .insertInto('transfer_parts')
    .values({ ...part, finished_at: nowIso() })
    .onConflict((oc) =>
      oc
        .columns(['backup_id', 'part_number'])
        .doUpdateSet({ key: part.key, size: part.size, etag: part.etag, finished_at: nowIso() }),
    )
    .execute();
}

export async function forgetParts(db: Executor, backupId: string): Promise<void> {
  await db.deleteFrom('transfer_parts').where('backup_id', '=', backupId).execute();
}
