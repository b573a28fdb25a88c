// Typed domain errors. Only src/http/faults.ts maps them to HTTP codes and Trove fault names,
// so the CLI, the worker and the HTTP API share one vocabulary of failure.

export class TernError extends Error {
  /** Stable machine-readable kind; also used by faults.ts to choose the Trove fault. */
  readonly kind: string = 'internal';
  /** True when retrying the same operation later may succeed (network blips, 5xx, lease loss). */
  readonly transient: boolean = false;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is malformed or names something that cannot work (Trove badRequest, 400). */
export class BadRequest extends TernError {
  override readonly kind = 'badRequest';
}
/** Missing or invalid credentials (401). */
export class Unauthorized extends TernError {
  override readonly kind = 'unauthorized';
}
/** Valid credentials, but not allowed to touch this (403). */
export class Forbidden extends TernError {
  override readonly kind = 'forbidden';
}
/** The named resource does not exist for this caller (404). */
export class NotFound extends TernError {
  override readonly kind = 'itemNotFound';
}
/** The resource is in a state that conflicts with the request (409). */
export class Conflict extends TernError {
  override readonly kind = 'conflict';
}
/** A quota or size limit was exceeded (413 overLimit). */
export class OverLimit extends TernError {
  override readonly kind = 'overLimit';
}
/** Well-formed but cannot be processed now, e.g. deleting a running backup (422). */
export class Unprocessable extends TernError {
  override readonly kind = 'unprocessableEntity';
}
/** A feature that exists in Trove's API but not (yet) in this deployment (501). */
export class NotImplemented extends TernError {
  override readonly kind = 'notImplemented';
}

/** Storage failed in a way that may pass (5xx, reset, timeout). */
export class StorageUnavailable extends TernError {
  override readonly kind = 'storageUnavailable';
  override readonly transient = true;
}
/** Storage refused our credentials. */
export class StorageAuthFailed extends TernError {
  override readonly kind = 'storageAuthFailed';
}
/** The object (or a segment of it) is not there. */
export class ObjectNotFound extends TernError {
  override readonly kind = 'objectNotFound';
}
/** Bytes read or written do not match the checksum or size they must have. */
export class IntegrityError extends TernError {
  override readonly kind = 'integrity';
}
/** A key or location that is unsafe or malformed (escapes the root, control characters, ...). */
export class InvalidKey extends TernError {
  override readonly kind = 'invalidKey';
}
/** The target has no room left (ENOSPC, quota). */
export class StorageFull extends TernError {
  override readonly kind = 'storageFull';
}

/** Another region's API could not be reached or answered nonsense (down, timeout, 5xx, redirect). */
export class RegionUnavailable extends TernError {
  override readonly kind = 'regionUnavailable';
  override readonly transient = true;
}

/** A wrapped secret (backup passphrase, instance password) cannot be opened with the keys here. */
export class KeyUnavailable extends TernError {
  override readonly kind = 'keyUnavailable';
}

/** The configuration is invalid; the message lists every problem found. */
export class ConfigError extends TernError {
  override readonly kind = 'config';
}

/** Cancelled on purpose (DELETE of a running backup, shutdown). Never retried. */
export class Cancelled extends TernError {
  override readonly kind = 'cancelled';
}

export function isTransient(err: unknown): boolean {
  return err instanceof TernError && err.transient;
}
