import type { BackupWithDatastore } from '../../backups/service.ts';
import { isRunning } from '../../backups/state.ts';

// Domain -> Trove JSON. Trove's fields keep their names and types; Tern's additions are extra keys.

const GB = 1024 ** 3;

/** Trove's naive ISO timestamp: "2014-04-01T22:00:00". */
export function troveTime(iso: string): string {
  return iso.slice(0, 19);
}

export function backupView({ backup: b, datastore: ds, envelope }: BackupWithDatastore): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: b.id,
    name: b.name,
    description: b.description,
    locationRef: b.location,
    instance_id: b.instance_id,
    created: troveTime(b.created_at),
    updated: troveTime(b.updated_at),
    size: b.size_bytes === null ? null : b.size_bytes / GB,
    status: b.status,
    parent_id: b.parent_id,
    project_id: b.project_id,
    datastore: ds ? { type: ds.datastore, version: ds.name, version_id: ds.id } : null,
    checksum: b.checksum,
    size_bytes: b.size_bytes,
  };
  if (b.source_location) view.source = { location: b.source_location, region: b.source_region, id: b.source_backup_id };
  if (envelope) {
    view.encryption_key_id = envelope.keyId;
    view.wrapped_passphrase = envelope.wrapped;
  }
  if (b.fail_reason) view.fail_reason = b.fail_reason;
  if (isRunning(b.status)) view.progress = progressView(b.progress_done, b.progress_total, b.progress_rate);
  return view;
}

function progressView(done: number, total: number | null, rate: number | null): Record<string, number | null> {
  const percent = total ? Math.min(100, Math.round((done / total) * 1000) / 10) : null;
  const eta = total && rate && rate > 0 ? Math.ceil((total - done) / rate) : null;
  return { done_bytes: done, total_bytes: total, percent, rate_bytes_per_s: rate, eta_seconds: eta };
}
