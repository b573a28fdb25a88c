import type { Dispatcher } from 'undici';
import { ConfigError, StorageAuthFailed, StorageUnavailable } from '../../../errors.ts';
import { header, netError, readJson, statusError } from './http.ts';
import { request } from './undici.ts';

// Swift authentication: TempAuth (v1.0) and Keystone v3 (password, token, application credential),
// or a fixed token with a configured storage URL. A session is cached and shared by concurrent
// requests (one auth call in flight at a time), renewed shortly before it expires, and dropped when
// Swift answers 401 so the next request authenticates again.

export interface SwiftAuthConfig {
  authUrl: string;
  authVersion?: '1' | '3';
  user?: string;
  key?: string;
  projectName?: string;
  projectDomain?: string;
  userDomain?: string;
  applicationCredentialId?: string;
  applicationCredentialSecret?: string;
  regionName?: string;
  interface?: string;
  storageUrl?: string;
}

export interface Session {
  token: string;
  /** Account URL without a trailing slash, e.g. http://127.0.0.1:8081/v1/AUTH_test */
  storageUrl: string;
  /** Epoch ms after which the session is renewed before use; null: never expires on its own. */
  renewAt: number | null;
}

type Method = 'tempauth' | 'fixed' | 'password' | 'token' | 'application_credential';

/** Renew when this much of the token's life (at most a minute) is left. */
const RENEW_MARGIN_MS = 60_000;
const MAX_AUTH_BODY = 4 * 1024 * 1024;

export class SwiftAuth {
  readonly method: Method;
  private readonly config: SwiftAuthConfig;
  private readonly dispatcher: Dispatcher;
  private readonly timeoutMs: number;
  private current: Session | null = null;
  private pending: Promise<Session> | null = null;

  constructor(config: SwiftAuthConfig, dispatcher: Dispatcher, timeoutMs: number) {
    this.config = config;
    this.dispatcher = dispatcher;
    this.timeoutMs = timeoutMs;
    this.method = chooseMethod(config);
  }

  /** The storage URL known without a network call (configured or TempAuth's convention), if any. */
  predictedStorageUrl(): string | null {
    return this.configuredStorageUrl() ?? this.current?.storageUrl ?? null;
  }

  private configuredStorageUrl(): string | null {
    const { storageUrl, authUrl, user } = this.config;
    if (storageUrl) return storageUrl.replace(/\/+$/, '');
    if (this.method === 'tempauth' && user) {
      const account = user.split(':')[0];
      return `${new URL(authUrl).origin}/v1/AUTH_${encodeURIComponent(account)}`;
    }
    return null;
  }

  /** A valid session, authenticating when there is none or it is about to expire. */
  async session(signal?: AbortSignal): Promise<Session> {
    const s = this.current;
    if (s && (s.renewAt === null || Date.now() < s.renewAt)) return s;
    if (!this.pending) {
      // Not tied to one caller's signal: other callers may be waiting on the same call.
      this.pending = this.authenticate().finally(() => {
        this.pending = null;
      });
    }
    const session = await raceSignal(this.pending, signal);
    return session;
  }

  /** Forgets a token Swift refused, unless a newer one has replaced it already. */
  invalidate(token: string): void {
    if (this.current?.token === token) this.current = null;
  }

  /** True when a refused token can be replaced by authenticating again. */
  get renewable(): boolean {
    return this.method !== 'fixed';
  }

  private async authenticate(): Promise<Session> {
    const session =
      this.method === 'fixed'
        ? { token: this.config.key!, storageUrl: this.config.storageUrl!.replace(/\/+$/, ''), renewAt: null }
        : this.method === 'tempauth'
          ? await this.tempAuth()
          : await this.keystone();
    // The catalog trusts the endpoint known from configuration; an auth server that names another
    // storage URL must not steer requests (and the token) to a host the catalog never checked.
    const expected = this.configuredStorageUrl();
    if (expected !== null && session.storageUrl !== expected) {
      throw new StorageAuthFailed(
        `${this.config.authUrl}: the auth answer names storage URL ${session.storageUrl}, not the configured ${expected}; set storageUrl if the cluster is reached under another address`,
      );
    }
    this.current = session;
    return session;
  }

  private async tempAuth(): Promise<Session> {
    const { authUrl, user, key } = this.config;
    const what = `TempAuth at ${authUrl} for user ${JSON.stringify(user)}`;
    const res = await this.call(what, authUrl, {
      method: 'GET',
      headers: { 'x-storage-user': user!, 'x-storage-pass': key! },
    });
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump();
      throw new StorageAuthFailed(`${what}: credentials refused (${res.statusCode})`);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) throw await rejected(res, what);
    await res.body.dump();
    const token = header(res, 'x-auth-token');
    const url = this.config.storageUrl ?? header(res, 'x-storage-url');
    if (!token || !url) throw new StorageAuthFailed(`${what}: answer lacks X-Auth-Token or X-Storage-Url`);
    const ttl = Number(header(res, 'x-auth-token-expires'));
    return { token, storageUrl: url.replace(/\/+$/, ''), renewAt: renewAt(Number.isFinite(ttl) ? ttl * 1000 : null) };
  }

  private async keystone(): Promise<Session> {
    const c = this.config;
    const url = tokensUrl(c.authUrl);
    const what = `Keystone at ${url} (${this.method}${c.user ? ` for user ${JSON.stringify(c.user)}` : ''})`;
    const res = await this.call(what, url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(keystoneBody(this.method, c)),
    });
    if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode === 404) {
      await res.body.dump();
      throw new StorageAuthFailed(`${what}: credentials refused (${res.statusCode})`);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) throw await rejected(res, what);
    const token = header(res, 'x-subject-token');
    const body = (await readJson(res, MAX_AUTH_BODY, what)) as KeystoneToken;
    if (!token || !body?.token) throw new StorageAuthFailed(`${what}: answer lacks X-Subject-Token or a token body`);
    const expires = body.token.expires_at ? Date.parse(body.token.expires_at) : Number.NaN;
    const storageUrl = c.storageUrl ?? pickEndpoint(body.token.catalog ?? [], c.regionName, c.interface ?? 'public', what);
    return {
      token,
      storageUrl: storageUrl.replace(/\/+$/, ''),
      renewAt: renewAt(Number.isFinite(expires) ? expires - Date.now() : null),
    };
  }

  private async call(what: string, url: string, options: Omit<Dispatcher.RequestOptions, 'origin' | 'path'>) {
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      return await request(url, { ...options, dispatcher: this.dispatcher, signal });
    } catch (err) {
      if (signal.aborted) throw new StorageUnavailable(`${what}: no answer within ${this.timeoutMs} ms`);
      throw netError(err, what);
    }
  }
}

interface KeystoneEndpoint {
  interface?: string;
  region?: string;
  region_id?: string;
  url?: string;
}
interface KeystoneToken {
  token?: { expires_at?: string; catalog?: { type?: string; endpoints?: KeystoneEndpoint[] }[] };
}

function chooseMethod(c: SwiftAuthConfig): Method {
  const version = c.authVersion ?? '1';
  if (version === '1') {
    if (c.user && c.key) return 'tempauth';
    if (c.storageUrl && c.key) return 'fixed';
    throw new ConfigError('swift storage: TempAuth needs user and key (or storageUrl and a fixed token in key)');
  }
  if (c.applicationCredentialId || c.applicationCredentialSecret) {
    if (c.applicationCredentialId && c.applicationCredentialSecret) return 'application_credential';
    throw new ConfigError('swift storage: an application credential needs both its id and its secret');
  }
  if (c.user && c.key) return 'password';
  if (c.key) return 'token';
  throw new ConfigError('swift storage: Keystone v3 needs user and key, a token in key, or an application credential');
}

function keystoneBody(method: Method, c: SwiftAuthConfig): unknown {
  if (method === 'application_credential') {
    // Application credentials carry their own scope; Keystone refuses an explicit one.
    const credential = { id: c.applicationCredentialId, secret: c.applicationCredentialSecret };
    return { auth: { identity: { methods: [method], application_credential: credential } } };
  }
  const identity =
    method === 'password'
      ? { methods: [method], password: { user: { name: c.user, domain: { name: c.userDomain ?? 'Default' }, password: c.key } } }
      : { methods: [method], token: { id: c.key } };
  const scope = c.projectName ? { project: { name: c.projectName, domain: { name: c.projectDomain ?? 'Default' } } } : undefined;
  return { auth: scope ? { identity, scope } : { identity } };
}

function tokensUrl(authUrl: string): string {
  const base = authUrl.replace(/\/+$/, '');
  if (base.endsWith('/auth/tokens')) return base;
  return `${/\/v3$/.test(base) ? base : `${base}/v3`}/auth/tokens`;
}

function pickEndpoint(
  catalog: NonNullable<KeystoneToken['token']>['catalog'],
  region: string | undefined,
  iface: string,
  what: string,
) {
  for (const service of catalog ?? []) {
    if (service.type !== 'object-store') continue;
    const found = (service.endpoints ?? []).find(
      (e) => e.interface === iface && e.url && (!region || e.region_id === region || e.region === region),
    );
    if (found?.url) return found.url;
  }
  const where = region ? `region ${JSON.stringify(region)}, ` : '';
  throw new StorageAuthFailed(`${what}: the catalog has no object-store endpoint for ${where}interface ${JSON.stringify(iface)}`);
}

function renewAt(lifetimeMs: number | null): number | null {
  if (lifetimeMs === null) return null;
  return Date.now() + lifetimeMs - Math.min(RENEW_MARGIN_MS, Math.max(0, lifetimeMs) / 2);
}

async function rejected(res: Dispatcher.ResponseData, what: string): Promise<Error> {
  if (res.statusCode >= 500) return statusError(res, what);
  await res.body.dump();
  return new StorageAuthFailed(`${what}: refused with ${res.statusCode}`);
}

async function raceSignal<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
