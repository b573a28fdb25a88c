import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

// Temp files of the fs driver. A write goes to a temp file beside its target and is renamed into
// place; a process killed mid-write (kill -9, power loss) leaves the temp file behind. Its name
// carries the writer's pid, so a later start can tell a dead writer's leftovers from a live write.

export const TEMP_PREFIX = '.tmp-';
const TEMP_NAME = /^\.tmp-(?:(\d+)-)?[0-9a-f]+$/;
/** A temp file untouched this long is abandoned whoever wrote it (a pid may be reused, or be another host's). */
const ABANDONED_MS = 60 * 60 * 1000;

export function tempBeside(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temp files under the folders whose writer is gone; returns how many. */
export async function removeStaleTemps(folders: string[], now = Date.now()): Promise<number> {
  let removed = 0;
  for (const folder of folders) {
    let entries: Dirent[];
    try {
      entries = await readdir(folder, { recursive: true, withFileTypes: true, encoding: 'utf8' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const e of entries) {
      const match = e.isFile() ? TEMP_NAME.exec(e.name) : null;
      if (!match) continue;
      const path = join(e.parentPath, e.name);
      const pid = match[1] ? Number(match[1]) : null;
      const info = await stat(path).catch(() => null);
      if (!info) continue;
      if ((pid !== null && !alive(pid)) || now - info.mtimeMs > ABANDONED_MS) {
        await rm(path, { force: true });
        removed++;
      }
    }
  }
  return removed;
}
