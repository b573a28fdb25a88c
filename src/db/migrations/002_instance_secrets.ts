import type { Kysely } from 'kysely';

// Instances: what Tern needs to act on a server later (take backups, restart it) without ever
// showing the admin password again: the user, and the password wrapped under a region key
// (src/keys/keyring.ts). Backups: the datastore kind of the bytes and the LSN an incremental
// child starts from, kept as columns so chains can be walked without parsing metadata.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('instances').addColumn('admin_user', 'varchar(64)').execute();
  await db.schema.alterTable('instances').addColumn('wrapped_password', 'text').execute();
  await db.schema.alterTable('instances').addColumn('password_key_id', 'varchar(64)').execute();
  await db.schema.alterTable('instances').addColumn('restore_backup_id', 'varchar(36)').execute();
  await db.schema.alterTable('backups').addColumn('lsn', 'varchar(64)').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('backups').dropColumn('lsn').execute();
  for (const c of ['restore_backup_id', 'password_key_id', 'wrapped_password', 'admin_user']) {
    await db.schema.alterTable('instances').dropColumn(c).execute();
  }
}
