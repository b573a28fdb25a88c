import { pipeline } from 'node:stream/promises';
import type { ChainLink } from '../datastores/types.ts';
import type { Db } from '../db/connect.ts';
import { type BackupRow, findBackup } from '../db/repos/backups.ts';
import { BadRequest, Cancelled, Conflict, IntegrityError, KeyUnavailable, NotFound, ObjectNotFound } from '../errors.ts';
import type { Keyring } from '../keys/keyring.ts';
import type { StorageDriver } from '../storage/driver.ts';
import { createDecryptStream } from '../streams/openssl-cipher.ts';
import { type VerifiedRead, verifiedRead } from '../streams/verify-object.ts';

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

export interface ChainReads {
  /** One link per backup of the chain, full first: verified, decrypted gzip bytes. */
  links: ChainLink[];
  /**
   * The reason to report for a failed restore: a tool fed damaged bytes fails on them (gunzip,
   * mbstream) before the check at the end of their segment can speak, so the verdicts of the
   * reads (see verifiedRead) come first: bad bytes in storage, not the tool's complaint about them.
   */
  explain(err: unknown): Promise<unknown>;
}

/** Opens the backups of a chain for a restore, remembering what each read found. */
export function readChain(storage: StorageDriver, keyring: Keyring, chain: BackupRow[], signal: AbortSignal): ChainReads {
  const verdicts: Array<Promise<IntegrityError | null>> = [];
  const links = chain.map(
    (backup): ChainLink =>
      async () => {
        const key = storage.keyOf(backup.location!);
        if (key === null) throw new BadRequest(`backup ${backup.id} is not in this region's storage (${backup.location})`);
        const passphrase = passphraseOf(backup, key, keyring);
        const read = await openVerified(storage, backup, key, signal);
        verdicts.push(read.verdict());
        if (passphrase === null) return read.stream;
        const decrypt = createDecryptStream(passphrase);
        // Errors on either side destroy both, so the restore tool's input fails with them.
        pipeline(read.stream, decrypt).catch(() => {});
        return decrypt;
      },
  );
  return {
    links,
    async explain(err) {
      if (err instanceof IntegrityError || err instanceof Cancelled || signal.aborted) return err;
      // A verdict takes at most the rest of one segment; a storage that stalls must not hold the job.
      const timeout = new Promise<null>((resolve) => setTimeout(resolve, VERDICT_WAIT_MS, null).unref());
      for (const verdict of verdicts) {
        const found = await Promise.race([verdict, timeout]);
        if (found) return found;
      }
      return err;
    },
  };
}

const VERDICT_WAIT_MS = 120_000;

/** The stored bytes of a backup, checked against its recorded checksum (per segment) while read. */
async function openVerified(storage: StorageDriver, backup: BackupRow, key: string, signal: AbortSignal): Promise<VerifiedRead> {
  const location = backup.location!;
  const head = await storage.head(key, signal);
  if (!head) throw new ObjectNotFound(`the bytes of backup ${backup.id} are missing from ${location}`);
  const checksum = backup.checksum ?? head.etag;
  if (head.etag !== checksum) {
    throw new IntegrityError(`backup ${backup.id}: storage reports checksum ${head.etag}, the backup recorded ${checksum}`);
  }
  const segments = head.segmented ? await storage.segments(key, signal) : null;
  return verifiedRead(await storage.get(key, { signal }), { what: location, checksum, segments, size: head.size });
}
