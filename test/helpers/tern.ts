import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig, type StorageConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { type RunningTern, startTern } from '../../src/main/server.ts';

// Starts a real Tern region (HTTP on a loopback port, real metadata DB, fs storage) for a test.

export interface TestRegion {
  name: string;
  url: string;
  dir: string;
  tern: RunningTern;
  tokens: { admin: string; member: string; other: string };
  /** fetch against this region with a token (default: member of project "p1"). */
  call(
    method: string,
    path: string,
    options?: { body?: unknown; token?: string | null; raw?: string; headers?: Record<string, string> },
  ): Promise<{ status: number; body: any; text: string }>;
  stop(): Promise<void>;
}

export interface TestRegionOptions {
  name?: string;
  dbUrl?: string;
  /** Other regions this one trusts, as {region, storage root} (or any storage config), API URL and keys. */
  catalog?: Array<{ region: string; root?: string; storage?: StorageConfig; apiUrl?: string; keys?: Array<{ secret: string }> }>;
  /** This region's storage (default: fs under the region's folder). */
  storage?: StorageConfig;
  /** Tokens to configure (default: random); regions sharing them accept the same callers, as with one Keystone. */
  tokens?: { admin: string; member: string; other: string };
  /** This region's encryption key secret (default: a generated one). */
  keySecret?: string;
  worker?: Record<string, unknown>;
  extra?: Record<string, unknown>;
  /** Default: a silent logger. */
  logger?: Logger;
}

export async function startTestRegion(options: TestRegionOptions = {}): Promise<TestRegion> {
  const name = options.name ?? 'region2';
  const dir = mkdtempSync(join(tmpdir(), `tern-${name}-`));
  const tokens = options.tokens ?? { admin: rnd(), member: rnd(), other: rnd() };
  const configFile = join(dir, 'tern.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      region: name,
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: dir,
      database: { url: options.dbUrl ?? `sqlite:${dir}/tern.db` },
      storage: options.storage ?? { driver: 'fs', root: join(dir, 'objects') },
      ...(options.keySecret ? { encryption: { keys: [{ secret: options.keySecret }] } } : {}),
      auth: {
        tokens: [
          { token: tokens.admin, project: 'admin', roles: ['admin'] },
          { token: tokens.member, project: 'p1', roles: ['member'] },
          { token: tokens.other, project: 'p2', roles: ['member'] },
        ],
      },
      catalog: (options.catalog ?? []).map((c) => ({
        region: c.region,
        apiUrl: c.apiUrl,
        storage: c.storage ?? { driver: 'fs', root: c.root },
        keys: c.keys ?? [],
      })),
      worker: { pollMs: 50, backoffBaseMs: 50, backoffMaxMs: 200, leaseSeconds: 5, heartbeatSeconds: 1, ...options.worker },
      logLevel: 'silent',
      ...options.extra,
    }),
  );
  const config = loadConfig({ file: configFile });
  const tern = await startTern(config, { logger: options.logger ?? createLogger('silent') });
  const url = tern.url;
  return {
    name,
    url,
    dir,
    tern,
    tokens,
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      const token = opts.token === undefined ? tokens.member : opts.token;
      if (token !== null) headers['x-auth-token'] = token;
      let body: string | undefined = opts.raw;
      if (opts.body !== undefined) body = JSON.stringify(opts.body);
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      const res = await fetch(`${url}${path}`, { method, headers, body });
      const text = await res.text();
      let parsed: any = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = null;
      }
      return { status: res.status, body: parsed, text };
    },
    async stop() {
      await tern.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function rnd(): string {
  return randomBytes(16).toString('hex');
}
