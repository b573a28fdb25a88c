import { constants, type Stats } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ObjectMetadata } from '../driver.ts';
import { discard, syncDir, tempBeside, writeSynced } from './fs-util.ts';

// The fs driver's sidecars: <root>/.meta/<container>/<key> holds an object's metadata, etag, size
// and whether it is a manifest, plus the inode and size of the file it describes, so a sidecar
// that does not match its file (a crash between the two renames, a file dropped in by hand) is
// ignored. Publishing writes the sidecar first, then renames the object's file into place.

export const META_DIR = '.meta';

/**
 * Container folder names: no leading "." so a container is never ".", "..", the sidecar tree
 * ".meta" or one of our ".tmp-" names; at most 255 bytes (one path component).
 */
export const CONTAINER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;

export interface SidecarFields {
  size: number;
  etag: string;
  metadata: ObjectMetadata;
  segmented: boolean;
}

export interface Sidecar extends SidecarFields {
  ino: number;
  fileSize: number;
}

/** The sidecar at metaPath, if it describes exactly the file with this stat. */
export async function readSidecar(metaPath: string, stat: Stats): Promise<Sidecar | null> {
  let meta: Sidecar;
  try {
    const handle = await open(metaPath, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      meta = JSON.parse(await handle.readFile('utf8'));
    } finally {
      await handle.close();
    }
  } catch {
    return null;
  }
  return meta.ino === stat.ino && meta.fileSize === stat.size ? meta : null;
}

/** Writes the sidecar for the finished temp file, then renames the file into place (both durably). */
export async function publish(
  tmp: string,
  path: string,
  metaPath: string,
  fields: SidecarFields,
  signal?: AbortSignal,
): Promise<void> {
  const handle = await open(tmp, 'r');
  let stat: Stats;
  try {
    stat = await handle.stat();
  } finally {
    await handle.close();
  }
  const sidecar: Sidecar = { ino: stat.ino, fileSize: stat.size, ...fields };
  await mkdir(dirname(metaPath), { recursive: true });
  const metaTmp = tempBeside(metaPath);
  try {
    await writeSynced(metaTmp, JSON.stringify(sidecar));
    signal?.throwIfAborted();
    await rename(metaTmp, metaPath);
  } catch (err) {
    await discard(metaTmp);
    throw err;
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}
