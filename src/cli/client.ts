// The CLI's only HTTP code: a thin client for Tern's Trove v1.0 API. It knows URLs, headers and
// fault bodies, nothing about what the commands do with the answers.

export interface BackupProgress {
  done_bytes: number;
  total_bytes: number | null;
  percent: number | null;
  rate_bytes_per_s: number | null;
  eta_seconds: number | null;
}

export interface Backup {
  id: string;
  name: string;
  description: string | null;
  locationRef: string | null;
  instance_id: string | null;
  created: string;
  updated: string;
  size: number | null;
  status: string;
  parent_id: string | null;
  project_id: string;
  datastore: { type: string; version: string; version_id: string } | null;
  checksum?: string | null;
  progress?: BackupProgress;
  fail_reason?: string;
  [extra: string]: unknown;
}

export interface BackupPage {
  backups: Backup[];
  links?: Array<{ rel: string; href: string }>;
}

export interface Datastore {
  id: string;
  name: string;
  versions: Array<{ id: string; name: string; [extra: string]: unknown }>;
  [extra: string]: unknown;
}

export interface ListQuery {
  limit?: number;
  marker?: string;
  instanceId?: string;
  datastore?: string;
  allProjects?: boolean;
}

/** The body of POST /backups, as Trove and Tern spell it. */
export interface CreateBackupBody {
  name: string;
  description?: string;
  instance?: string;
  parent_id?: string;
  incremental?: 0 | 1;
  location?: string;
  restore_from?: { remote_location: string; local_datastore_version_id: string; size?: number };
  source?: { region: string; id: string };
}

/** The API answered with a Trove fault (or another non-2xx answer). */
export class ApiError extends Error {
  readonly status: number;
  readonly fault: string;
  constructor(message: string, status: number, fault: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.fault = fault;
  }
}

/** No HTTP answer at all: refused, unreachable, timed out. */
export class ConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionError';
  }
}

export interface ClientOptions {
  url: string;
  project: string;
  /** Sent as X-Auth-Token; never put in messages. */
  token?: string;
  timeoutMs?: number;
}

export class TernClient {
  readonly url: string;
  private readonly base: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.base = `${this.url}/v1.0/${encodeURIComponent(options.project)}`;
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  async listBackups(query: ListQuery = {}): Promise<BackupPage> {
    const params = new URLSearchParams();
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    if (query.marker) params.set('marker', query.marker);
    if (query.instanceId) params.set('instance_id', query.instanceId);
    if (query.datastore) params.set('datastore', query.datastore);
    if (query.allProjects) params.set('all_projects', '1');
    const qs = params.size > 0 ? `?${params}` : '';
    return (await this.request('GET', `/backups${qs}`)) as BackupPage;
  }

  async getBackup(id: string): Promise<{ backup: Backup }> {
    return (await this.request('GET', `/backups/${encodeURIComponent(id)}`)) as { backup: Backup };
  }

  async createBackup(body: CreateBackupBody): Promise<{ backup: Backup }> {
    return (await this.request('POST', '/backups', { backup: body })) as { backup: Backup };
  }

  async deleteBackup(id: string): Promise<void> {
    await this.request('DELETE', `/backups/${encodeURIComponent(id)}`);
  }

  async listDatastores(): Promise<{ datastores: Datastore[] }> {
    return (await this.request('GET', '/datastores')) as { datastores: Datastore[] };
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers['x-auth-token'] = this.token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new ConnectionError(describeNetworkError(err, this.url, this.timeoutMs));
    }
    const text = await res.text();
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (!res.ok) throw faultOf(res.status, parsed, text);
    if (parsed === undefined) throw new ApiError(`the server at ${this.url} did not answer JSON`, res.status, 'badResponse');
    return parsed;
  }
}

/** Trove faults look like {"itemNotFound": {"code": 404, "message": "..."}}. */
function faultOf(status: number, parsed: unknown, text: string): ApiError {
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
    for (const [name, value] of Object.entries(parsed)) {
      if (value && typeof value === 'object' && typeof (value as { message?: unknown }).message === 'string') {
        const code = (value as { code?: unknown }).code;
        return new ApiError((value as { message: string }).message, typeof code === 'number' ? code : status, name);
      }
    }
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(snippet ? `unexpected answer: ${snippet}` : 'empty error answer', status, 'unknown');
}

function describeNetworkError(err: unknown, url: string, timeoutMs: number): string {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return `no answer from Tern at ${url} within ${timeoutMs / 1000} s`;
  const code = e.cause?.code;
  if (code === 'ECONNREFUSED') return `cannot connect to Tern at ${url}: connection refused (is \`tern serve\` running?)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the host of ${url}`;
  return `cannot reach Tern at ${url}: ${code ?? e.cause?.message ?? (err as Error).message}`;
}
