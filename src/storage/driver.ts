import type { Readable } from 'node:stream';

// One interface for every object store (fs, Swift, S3). Only src/container.ts builds drivers.
// Keys are object names inside the driver's container/bucket, e.g. "<backup-id>.xbstream.gz.enc"
// or "<backup-id>_00000001" for a segment. Drivers refuse keys with "..", control characters or
// a leading "/" by throwing InvalidKey.

export type ObjectMetadata = Record<string, string>;

export interface ObjectInfo {
  key: string;
  /** Total bytes of the object (for a manifest: the sum of its segments). */
  size: number;
  /**
   * Checksum as Swift reports it: the MD5 hex of the bytes for a plain object; for a large object
   * (manifest) the MD5 hex of the concatenated segment MD5 hex strings. Never quoted.
   */
  etag: string;
  /** User metadata, lower-case keys without the X-Object-Meta- prefix, e.g. { datastore: 'mariadb' }. */
  metadata: ObjectMetadata;
  /** True when the object is a manifest joining segments (Swift SLO, fs manifest, S3 multipart). */
  segmented: boolean;
  lastModified?: Date;
}

export interface SegmentInfo {
  key: string;
  size: number;
  /** MD5 hex of the segment's bytes. */
  etag: string;
  /**
   * The container holding the segment when it is not the driver's own: a Swift SLO may join
   * segments from any container of the same account (python-swiftclient, and so Trove's tooling,
   * puts them in "<container>_segments"). Absent for the driver's own container.
   */
  container?: string;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive (HTTP Range semantics). */
  end: number;
}

export interface GetOptions {
  range?: ByteRange;
  ifMatch?: string;
  signal?: AbortSignal;
}

export interface PutOptions {
  metadata?: ObjectMetadata;
  /** When given, the driver fails with IntegrityError (and leaves nothing visible) on mismatch. */
  md5?: string;
  /** When given, the driver fails with IntegrityError on a different byte count. */
  size?: number;
  signal?: AbortSignal;
}

export interface PutResult {
  etag: string;
  size: number;
}

export interface StorageDriver {
  /** 'fs' | 'swift' | 's3' */
  readonly kind: string;
  /** The URL prefix under which this driver's objects live, e.g. "file:///srv/tern/database_backups/". */
  readonly endpoint: string;
  /**
   * The server behind the endpoint when the endpoint does not name it: an s3:// location names
   * only the bucket, so the S3 driver gives its service URL here (e.g. "http://127.0.0.1:8081").
   */
  readonly server?: string;
  /** Full location URL of a key; the inverse of keyOf. */
  locationOf(key: string): string;
  /** The key of a location under this driver's endpoint, or null if the location is not ours. */
  keyOf(location: string): string | null;

  /** Metadata of an object, or null if it does not exist. */
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null>;
  /**
   * Streams the object's bytes (a manifest streams its segments in order). Throws ObjectNotFound.
   * With ifMatch (an etag as head() reports it), throws IntegrityError instead of reading an object
   * whose etag is no longer that one: ranged reads of one object then cannot mix two versions.
   */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /**
   * Streams body into the object. Nothing is visible under key until all bytes arrived and
   * matched options.md5/size; on any failure nothing is left behind.
   */
  put(key: string, body: Readable, options?: PutOptions): Promise<PutResult>;
  /** Deletes the object; for a manifest also its segments. Missing objects are not an error. */
  delete(key: string, signal?: AbortSignal): Promise<void>;
  /** Objects whose key starts with prefix, in key order. */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo>;

  /** The segments of a large object in order, or null when the object is a plain object. */
  segments(key: string, signal?: AbortSignal): Promise<SegmentInfo[] | null>;
  /** Metadata of a segment segments() listed (wherever it lives), or null if it does not exist. */
  headSegment(segment: SegmentInfo, signal?: AbortSignal): Promise<ObjectInfo | null>;
  /** Streams a segment segments() listed (wherever it lives). Throws ObjectNotFound. */
  getSegment(segment: SegmentInfo, options?: { signal?: AbortSignal }): Promise<Readable>;
  /**
   * Publishes a manifest joining already uploaded segments (Swift SLO ?multipart-manifest=put).
   * Resulting etag is MD5 of the concatenated segment etags.
   */
  putManifest(
    key: string,
    segments: SegmentInfo[],
    options?: { metadata?: ObjectMetadata; signal?: AbortSignal },
  ): Promise<PutResult>;
  /** Largest segment this store accepts in one PUT, and the most segments a manifest may join. */
  limits(): Promise<{ maxSegmentSize: number; maxManifestSegments: number }>;
  /** Removes what writers that died mid-write left behind (fs temp files); called once at start. */
  recover?(): Promise<number>;
  /** Releases pooled connections. */
  close(): Promise<void>;
}
