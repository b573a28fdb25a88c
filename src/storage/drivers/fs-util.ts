import { type FileHandle, open, rm } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import {
  BadRequest,
  IntegrityError,
  InvalidKey,
  ObjectNotFound,
  StorageAuthFailed,
  StorageFull,
  StorageUnavailable,
  TernError,
} from '../../errors.ts';
import type { ByteRange, ObjectMetadata, SegmentInfo } from '../driver.ts';

// File system helpers of the fs driver: durable small writes, manifests, ranges, error mapping.

export { TEMP_PREFIX, tempBeside } from './fs-temps.ts';

/** Percent-encodes one path segment exactly as a file: URL would. */
export function encodeSegment(segment: string): string {
  return pathToFileURL(`/${segment}`).href.slice('file:///'.length);
}

/** Best-effort removal of our own temp file: the error that brought us here matters more. */
export async function discard(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => {});
}

export async function writeSynced(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename durable: the directory entry itself must reach the disk. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function readManifest(handle: FileHandle, what: string): Promise<SegmentInfo[]> {
  try {
    const parsed = JSON.parse(await handle.readFile('utf8')) as { segments: SegmentInfo[] };
    if (!Array.isArray(parsed.segments)) throw new Error('no segment list');
    return parsed.segments.map(({ key, size, etag }) => ({ key, size, etag }));
  } catch (err) {
    throw new IntegrityError(`${what}: the manifest is unreadable`, { cause: err });
  }
}

/** Inclusive bounds of the bytes to read, clamped to the object; null when there are none. */
export function byteSpan(range: ByteRange | undefined, size: number, what: string): { start: number; end: number } | null {
  if (!range) return size === 0 ? null : { start: 0, end: size - 1 };
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new BadRequest(`${what}: invalid range ${start}-${end}`);
  }
  if (start >= size) throw new BadRequest(`${what}: range ${start}-${end} is outside the object (${size} bytes)`);
  return { start, end: Math.min(end, size - 1) };
}

export function normalize(metadata: ObjectMetadata | undefined): ObjectMetadata {
  return Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
}

export function isCode(err: unknown, ...codes: string[]): boolean {
  return codes.includes((err as NodeJS.ErrnoException)?.code ?? '');
}

/** Maps a file system error to Tern's vocabulary; an abort surfaces as the signal's reason. */
export function fsError(err: unknown, what: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason ?? err;
  if (err instanceof TernError || !(err instanceof Error)) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const because = `${what}: ${code}`;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StorageFull(`storage full: no space left for ${what} (${code})`, { cause: err });
  }
  if (code === 'ENOENT') return new ObjectNotFound(`${because}, not found`, { cause: err });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new StorageAuthFailed(`${because}, not allowed`, { cause: err });
  }
  if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST' || code === 'ENAMETOOLONG') {
    return new InvalidKey(`${because}, the key clashes with another object's path or is too long`, { cause: err });
  }
  if (code === 'EIO' || code === 'EMFILE' || code === 'ENFILE' || code === 'EAGAIN' || code === 'EBUSY') {
    return new StorageUnavailable(`${because}`, { cause: err });
  }
  return err;
}
