import { pipeline, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { BadRequest, ConfigError, IntegrityError, ObjectNotFound, StorageAuthFailed, StorageUnavailable } from '../../errors.ts';
import { createDigestStream } from '../../streams/hash.ts';
import { manifestEtag } from '../../streams/swift-etag.ts';
import type { GetOptions, ObjectInfo, ObjectMetadata, PutOptions, PutResult, SegmentInfo, StorageDriver } from '../driver.ts';
import { assertSafeKey } from '../keys.ts';
import { SwiftClient, type SwiftClientOptions } from './swift/client.ts';
import {
  drain,
  fullOrTooLarge,
  header,
  isSocketError,
  Meter,
  netError,
  oneLine,
  type Response,
  readJson,
  unexpected,
  unquote,
} from './swift/http.ts';
import { listContainer } from './swift/listing.ts';
import { checkManifestPut, isPlainContainer, parseDloManifest, parseSloManifest, sloManifestBody } from './swift/manifest.ts';
import { encodePath, guardedBody, keyOfLocation, listingInfo, metadataHeaders, objectInfo } from './swift/objects.ts';

// OpenStack Swift driver on undici. Objects live at <storageUrl>/<container>/<key>. A PUT is
// streamed straight to the object: Swift only makes an object visible once every byte arrived and
// (with an ETag header) matched, so there is no temporary name. Large objects are Static Large
// Objects: segments are plain objects, the manifest is published with ?multipart-manifest=put.
// A manifest read here may join segments from other containers of the account (swiftclient's
// "<container>_segments"); headSegment/getSegment read them where they are.
//
// Requests whose body can be sent again (HEAD, GET, DELETE, listings, manifests) are retried on
// 5xx and network errors, and once after re-authenticating on 401. A streamed PUT is never
// replayed; it fails with StorageUnavailable so the caller can start that object again.

export interface SwiftDriverConfig extends SwiftClientOptions {
  container?: string;
  /** Bytes per segment callers should cut large objects into (used by the backup tasks). */
  segmentSize?: number;
}

const MD5_HEX = /^[0-9a-f]{32}$/;
const MAX_MANIFEST_BODY = 16 * 1024 * 1024;
const DEFAULT_LIMITS = { maxSegmentSize: 5 * 1024 ** 3, maxManifestSegments: 1000 };

export class SwiftDriver implements StorageDriver {
  readonly kind = 'swift';
  readonly container: string;
  readonly segmentSize: number;
  private readonly client: SwiftClient;
  private readonly fixedEndpoint: string | null;
  private containerReady: Promise<void> | null = null;
  private cachedLimits: Promise<{ maxSegmentSize: number; maxManifestSegments: number }> | null = null;

  constructor(config: SwiftDriverConfig) {
    this.container = config.container ?? 'database_backups';
    if (this.container === '' || this.container.includes('/') || this.container === '.' || this.container === '..') {
      throw new ConfigError(`swift storage: container ${JSON.stringify(this.container)} is not a plain name`);
    }
    this.segmentSize = config.segmentSize ?? 64 * 1024 * 1024;
    this.client = new SwiftClient(config);
    const predicted = this.client.auth.predictedStorageUrl();
    this.fixedEndpoint = predicted ? this.endpointOf(predicted) : null;
  }

  /**
   * "<storageUrl>/<container>/". Known from the configuration for TempAuth or a configured
   * storageUrl; with Keystone and no storageUrl only after connect().
   */
  get endpoint(): string {
    if (this.fixedEndpoint) return this.fixedEndpoint;
    const known = this.client.auth.predictedStorageUrl();
    if (!known) throw new ConfigError('swift storage: the endpoint is known after connect() (or set storageUrl)');
    return this.endpointOf(known);
  }

  /** Authenticates now (Keystone without storageUrl learns the endpoint from the catalog). */
  async connect(signal?: AbortSignal): Promise<void> {
    await this.client.auth.session(signal);
  }

  locationOf(key: string): string {
    assertSafeKey(key);
    return this.endpoint + encodePath(key);
  }

  keyOf(location: string): string | null {
    let endpoint: string;
    try {
      endpoint = this.endpoint;
    } catch {
      return null;
    }
    return keyOfLocation(endpoint, location);
  }

  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    return this.headIn(this.container, key, signal);
  }

  headSegment(segment: SegmentInfo, signal?: AbortSignal): Promise<ObjectInfo | null> {
    return this.headIn(segment.container ?? this.container, segment.key, signal);
  }

  get(key: string, options: GetOptions = {}): Promise<Readable> {
    return this.getIn(this.container, key, options);
  }

  getSegment(segment: SegmentInfo, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    return this.getIn(segment.container ?? this.container, segment.key, options);
  }

  private async headIn(container: string, key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    const what = await this.describe('head', key, signal, container);
    const path = this.objectPath(key, container);
    const res = await this.client.send({ what, method: 'HEAD', path, replayable: true, signal });
    if (res.statusCode === 404) {
      await drain(res);
      return null;
    }
    if (res.statusCode !== 200 && res.statusCode !== 204) throw await unexpected(res, what);
    await drain(res);
    return objectInfo(key, res);
  }

  private async getIn(container: string, key: string, options: GetOptions): Promise<Readable> {
    const { range, ifMatch, signal } = options;
    const what = await this.describe('get', key, signal, container);
    const headers: Record<string, string> = {};
    if (range) {
      if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 || range.end < range.start) {
        throw new BadRequest(`${what}: invalid byte range ${range.start}-${range.end}`);
      }
      headers.range = `bytes=${range.start}-${range.end}`;
    }
    // Swift compares it with the object's ETag (an SLO's: the manifest checksum) and answers 412.
    if (ifMatch !== undefined) {
      if (!MD5_HEX.test(ifMatch)) throw new BadRequest(`${what}: ifMatch must be 32 lower-case hex digits`);
      headers['if-match'] = `"${ifMatch}"`;
    }
    const path = this.objectPath(key, container);
    const res = await this.client.send({ what, method: 'GET', path, headers, replayable: true, signal });
    if (res.statusCode === 404) {
      await drain(res);
      throw new ObjectNotFound(`${what}: not found`);
    }
    if (res.statusCode === 412) {
      await drain(res);
      throw new IntegrityError(`${what}: the object changed, its ETag is no longer ${ifMatch}`);
    }
    if (res.statusCode === 416) {
      await drain(res);
      throw new BadRequest(`${what}: range ${range?.start}-${range?.end} is not satisfiable`);
    }
    if (res.statusCode !== (range ? 206 : 200)) throw await unexpected(res, what);
    const length = Number(header(res, 'content-length'));
    return guardedBody(res, Number.isSafeInteger(length) ? length : undefined, what, signal);
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    const { metadata, md5, size, signal } = options;
    let what = `put ${key}`;
    let headers: Record<string, string>;
    try {
      what = await this.describe('put', key, signal);
      signal?.throwIfAborted();
      if (md5 !== undefined && !MD5_HEX.test(md5.toLowerCase())) throw new BadRequest(`${what}: md5 must be 32 hex digits`);
      headers = { 'content-type': 'application/octet-stream', ...metadataHeaders(metadata, what) };
      // Swift checks the bytes it stored against this and answers 422 on a mismatch.
      if (md5 !== undefined) headers.etag = md5.toLowerCase();
      // A known length lets Swift refuse up front what cannot fit (container quota, max_file_size)
      // instead of after the bytes crossed the network; chunked uploads are only checked after.
      if (size !== undefined) headers['content-length'] = String(size);
      await this.ensureContainer(signal);
    } catch (err) {
      body.destroy();
      throw err;
    }
    // With the caller's MD5 as ETag, Swift itself refuses (422) bytes that do not match it, so
    // hashing them here too would only double the CPU per byte; without one, we hash to check
    // what Swift says it stored.
    const expected = md5?.toLowerCase();
    const meter = new Meter(what, size);
    const digest = expected === undefined ? createDigestStream() : null;
    // The caller's stream failing (e.g. the backup tool died) or a wrong size is reported as it is.
    let inputError: unknown;
    const onInputError = (e: unknown) => {
      inputError ??= e;
    };
    body.once('error', onInputError);
    meter.once('error', onInputError);
    // The last stream goes to undici; a failure anywhere destroys them all.
    const outgoing = digest ?? meter;
    pipeline(digest ? [body, meter, digest] : [body, meter], () => undefined);
    let res: Response;
    try {
      res = await this.client.send({
        what,
        method: 'PUT',
        path: this.objectPath(key),
        headers,
        body: outgoing,
        replayable: false,
        signal,
      });
    } catch (err) {
      outgoing.destroy();
      if (signal?.aborted) throw signal.reason;
      // A socket error on the PUT also destroys the input through the pipeline; only an error the
      // input raised itself is the caller's to see as it is.
      if (inputError !== undefined && !isSocketError(inputError)) throw inputError;
      throw netError(err, what, signal);
    }
    if (res.statusCode === 422) {
      await drain(res);
      throw new IntegrityError(`${what}: Swift computed an MD5 other than ${md5}`);
    }
    if (res.statusCode === 404) {
      await drain(res);
      this.containerReady = null; // the container went away; the next try creates it again
      throw new StorageUnavailable(`${what}: container ${this.container} is missing`);
    }
    if (res.statusCode === 413 || res.statusCode === 507) throw await fullOrTooLarge(res, what);
    if (res.statusCode !== 201) throw await unexpected(res, what);
    await drain(res);
    if (!outgoing.readableEnded) await finished(outgoing, { readable: false }).catch(() => undefined);
    const etag = unquote(header(res, 'etag'));
    const md5Sent = expected ?? digest?.md5();
    if (etag !== md5Sent) {
      // Bytes changed between us and Swift's disk, or a Swift-like store ignored the ETag: do not
      // leave them behind.
      await this.delete(key, signal).catch(() => undefined);
      throw new IntegrityError(`${what}: Swift stored MD5 ${etag || '(none)'} but ${md5Sent} was sent`);
    }
    return { etag, size: meter.bytes };
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    const what = await this.describe('delete', key, signal);
    // Manifests first (they take their segments along); Swift says when the object is plain.
    const res = await this.deleteRequest(what, `${this.objectPath(key)}?multipart-manifest=delete`, signal);
    if (res.statusCode === 404 || res.statusCode === 204) return drain(res);
    if (res.statusCode !== 200) throw await unexpected(res, what);
    // A manifest delete answers 200 with a bulk-delete report, whatever happened to each segment.
    const report = (await readJson(res, 1024 * 1024, what)) as { 'Response Status'?: string; Errors?: unknown[] };
    const status = Number.parseInt(report['Response Status'] ?? '200', 10);
    if ((status >= 200 && status < 300) || status === 404) return;
    const detail = oneLine(JSON.stringify(report.Errors ?? []));
    if (status === 400 && detail.includes('Not an SLO manifest')) {
      const plain = await this.deleteRequest(what, this.objectPath(key), signal);
      if (plain.statusCode === 404 || plain.statusCode === 204) return drain(plain);
      throw await unexpected(plain, what);
    }
    if (status === 401 || status === 403) throw new StorageAuthFailed(`${what}: refused (${status})`);
    throw new StorageUnavailable(`${what}: Swift answered ${status} (${detail})`);
  }

  private deleteRequest(what: string, path: string, signal?: AbortSignal): Promise<Response> {
    const headers = { accept: 'application/json' };
    return this.client.send({ what, method: 'DELETE', path, headers, replayable: true, signal });
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    if (prefix !== '') assertSafeKey(prefix);
    await this.ready(signal);
    const what = `list ${this.endpoint}${encodePath(prefix)}`;
    for await (const entry of listContainer(this.client, this.container, prefix, what, signal)) {
      yield listingInfo(entry);
    }
  }

  async segments(key: string, signal?: AbortSignal): Promise<SegmentInfo[] | null> {
    const what = await this.describe('segments of', key, signal);
    const path = `${this.objectPath(key)}?multipart-manifest=get`;
    // A GET of a plain object would start sending its bytes, and for one no bigger than the
    // servers' disk reads make Swift read it to the end (and quarantine it if it has rotted):
    // the manifest's own headers say first what it is.
    const send = async (method: 'HEAD' | 'GET') => {
      const res = await this.client.send({ what, method, path, replayable: true, signal });
      if (res.statusCode === 404) {
        await drain(res);
        throw new ObjectNotFound(`${what}: not found`);
      }
      if (res.statusCode !== 200) throw await unexpected(res, what);
      return res;
    };
    // Not an SLO: a plain object has no segments, a DLO names where its segments are listed.
    const unlessSlo = (res: Response) => {
      if (header(res, 'x-static-large-object')?.toLowerCase() === 'true') return undefined;
      const dlo = header(res, 'x-object-manifest');
      return dlo === undefined ? null : this.dloSegments(dlo, what, signal);
    };
    const head = await send('HEAD');
    await drain(head);
    const notSlo = unlessSlo(head);
    if (notSlo !== undefined) return notSlo;
    const res = await send('GET');
    const replaced = unlessSlo(res);
    if (replaced !== undefined) {
      // A plain object put there since the HEAD answers with its bytes: do not read them (nor
      // hear of their abort).
      res.body.on('error', () => {});
      res.body.destroy();
      return replaced;
    }
    return parseSloManifest(await readJson(res, MAX_MANIFEST_BODY, what), this.container, what);
  }

  /**
   * A Dynamic Large Object (X-Object-Manifest: "<container>/<prefix>", what swiftclient and older
   * Trove releases write without --use-slo) joins every object under the prefix, in name order, as
   * the listing shows them now. Its ETag is the MD5 of their ETags, as for an SLO.
   */
  private async dloSegments(manifest: string, what: string, signal?: AbortSignal): Promise<SegmentInfo[]> {
    const { container, prefix } = parseDloManifest(manifest, what);
    const segments: SegmentInfo[] = [];
    for await (const entry of listContainer(this.client, container, prefix, `${what} (dynamic manifest ${manifest})`, signal)) {
      assertSafeKey(entry.name);
      segments.push({
        key: entry.name,
        size: entry.bytes,
        etag: unquote(entry.hash),
        ...(container === this.container ? {} : { container }),
      });
    }
    return segments;
  }

  async putManifest(
    key: string,
    segments: SegmentInfo[],
    options: { metadata?: ObjectMetadata; signal?: AbortSignal } = {},
  ): Promise<PutResult> {
    const what = await this.describe('put manifest', key, options.signal);
    if (segments.length === 0) throw new BadRequest(`${what}: a manifest needs at least one segment`);
    const body = sloManifestBody(segments, this.container, what);
    const etag = manifestEtag(segments.map((s) => s.etag));
    const size = segments.reduce((sum, s) => sum + s.size, 0);
    const headers = {
      'content-type': 'application/octet-stream',
      // Swift refuses (422) a manifest whose joined segment etags hash to anything else.
      etag,
      ...metadataHeaders(options.metadata, what),
    };
    await this.ensureContainer(options.signal);
    const path = `${this.objectPath(key)}?multipart-manifest=put`;
    const res = await this.client.send({ what, method: 'PUT', path, headers, body, replayable: true, signal: options.signal });
    if ((await checkManifestPut(res, what, etag)) === null) throw await unexpected(res, what);
    return { etag, size };
  }

  limits(): Promise<{ maxSegmentSize: number; maxManifestSegments: number }> {
    this.cachedLimits ??= this.fetchLimits().catch((err) => {
      this.cachedLimits = null;
      throw err;
    });
    return this.cachedLimits;
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async fetchLimits() {
    const info = await this.client.info();
    return {
      maxSegmentSize: info?.swift?.max_file_size ?? DEFAULT_LIMITS.maxSegmentSize,
      maxManifestSegments: info?.slo?.max_manifest_segments ?? DEFAULT_LIMITS.maxManifestSegments,
    };
  }

  private ensureContainer(signal?: AbortSignal): Promise<void> {
    this.containerReady ??= this.createContainer(signal).catch((err) => {
      this.containerReady = null;
      throw err;
    });
    return this.containerReady;
  }

  private async createContainer(signal?: AbortSignal): Promise<void> {
    const what = `create container ${this.container}`;
    const res = await this.client.send({ what, method: 'PUT', path: this.containerPath(), replayable: true, signal });
    if (res.statusCode !== 201 && res.statusCode !== 202) throw await unexpected(res, what);
    await drain(res);
  }

  /** "<op> <location>" for messages; with Keystone the location is known once authenticated. */
  private async describe(op: string, key: string, signal?: AbortSignal, container = this.container): Promise<string> {
    assertSafeKey(key);
    if (!isPlainContainer(container))
      throw new BadRequest(`${op} ${key}: container ${JSON.stringify(container)} is not a plain name`);
    await this.ready(signal);
    if (container === this.container) return `${op} ${this.locationOf(key)}`;
    const base = this.endpoint.slice(0, -`${encodeURIComponent(this.container)}/`.length);
    return `${op} ${base}${encodeURIComponent(container)}/${encodePath(key)}`;
  }

  private async ready(signal?: AbortSignal): Promise<void> {
    if (!this.fixedEndpoint) await this.client.auth.session(signal);
  }

  private endpointOf(storageUrl: string): string {
    return `${storageUrl.replace(/\/+$/, '')}/${encodeURIComponent(this.container)}/`;
  }

  private containerPath(): string {
    return `/${encodeURIComponent(this.container)}`;
  }

  private objectPath(key: string, container = this.container): string {
    assertSafeKey(key);
    return `/${encodeURIComponent(container)}/${encodePath(key)}`;
  }
}
