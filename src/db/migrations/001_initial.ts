import type { Kysely } from 'kysely';
import type { Dialect } from '../connect.ts';

// Portable DDL for SQLite and PostgreSQL. Never edit a landed migration; add one.

export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const isPg = dialect === 'postgres';
  await db.schema
    .createTable('datastores')
    .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
    .addColumn('name', 'varchar(64)', (c) => c.notNull().unique())
    .addColumn('default_version_id', 'varchar(36)')
    .execute();
  await db.schema
    .createTable('datastore_versions')
    .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
    .addColumn('datastore_id', 'varchar(36)', (c) => c.notNull().references('datastores.id'))
    .addColumn('name', 'varchar(64)', (c) => c.notNull())
    .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
    .addUniqueConstraint('datastore_versions_name', ['datastore_id', 'name'])
    .execute();
  await db.schema
    .createTable('backups')
    .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
    .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
    .addColumn('name', 'varchar(255)', (c) => c.notNull())
    .addColumn('description', 'varchar(512)')
    .addColumn('status', 'varchar(32)', (c) => c.notNull())
    .addColumn('instance_id', 'varchar(36)')
    .addColumn('parent_id', 'varchar(36)')
    .addColumn('datastore_version_id', 'varchar(36)')
    .addColumn('location', 'text')
    .addColumn('size_bytes', 'bigint')
    .addColumn('checksum', 'varchar(64)')
    .addColumn('sha256', 'varchar(64)')
    .addColumn('source_location', 'text')
    .addColumn('source_region', 'varchar(64)')
    .addColumn('source_backup_id', 'varchar(36)')
    .addColumn('source_checksum', 'varchar(64)')
    .addColumn('metadata', 'text')
    .addColumn('incremental', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('encryption_key_id', 'varchar(64)')
    .addColumn('wrapped_passphrase', 'text')
    .addColumn('progress_done', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('progress_total', 'bigint')
    .addColumn('progress_rate', isPg ? 'double precision' : 'real')
    .addColumn('fail_reason', 'text')
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('deleted_at', 'varchar(32)')
    .execute();
  await db.schema.createIndex('backups_project_created').on('backups').columns(['project_id', 'created_at', 'id']).execute();
  await db.schema.createIndex('backups_instance').on('backups').column('instance_id').execute();
  await db.schema.createIndex('backups_source').on('backups').columns(['source_checksum', 'project_id']).execute();
  await db.schema
    .createTable('instances')
    .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
    .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
    .addColumn('name', 'varchar(255)', (c) => c.notNull())
    .addColumn('status', 'varchar(32)', (c) => c.notNull())
    .addColumn('datastore_version_id', 'varchar(36)', (c) => c.notNull())
    .addColumn('volume_size', 'integer', (c) => c.notNull())
    .addColumn('host', 'varchar(255)')
    .addColumn('port', 'integer')
    .addColumn('data_dir', 'text')
    .addColumn('pid', 'integer')
    .addColumn('fail_reason', 'text')
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('deleted_at', 'varchar(32)')
    .execute();
  await db.schema
    .createTable('jobs')
    .addColumn('id', isPg ? 'bigserial' : 'integer', (c) => (isPg ? c.primaryKey() : c.primaryKey().autoIncrement()))
    .addColumn('kind', 'varchar(64)', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('resource_id', 'varchar(36)')
    .addColumn('status', 'varchar(16)', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_attempts', 'integer', (c) => c.notNull())
    .addColumn('run_after', 'bigint', (c) => c.notNull())
    .addColumn('lease_owner', 'varchar(128)')
    .addColumn('lease_expires_at', 'bigint')
    .addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('jobs_claim').on('jobs').columns(['status', 'run_after']).execute();
  await db.schema.createIndex('jobs_resource').on('jobs').column('resource_id').execute();
  await db.schema
    .createTable('transfer_parts')
    .addColumn('backup_id', 'varchar(36)', (c) => c.notNull())
    .addColumn('part_number', 'integer', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('etag', 'varchar(64)', (c) => c.notNull())
    .addColumn('finished_at', 'varchar(32)', (c) => c.notNull())
    .addPrimaryKeyConstraint('transfer_parts_pk', ['backup_id', 'part_number'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ['transfer_parts', 'jobs', 'instances', 'backups', 'datastore_versions', 'datastores']) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
