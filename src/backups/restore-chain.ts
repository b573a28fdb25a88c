import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ChainLink } from '../datastores/types.ts';
import type { Db } from '../db/connect.ts';
import { type BackupRow, findBackup } from '../db/repos/backups.ts';
import { BadRequest, Conflict, IntegrityError, KeyUnavailable, NotFound, ObjectNotFound } from '../errors.ts';
import type { Keyring } from '../keys/keyring.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { createDecryptStream } from '../streams/openssl-cipher.ts';
import { createObjectVerifier } from '../streams/verify-object.ts';

// What a restore reads: the backup's incremental chain (full backup first), each link streamed
// from storage, checked against the recorded checksum while it is read, and decrypted.

const MAX_CHAIN = 1000;

/** The chain ending at backupId, full backup first. Every link must be COMPLETED and stored. */
export async function backupChain(db: Db, backupId: string): Promise<BackupRow[]> {
  const chain: BackupRow[] = [];
  const seen = new Set<string>();
  let id: string | null = backupId;
  while (id !== null) {
    if (seen.has(id) || chain.length >= MAX_CHAIN) throw new Conflict(`the parent links of backup ${backupId} form a loop`);
    seen.add(id);
    const row = await findBackup(db.kysely, id);
    if (!row) throw new NotFound(`backup ${id} (in the chain of ${backupId}) could not be found`);
    if (row.status !== 'COMPLETED') throw new Conflict(`backup ${id} (in the chain of ${backupId}) is ${row.status}`);
    if (!row.location) throw new Conflict(`backup ${id} has no location`);
    chain.unshift(row);
    id = row.parent_id;
  }
  return chain;
}

/** The passphrase the bytes of a backup were encrypted with, or null when they are not encrypted. */
export function passphraseOf(backup: BackupRow, key: string, keyring: Keyring): string | null {
  if (backup.wrapped_passphrase && backup.encryption_key_id) {
    return keyring.unwrap({ keyId: backup.encryption_key_id, wrapped: backup.wrapped_passphrase });
  }
  if (!key.endsWith('.enc')) return null;
  // Made by Trove: one deployment-wide key, configured as encryption.legacyPassphrase.
  if (!keyring.legacyPassphrase) {
    throw new KeyUnavailable(`backup ${backup.id} is encrypted with no key of its own; configure encryption.legacyPassphrase`);
  }
  return keyring.legacyPassphrase;
}

/** Opens one backup for a restore: verified, decrypted gzip bytes. */
export function chainLink(storage: StorageDriver, keyring: Keyring, backup: BackupRow, signal: AbortSignal): ChainLink {
  return async (): Promise<Readable> => {
    const location = backup.location!;
    const key = storage.keyOf(location);
    if (key === null) throw new BadRequest(`backup ${backup.id} is not in this region's storage (${location})`);
    const passphrase = passphraseOf(backup, key, keyring);
    const head = await storage.head(key, signal);
    if (!head) throw new ObjectNotFound(`the bytes of backup ${backup.id} are missing from ${location}`);
    const checksum = backup.checksum ?? head.etag;
    if (head.etag !== checksum) {
      throw new IntegrityError(`backup ${backup.id}: storage reports checksum ${head.etag}, the backup recorded ${checksum}`);
    }
    const segments = head.segmented ? await storage.segments(key, signal) : null;
    const verify = createObjectVerifier({ what: location, checksum, segments, size: head.size });
    const body = await storage.get(key, { signal });
    const decrypt = passphrase === null ? null : createDecryptStream(passphrase);
    const last = decrypt ?? verify;
    // Errors anywhere destroy the last stream, so the restore tool's input fails with them.
    const streams: NodeJS.ReadWriteStream[] = decrypt ? [verify, decrypt] : [verify];
    pipeline(body, ...(streams as [NodeJS.ReadWriteStream])).catch(() => {});
    return last;
  };
}
