import type { CreatedInstance, InstanceWithDatastore } from '../../instances/service.ts';
import { troveTime } from './backup.ts';

// Domain -> Trove JSON ({"instance": {...}}). Trove's fields keep their names; Tern adds `port`
// (Trove's servers listen on the datastore's default port, Tern's on a port of their own).

export function instanceView({ instance: i, datastore: ds }: InstanceWithDatastore, base: string): Record<string, unknown> {
  const href = `${base}/instances/${i.id}`;
  const view: Record<string, unknown> = {
    id: i.id,
    name: i.name,
    status: i.status,
    links: [
      { rel: 'self', href },
      { rel: 'bookmark', href },
    ],
    datastore: ds ? { type: ds.datastore, version: ds.name, version_id: ds.id } : null,
    volume: { size: i.volume_size },
    flavor: null,
    created: troveTime(i.created_at),
    updated: troveTime(i.updated_at),
    ip: i.host ? [i.host] : [],
    hostname: i.host,
    port: i.port,
    project_id: i.project_id,
  };
  if (i.restore_backup_id) view.restore_backup_id = i.restore_backup_id;
  if (i.fail_reason) view.fault = { message: i.fail_reason, created: troveTime(i.updated_at) };
  return view;
}

/** The create response: the record plus the admin credentials, which are never shown again. */
export function createdInstanceView(created: CreatedInstance, base: string): Record<string, unknown> {
  const view = instanceView(created, base);
  view.credential = created.credential;
  // Trove's root_on_create puts the password on the instance itself.
  if (created.credential.password !== null) view.password = created.credential.password;
  return view;
}
