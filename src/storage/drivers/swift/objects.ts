import type { Readable } from 'node:stream';
import { BadRequest } from '../../../errors.ts';
import { guardBody } from '../../../streams/length-guard.ts';
import type { ObjectInfo, ObjectMetadata } from '../../driver.ts';
import { assertSafeKey } from '../../keys.ts';
import { header, netError, type Response, unquote } from './http.ts';

// Object names, metadata headers and response bodies of the Swift driver.

export interface SwiftListing {
  name: string;
  hash: string;
  bytes: number;
  last_modified?: string;
  /** Present (quoted) for a Static Large Object manifest. */
  slo_etag?: string;
}

const META_PREFIX = 'x-object-meta-';
const META_NAME = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
// Header values travel as Latin-1; keep metadata to printable ASCII so it round-trips unchanged.
const META_VALUE = /^[\x20-\x7e]*$/;

/** Percent-encodes each "/"-separated segment of a key for a URL path. */
export function encodePath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** The key of a location under endpoint, or null when it is not ours or not a safe key. */
export function keyOfLocation(endpoint: string, location: string): string | null {
  // Compared as text before any URL parsing: a parser would resolve "%2e%2e" and ".." for us, and
  // another host, port, account or user-info prefix never matches.
  if (typeof location !== 'string' || !location.startsWith(endpoint)) return null;
  const rest = location.slice(endpoint.length);
  if (rest.includes('?') || rest.includes('#')) return null;
  try {
    const segments = rest.split('/').map((s) => decodeURIComponent(s));
    if (segments.some((s) => s.includes('/'))) return null;
    const key = segments.join('/');
    assertSafeKey(key);
    return key;
  } catch {
    return null;
  }
}

export function metadataHeaders(metadata: ObjectMetadata | undefined, what: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(metadata ?? {})) {
    if (!META_NAME.test(name) || typeof value !== 'string' || !META_VALUE.test(value)) {
      throw new BadRequest(
        `${what}: metadata ${JSON.stringify(name)} needs a name of letters, digits and "-" and a printable ASCII value`,
      );
    }
    headers[META_PREFIX + name.toLowerCase()] = value;
  }
  return headers;
}

export function objectInfo(key: string, res: Response): ObjectInfo {
  const metadata: ObjectMetadata = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (name.toLowerCase().startsWith(META_PREFIX) && value !== undefined) {
      metadata[name.slice(META_PREFIX.length).toLowerCase()] = Array.isArray(value) ? value.join(',') : value;
    }
  }
  const modified = header(res, 'last-modified');
  return {
    key,
    size: Number(header(res, 'content-length') ?? 0),
    etag: unquote(header(res, 'etag')),
    metadata,
    // A Static or a Dynamic Large Object (X-Object-Manifest, see SwiftDriver.segments).
    segmented: header(res, 'x-static-large-object')?.toLowerCase() === 'true' || header(res, 'x-object-manifest') !== undefined,
    lastModified: modified ? new Date(modified) : undefined,
  };
}

export function listingInfo(entry: SwiftListing): ObjectInfo {
  return {
    key: entry.name,
    size: entry.bytes,
    etag: unquote(entry.slo_etag ?? entry.hash),
    metadata: {},
    segmented: entry.slo_etag !== undefined,
    // Swift lists UTC times without a zone.
    lastModified: entry.last_modified ? new Date(`${entry.last_modified}Z`) : undefined,
  };
}

/**
 * The bytes of a GET, failing (StorageUnavailable) when the connection ends before Content-Length
 * bytes arrived, so a cut stream never looks like a short object.
 */
export function guardedBody(res: Response, expected: number | undefined, what: string, signal?: AbortSignal): Readable {
  return guardBody(res.body, expected, what, (err) => netError(err, what, signal) as Error, signal);
}
