import { BadRequest, ConfigError } from '../errors.ts';
import type { StorageDriver } from '../storage/driver.ts';

// The regions this region trusts as copy sources, and the trust check of a location: a URL is
// fetched only if it lies under the storage endpoint of a catalog region. The check decides by
// parsing alone (no DNS, no connection), so it cannot be steered by what a host answers.
//
// WHATWG URL parsing quietly rewrites what it reads: it resolves "." / ".." segments (also
// "%2e%2e"), turns "\" into "/" for http and file, drops tabs and newlines, and canonicalises hosts
// (127.1 -> 127.0.0.1). Hosts are compared in canonical form (equal canonical host = same address);
// the path is checked on the raw text first, so a traversal cannot hide behind a rewrite.

export interface CatalogRegion {
  region: string;
  /** The region's Tern API, for the {source: {region, id}} form of create. */
  apiUrl?: string;
  driver: StorageDriver;
}

export interface ResolvedLocation {
  region: string;
  driver: StorageDriver;
  key: string;
}

interface Endpoint {
  entry: CatalogRegion;
  protocol: string;
  /** Canonical host[:port]. */
  host: string;
  /** Canonical path prefix, always ending in "/". */
  prefix: string;
}

const MAX_LOCATION = 4096;
/** scheme://authority path [?query][#fragment], on the raw text. */
const URL_PARTS = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)([?#].*)?$/s;
const DECODE_ROUNDS = 4;

export class Catalog {
  private readonly entries: CatalogRegion[];
  /** Parsed endpoints by region; a driver may learn its endpoint only when it connects (Keystone). */
  private readonly parsed = new Map<string, Endpoint>();

  constructor(entries: CatalogRegion[]) {
    this.entries = [...entries];
    const names = new Set<string>();
    for (const e of entries) {
      if (names.has(e.region)) throw new ConfigError(`catalog: region ${e.region} is listed twice`);
      names.add(e.region);
    }
    this.endpoints();
  }

  regions(): readonly CatalogRegion[] {
    return this.entries;
  }

  region(name: string): CatalogRegion | undefined {
    return this.entries.find((e) => e.region === name);
  }

  /** The trusted region, driver and object key of a location; BadRequest when it is not trusted. */
  resolve(location: unknown): ResolvedLocation {
    if (typeof location !== 'string' || location.length === 0) {
      throw new BadRequest(`location must be a URL string, e.g. ${this.example()}`);
    }
    const shown = display(location);
    if (location.length > MAX_LOCATION) throw new BadRequest(`location ${shown} is longer than ${MAX_LOCATION} characters`);
    if (hasUnsafeChar(location, false)) {
      throw new BadRequest(
        `location ${shown} contains spaces, control characters or backslashes; percent-encode the object name`,
      );
    }
    const parts = URL_PARTS.exec(location);
    if (!parts) throw new BadRequest(`location ${shown} is not an absolute URL like ${this.example()}`);
    const [, , authority, rawPath, tail] = parts;
    if (authority.includes('@')) {
      throw new BadRequest(
        `location ${shown} carries user credentials; give the plain object URL (credentials come from the catalog)`,
      );
    }
    if (tail) throw new BadRequest(`location ${shown} has a query or fragment; give the plain object URL`);
    for (const segment of rawPath.split('/')) {
      const traversal = isTraversalSegment(segment);
      if (traversal === null) throw new BadRequest(`location ${shown} has malformed percent-encoding`);
      if (traversal) {
        throw new BadRequest(
          `location ${shown} contains "." or ".." path segments (or encoded slashes); give the object's plain URL`,
        );
      }
    }
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      throw new BadRequest(`location ${shown} is not a valid URL`);
    }
    const ep = this.endpoints().find(
      (e) => e.protocol === url.protocol && e.host === url.host && url.pathname.startsWith(e.prefix),
    );
    if (!ep) throw this.untrusted(shown);
    const rest = url.pathname.slice(ep.prefix.length);
    if (rest === '' || rest.split('/').includes('')) {
      throw new BadRequest(`location ${shown} does not name an object (empty object name or empty path segment)`);
    }
    // Hand the driver the location in its own spelling of the endpoint (it may compare text).
    const driver = ep.entry.driver;
    const base = driver.endpoint.endsWith('/') ? driver.endpoint : `${driver.endpoint}/`;
    const key = driver.keyOf(base + rest);
    if (key === null || !isSafeKey(key)) throw this.untrusted(shown);
    return { region: ep.entry.region, driver, key };
  }

  /** The endpoints known so far, longest prefix first (an endpoint nested in another resolves to the closer region). */
  private endpoints(): Endpoint[] {
    for (const entry of this.entries) {
      if (this.parsed.has(entry.region)) continue;
      const ep = parseEndpoint(entry);
      if (!ep) continue;
      // s3://bucket/key names no server: the same bucket name on two servers cannot be told apart.
      const namesake = [...this.parsed.values()].find(
        (other) =>
          other.protocol === ep.protocol &&
          other.host === ep.host &&
          (other.entry.driver.server ?? null) !== (entry.driver.server ?? null),
      );
      if (namesake) {
        throw new ConfigError(
          `catalog: regions ${namesake.entry.region} and ${entry.region} both use ${ep.protocol}//${ep.host}/ but on different servers ` +
            `(${namesake.entry.driver.server ?? 'unnamed'} and ${entry.driver.server ?? 'unnamed'}); a ${ep.protocol}// location names only the bucket, ` +
            'so it could belong to either. Give the regions differently named buckets.',
        );
      }
      const id = endpointId(ep);
      const twin = [...this.parsed.values()].find((other) => endpointId(other) === id);
      if (twin) {
        throw new ConfigError(`catalog: regions ${twin.entry.region} and ${entry.region} have the same storage endpoint`);
      }
      this.parsed.set(entry.region, ep);
    }
    return [...this.parsed.values()].sort((a, b) => b.prefix.length - a.prefix.length);
  }

  private untrusted(shown: string): BadRequest {
    const names = this.entries.map((e) => e.region).join(', ') || 'empty';
    return new BadRequest(`location ${shown} is not in a storage endpoint of a region this region trusts (catalog: ${names})`);
  }

  private example(): string {
    const first = this.endpoints()[0]?.entry.driver.endpoint ?? 'http://host:8080/v1/AUTH_project/database_backups/';
    return `${first.endsWith('/') ? first : `${first}/`}<id>.xbstream.gz.enc`;
  }
}

/** The parsed endpoint of a region, or null while its driver does not know it yet. */
function parseEndpoint(entry: CatalogRegion): Endpoint | null {
  let text: string;
  try {
    text = entry.driver.endpoint;
  } catch {
    return null;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`catalog: region ${entry.region} has a storage endpoint that is not a URL`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new ConfigError(
      `catalog: the storage endpoint of region ${entry.region} must be a plain URL (no user, query or fragment)`,
    );
  }
  const prefix = url.pathname.endsWith('/') ? url.pathname : `${url.pathname}/`;
  return { entry, protocol: url.protocol, host: url.host, prefix };
}

function endpointId(ep: Endpoint): string {
  return `${ep.protocol}//${ep.host}${ep.prefix}`;
}

/**
 * True when a raw path segment is, or decodes (possibly several times) to, "." or "..", or hides a
 * slash, backslash or control character behind percent-encoding; null when it cannot be decoded at all.
 */
function isTraversalSegment(segment: string): boolean | null {
  let text = segment;
  for (let round = 0; round < DECODE_ROUNDS; round++) {
    if (text === '.' || text === '..' || (round > 0 && (text.includes('/') || hasUnsafeChar(text, true)))) return true;
    if (!text.includes('%')) return false;
    try {
      text = decodeURIComponent(text);
    } catch {
      // A literal "%" in an already decoded name is fine; in the raw text it is malformed.
      return round === 0 ? null : false;
    }
  }
  return true;
}

/** The key a driver gave back must be a plain relative object name. */
function isSafeKey(key: string): boolean {
  if (key.length === 0 || key.startsWith('/') || hasUnsafeChar(key, true)) return false;
  return !key.split('/').some((s) => s === '' || s === '.' || s === '..');
}

/** A location as it may appear in an error: no credentials, no control characters, bounded length. */
function display(location: string): string {
  const redacted = location.replace(/^([^:/?#]*:\/\/)[^/?#]*@/, '$1***@');
  const clipped = redacted.length > 200 ? `${redacted.slice(0, 200)}...` : redacted;
  let out = '';
  for (const c of clipped) out += isControl(c.charCodeAt(0)) ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c;
  return out;
}

/** C0 controls, DEL and the C1 range. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

/** Control characters and "\" (a path separator to the URL parser); also spaces unless allowed. */
function hasUnsafeChar(text: string, allowSpace: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (isControl(code) || code === 0x5c || (code === 0x20 && !allowSpace)) return true;
  }
  return false;
}
