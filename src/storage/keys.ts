import { InvalidKey } from '../errors.ts';
import type { SegmentInfo } from './driver.ts';

// Key rules shared by every driver. A key is an object name inside a container or bucket; on the
// fs driver it also becomes a path, so anything that could walk out of the container, mean
// something else on another store, or hide in logs (control characters) is refused everywhere,
// whatever the store would accept.

const MAX_KEY_BYTES = 1024;

/** Throws InvalidKey unless key is a safe object name (also used for list prefixes). */
export function assertSafeKey(key: string): void {
  if (typeof key !== 'string' || key === '') throw new InvalidKey('object key is empty');
  const shown = show(key);
  if (!key.isWellFormed()) throw new InvalidKey(`object key ${shown} is not valid Unicode`);
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidKey(`object key ${shown} is longer than ${MAX_KEY_BYTES} bytes`);
  }
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) throw new InvalidKey(`object key ${shown} contains a control character`);
  }
  if (key.includes('\\')) throw new InvalidKey(`object key ${shown} contains a backslash`);
  if (key.startsWith('/')) throw new InvalidKey(`object key ${shown} starts with "/"`);
  for (const segment of key.split('/')) {
    if (segment === '.' || segment === '..') throw new InvalidKey(`object key ${shown} has a "${segment}" path segment`);
  }
}

/** Trove's segment name: "<base>_%08d", e.g. segmentKey('abc', 1) === 'abc_00000001'. */
export function segmentKey(base: string, n: number): string {
  if (!Number.isSafeInteger(n) || n < 0 || n > 99_999_999) throw new RangeError(`segment number ${n} is out of range`);
  return `${base}_${String(n).padStart(8, '0')}`;
}

/**
 * The key of a segment for a driver that keeps segments only in its own container (fs, S3): a
 * segment said to live elsewhere cannot be one of its manifests' and is refused.
 */
export function ownSegmentKey(segment: SegmentInfo): string {
  if (segment.container !== undefined) {
    throw new InvalidKey(
      `segment ${show(segment.key)} names container ${show(segment.container)}; this store keeps segments in its own`,
    );
  }
  assertSafeKey(segment.key);
  return segment.key;
}

/** A key as it may appear in a message: quoted, escaped, and cut short. */
function show(key: string): string {
  const quoted = JSON.stringify(key.length > 100 ? `${key.slice(0, 100)}...` : key);
  return quoted.replace(/\x7f/g, '\\u007f');
}
