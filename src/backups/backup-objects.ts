import type { StorageDriver } from '../storage/driver.ts';
import { segmentPrefix } from './object-names.ts';

// Every object Tern writes for a backup is named after its id: "<id>.<suffix>" (the manifest or a
// plain object), "<id>_<n>" (segments) or "<id>" alone. Removing a backup's bytes means removing
// all of them, whoever wrote them last.

export function isBackupObject(backupId: string, key: string): boolean {
  if (!key.startsWith(backupId)) return false;
  const rest = key.slice(backupId.length);
  return rest === '' || rest.startsWith('.') || key.startsWith(segmentPrefix(backupId));
}

export interface Missed {
  key: string;
  error: unknown;
}

/**
 * Removes every object of the backup, manifests first (deleting one also deletes its segments).
 * Returns how many it removed and the keys it could not remove, with why; a listing failure throws.
 */
export async function removeBackupObjects(
  storage: StorageDriver,
  backupId: string,
  signal: AbortSignal,
): Promise<{ removed: number; missed: Missed[] }> {
  const keys: string[] = [];
  for await (const obj of storage.list(backupId, signal)) if (isBackupObject(backupId, obj.key)) keys.push(obj.key);
  const isSegment = (key: string) => Number(key.startsWith(segmentPrefix(backupId)));
  keys.sort((a, b) => isSegment(a) - isSegment(b));
  const missed: Missed[] = [];
  for (const key of keys) {
    try {
      await storage.delete(key, signal);
    } catch (error) {
      signal.throwIfAborted();
      missed.push({ key, error });
    }
  }
  return { removed: keys.length - missed.length, missed };
}
