import { BadRequest } from '../errors.ts';

// Trove's object naming, kept exactly so Trove tooling and Tern read each other's containers:
// "<id>.xbstream.gz[.enc]" for MariaDB/MySQL, "<id>.tar.gz[.enc]" for PostgreSQL, and large
// objects as segments "<id>_%08d" joined by a manifest under the plain name.

/** Object metadata naming the project that owns a backup's bytes (Tern writes it on every object). */
export const PROJECT_META = 'project-id';
/**
 * Object metadata carrying an encrypted backup's passphrase, wrapped under a region key (never the
 * passphrase itself), so a copy by any form can re-wrap it without asking the source region's API.
 */
export const KEY_ID_META = 'encryption-key-id';
export const WRAPPED_META = 'wrapped-passphrase';

export function envelopeMetadata(keyId: string | null, wrapped: string | null): Record<string, string> {
  return keyId && wrapped ? { [KEY_ID_META]: keyId, [WRAPPED_META]: wrapped } : {};
}

export function envelopeOf(metadata: Record<string, string>): { keyId: string; wrapped: string } | null {
  const keyId = metadata[KEY_ID_META];
  const wrapped = metadata[WRAPPED_META];
  return keyId && wrapped ? { keyId, wrapped } : null;
}

export type BackupDatastore = 'mariadb' | 'mysql' | 'postgresql';

const SUFFIX: Record<BackupDatastore, string> = {
  mariadb: '.xbstream.gz',
  mysql: '.xbstream.gz',
  postgresql: '.tar.gz',
};

/** A suffix we are willing to carry into our own storage: dot-separated plain words. */
const SAFE_SUFFIX = /^(\.[A-Za-z0-9_-]+)*$/;
const MAX_SUFFIX = 64;

export function backupObjectKey(backupId: string, datastore: BackupDatastore, encrypted: boolean): string {
  const suffix = SUFFIX[datastore];
  if (suffix === undefined) throw new BadRequest(`datastore ${datastore} has no backup object format`);
  return `${backupId}${suffix}${encrypted ? '.enc' : ''}`;
}

/**
 * The key a copy is stored under: the new id with the source's suffix (everything after the first
 * "." of the object name), so the format (xbstream/tar, encrypted or not) stays visible in the name.
 */
export function targetKeyFor(sourceKey: string, newId: string): string {
  const name = sourceKey.slice(sourceKey.lastIndexOf('/') + 1);
  const dot = name.indexOf('.');
  const suffix = dot < 0 ? '' : name.slice(dot);
  if (suffix.length > MAX_SUFFIX || !SAFE_SUFFIX.test(suffix)) {
    throw new BadRequest(`source object ${name.slice(0, 100)} has an unusual name suffix; expected e.g. ".xbstream.gz.enc"`);
  }
  return `${newId}${suffix}`;
}

/** Prefix shared by every segment of a backup's large object ("<id>_00000001", ...). */
export function segmentPrefix(backupId: string): string {
  return `${backupId}_`;
}
