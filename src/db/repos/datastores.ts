import type { Kysely, Selectable, Transaction } from 'kysely';
import { type DatastoreConfig, stableId } from '../../config.ts';
import type { Database, DatastoresTable, DatastoreVersionsTable } from '../schema.ts';

type Executor = Kysely<Database> | Transaction<Database>;
export type DatastoreRow = Selectable<DatastoresTable>;
export type DatastoreVersionRow = Selectable<DatastoreVersionsTable>;

export interface DatastoreVersion {
  id: string;
  name: string;
  active: boolean;
  datastoreId: string;
  datastore: string;
}

/** Makes the tables hold exactly the configured datastores; ids are stable across regions. */
export async function seedDatastores(db: Kysely<Database>, datastores: readonly DatastoreConfig[]): Promise<void> {
  versionCache.delete(db);
  await db.transaction().execute(async (trx) => {
    for (const ds of datastores) {
      const existing = await trx.selectFrom('datastores').select('id').where('name', '=', ds.type).executeTakeFirst();
      const datastoreId = existing?.id ?? stableId('datastore', ds.type);
      if (!existing)
        await trx.insertInto('datastores').values({ id: datastoreId, name: ds.type, default_version_id: null }).execute();
      for (const v of ds.versions) {
        await trx
          .insertInto('datastore_versions')
          .values({ id: v.id, datastore_id: datastoreId, name: v.name, active: 1 })
          .onConflict((oc) => oc.column('id').doUpdateSet({ name: v.name, active: 1 }))
          .execute();
      }
      await trx.updateTable('datastores').set({ default_version_id: ds.versions[0].id }).where('id', '=', datastoreId).execute();
    }
  });
}

export async function listDatastores(db: Executor): Promise<Array<DatastoreRow & { versions: DatastoreVersionRow[] }>> {
  const [stores, versions] = await Promise.all([
    db.selectFrom('datastores').selectAll().orderBy('name').execute(),
    db.selectFrom('datastore_versions').selectAll().orderBy('name').execute(),
  ]);
  return stores.map((s) => ({ ...s, versions: versions.filter((v) => v.datastore_id === s.id) }));
}

// Versions are seeded from config at start and never change while Tern runs, so a found version is
// remembered per database handle: listing a page of backups must not cost one query per row.
const versionCache = new WeakMap<Executor, Map<string, DatastoreVersion>>();

export async function findDatastoreVersion(db: Executor, id: string): Promise<DatastoreVersion | undefined> {
  let cache = versionCache.get(db);
  const hit = cache?.get(id);
  if (hit) return hit;
  const found = await queryDatastoreVersion(db, id);
  if (found) {
    if (!cache) {
      cache = new Map();
      versionCache.set(db, cache);
    }
    cache.set(id, found);
  }
  return found;
}

async function queryDatastoreVersion(db: Executor, id: string): Promise<DatastoreVersion | undefined> {
  const row = await db
    .selectFrom('datastore_versions as v')
    .innerJoin('datastores as d', 'd.id', 'v.datastore_id')
    .select(['v.id', 'v.name', 'v.active', 'v.datastore_id', 'd.name as datastore'])
    .where('v.id', '=', id)
    .executeTakeFirst();
  return row && { id: row.id, name: row.name, active: row.active === 1, datastoreId: row.datastore_id, datastore: row.datastore };
}

export async function findDatastoreVersionByName(
  db: Executor,
  datastore: string,
  version: string,
): Promise<DatastoreVersion | undefined> {
  const row = await db
    .selectFrom('datastore_versions as v')
    .innerJoin('datastores as d', 'd.id', 'v.datastore_id')
    .select(['v.id'])
    .where('d.name', '=', datastore)
    .where('v.name', '=', version)
    .executeTakeFirst();
  return row && findDatastoreVersion(db, row.id);
}

/** Version ids of a datastore given by name or id; undefined if there is no such datastore. */
export async function versionIdsOfDatastore(db: Executor, nameOrId: string): Promise<string[] | undefined> {
  const ds = await db
    .selectFrom('datastores')
    .select('id')
    .where((eb) => eb.or([eb('name', '=', nameOrId), eb('id', '=', nameOrId)]))
    .executeTakeFirst();
  if (!ds) return undefined;
  const rows = await db.selectFrom('datastore_versions').select('id').where('datastore_id', '=', ds.id).execute();
  return rows.map((r) => r.id);
}
