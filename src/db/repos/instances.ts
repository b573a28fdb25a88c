import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Database, InstancesTable } from '../schema.ts';

type Executor = Kysely<Database> | Transaction<Database>;
export type InstanceRow = Selectable<InstancesTable>;

export async function findInstance(db: Executor, id: string): Promise<InstanceRow | undefined> {
  return db.selectFrom('instances').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
}
