import type { DatastoreRow, DatastoreVersionRow } from '../../db/repos/datastores.ts';

export function datastoreView(ds: DatastoreRow & { versions: DatastoreVersionRow[] }, base: string): Record<string, unknown> {
  return {
    id: ds.id,
    name: ds.name,
    default_version: ds.default_version_id,
    links: [{ rel: 'self', href: `${base}/datastores/${ds.id}` }],
    versions: ds.versions.map((v) => versionView(v, ds.name, base)),
  };
}

export function versionView(v: DatastoreVersionRow, datastoreName: string, base: string): Record<string, unknown> {
  return {
    id: v.id,
    name: v.name,
    datastore: v.datastore_id,
    datastore_name: datastoreName,
    active: v.active,
    links: [{ rel: 'self', href: `${base}/datastores/versions/${v.id}` }],
  };
}
