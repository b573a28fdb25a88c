import type { Generated } from 'kysely';

// Table types for Kysely. Timestamps are ISO-8601 UTC strings ("2026-11-25T10:00:00.000Z") so
// SQLite and PostgreSQL store and compare them alike; job timing columns are epoch milliseconds.

export interface DatastoresTable {
  id: string;
  /** 'mariadb' | 'mysql' | 'postgresql' */
  name: string;
  default_version_id: string | null;
}

export interface DatastoreVersionsTable {
  id: string;
  datastore_id: string;
  name: string;
  active: number;
}

export interface BackupsTable {
  id: string;
  project_id: string;
  name: string;
  description: string | null;
  /** NEW | BUILDING | SAVING | COMPLETED | FAILED | DELETE_FAILED (see src/backups/state.ts) */
  status: string;
  instance_id: string | null;
  parent_id: string | null;
  datastore_version_id: string | null;
  /** Where this region keeps the bytes (Trove's locationRef). */
  location: string | null;
  /** Exact bytes; the API shows GB as a float. */
  size_bytes: number | null;
  /** Swift-style checksum: MD5 of the object, or of the segment MD5s for a large object. */
  checksum: string | null;
  sha256: string | null;
  /** For copies: the source object's URL, region and backup id (when known). */
  source_location: string | null;
  source_region: string | null;
  source_backup_id: string | null;
  source_checksum: string | null;
  /** Object metadata carried with the bytes (JSON object of strings). */
  metadata: string | null;
  incremental: number;
  /** Set when the bytes are encrypted: the passphrase, wrapped under this region key. */
  encryption_key_id: string | null;
  wrapped_passphrase: string | null;
  /** MariaDB: the checkpoint LSN an incremental child starts from. */
  lsn: string | null;
  progress_done: number;
  progress_total: number | null;
  progress_rate: number | null;
  fail_reason: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

export interface InstancesTable {
  id: string;
  project_id: string;
  name: string;
  status: string;
  datastore_version_id: string;
  volume_size: number;
  host: string | null;
  port: number | null;
  data_dir: string | null;
  pid: number | null;
  fail_reason: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  /** The server's admin user and its password, wrapped (never shown after creation). */
  admin_user: string | null;
  wrapped_password: string | null;
  password_key_id: string | null;
  /** The backup this instance was restored from, if any. */
  restore_backup_id: string | null;
}

export interface JobsTable {
  id: Generated<number>;
  /** e.g. 'backup.copy' */
  kind: string;
  /** JSON payload given to the handler. */
  payload: string;
  /** The backup/instance this job works on, for cancellation and listing. */
  resource_id: string | null;
  /** queued | running | succeeded | failed | cancelled */
  status: string;
  attempts: number;
  max_attempts: number;
  /** Epoch ms before which the job must not be claimed (backoff). */
  run_after: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  cancel_requested: number;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

/** One row per finished part of a transfer: the resume point of a copy or upload. */
export interface TransferPartsTable {
  backup_id: string;
  part_number: number;
  key: string;
  size: number;
  etag: string;
  finished_at: string;
}

export interface Database {
  datastores: DatastoresTable;
  datastore_versions: DatastoreVersionsTable;
  backups: BackupsTable;
  instances: InstancesTable;
  jobs: JobsTable;
  transfer_parts: TransferPartsTable;
}
