import type { Readable } from 'node:stream';
import { StorageAuthFailed, StorageUnavailable } from '../../../errors.ts';
import { type Session, SwiftAuth, type SwiftAuthConfig } from './auth.ts';
import { backoff, drain, netError, type Response, readJson, statusError } from './http.ts';
import { Agent, request } from './undici.ts';

// One Swift account over a pooled undici Agent: every request carries a valid token; requests
// that may be sent again are retried on 5xx and network errors, and once after re-authenticating
// on 401. A streamed body is never replayed.

export interface SwiftClientOptions extends SwiftAuthConfig {
  connectTimeoutMs?: number;
  /** Longest wait for response headers, e.g. while Swift syncs a large object to disk. */
  headersTimeoutMs?: number;
  /** Longest silence while a body streams. */
  bodyTimeoutMs?: number;
  /** Tries of a replayable request on 5xx or network errors (1 = no retry). */
  maxAttempts?: number;
  retryBaseMs?: number;
  connections?: number;
}

export interface Call {
  /** The operation and object, for messages, e.g. "get http://.../x". */
  what: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'DELETE';
  /** Path below the storage URL, already encoded, e.g. "/database_backups/a%20b". */
  path: string;
  headers?: Record<string, string>;
  body?: string | Readable;
  /** True when the request may be sent again (no body, or a body we hold in memory). */
  replayable: boolean;
  signal?: AbortSignal;
}

export class SwiftClient {
  readonly auth: SwiftAuth;
  private readonly agent: Agent;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;

  constructor(options: SwiftClientOptions) {
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.agent = new Agent({
      connections: options.connections ?? 32,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
      headersTimeout: options.headersTimeoutMs ?? 300_000,
      bodyTimeout: options.bodyTimeoutMs ?? 120_000,
      keepAliveTimeout: 10_000,
    });
    this.auth = new SwiftAuth(options, this.agent, options.connectTimeoutMs ?? 30_000);
  }

  /** Sends a request with a valid token; retries what may be retried. The caller reads the body. */
  async send(call: Call): Promise<Response> {
    const { what, signal } = call;
    let reauthenticated = false;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      let session: Session;
      let res: Response;
      try {
        session = await this.auth.session(signal);
        res = await request(session.storageUrl + call.path, {
          method: call.method,
          headers: { ...call.headers, 'x-auth-token': session.token },
          body: call.body,
          signal,
          dispatcher: this.agent,
        });
      } catch (err) {
        const mapped = netError(err, what, signal);
        if (mapped instanceof StorageUnavailable && call.replayable && attempt + 1 < this.maxAttempts) {
          await backoff(attempt, this.retryBaseMs, signal);
          continue;
        }
        throw mapped;
      }
      if (res.statusCode === 401) {
        await drain(res);
        this.auth.invalidate(session.token);
        if (!this.auth.renewable || reauthenticated) throw new StorageAuthFailed(`${what}: Swift refused the token (401)`);
        reauthenticated = true;
        attempt--;
        if (call.replayable) continue;
        // The streamed body is spent: check the credentials now, then let the caller try again.
        await this.auth.session(signal);
        throw new StorageUnavailable(`${what}: the token expired during the upload; try again`);
      }
      if (res.statusCode >= 500 && call.replayable && attempt + 1 < this.maxAttempts) {
        await drain(res);
        await backoff(attempt, this.retryBaseMs, signal);
        continue;
      }
      return res;
    }
  }

  /** The cluster's /info document (no token needed), or null when the cluster hides it. */
  async info(signal?: AbortSignal): Promise<Record<string, any> | null> {
    const session = await this.auth.session(signal);
    const url = `${new URL(session.storageUrl).origin}/info`;
    const what = `info from ${url}`;
    let res: Response;
    try {
      res = await request(url, { dispatcher: this.agent, signal: signal ?? AbortSignal.timeout(30_000) });
    } catch (err) {
      throw netError(err, what, signal);
    }
    if (res.statusCode === 200) return (await readJson(res, 1024 * 1024, what)) as Record<string, any>;
    // /info can be switched off (expose_info = false).
    if (res.statusCode < 500) return drain(res).then(() => null);
    throw await statusError(res, what);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
