import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { SwiftStorageConfig } from '../../src/config.ts';
import { SwiftDriver, type SwiftDriverConfig } from '../../src/storage/drivers/swift.ts';

// The two loopback Swift regions of scripts/swift-regions.sh (region1 on :8081, region2 on :8082),
// each with TempAuth account "test", user "tester", key "testing".

const ROOT = resolve(import.meta.dirname, '../..');
let started: Promise<void> | null = null;

/** Starts both regions (or checks they run) once per process. */
export function ensureSwiftRegions(): Promise<void> {
  started ??= promisify(execFile)('bash', [resolve(ROOT, 'scripts/swift-regions.sh'), 'start'], {
    cwd: ROOT,
    timeout: 15 * 60_000,
  }).then(
    () => undefined,
    (err) => {
      started = null;
      throw new Error(`scripts/swift-regions.sh start failed: ${err.stderr || err.message}`);
    },
  );
  return started;
}

let keystone: Promise<void> | null = null;

/**
 * Starts (or checks) the real Keystone of scripts/swift/keystone.sh on 127.0.0.1:35357 and its
 * Keystone-authenticated Swift proxy on 127.0.0.1:8083 (region1's servers), once per process.
 */
export function ensureKeystone(): Promise<void> {
  keystone ??= promisify(execFile)('bash', [resolve(ROOT, 'scripts/swift/keystone.sh'), 'start'], {
    cwd: ROOT,
    timeout: 15 * 60_000,
  }).then(
    () => undefined,
    (err) => {
      keystone = null;
      throw new Error(`scripts/swift/keystone.sh start failed: ${err.stderr || err.message}`);
    },
  );
  return keystone;
}

export const KEYSTONE_URL = 'http://127.0.0.1:35357/v3';

/** Keystone v3 password auth of the "tern" user and project; RegionOne's public endpoint. */
export function keystoneConfig(container = 'database_backups'): SwiftDriverConfig {
  return {
    authUrl: KEYSTONE_URL,
    authVersion: '3',
    user: 'tern',
    key: 'ternpass',
    userDomain: 'Default',
    projectName: 'tern',
    projectDomain: 'Default',
    regionName: 'RegionOne',
    interface: 'public',
    container,
  };
}

export function swiftProxyUrl(region: 1 | 2): string {
  return `http://127.0.0.1:${8080 + region}`;
}

/** TempAuth config of a region's test account; container defaults to database_backups. */
export function swiftConfig(region: 1 | 2, container = 'database_backups'): SwiftDriverConfig {
  // Typed as the tern config entry too: the driver must accept what config.ts validates.
  const config: SwiftStorageConfig = {
    driver: 'swift',
    authUrl: `${swiftProxyUrl(region)}/auth/v1.0`,
    authVersion: '1',
    user: 'test:tester',
    key: 'testing',
    container,
    segmentSize: 64 * 1024 * 1024,
  };
  return config;
}

/** Names of the objects in a container of a region's test account ([] when it does not exist). */
export async function containerKeys(region: 1 | 2, container: string): Promise<string[]> {
  const driver = new SwiftDriver(swiftConfig(region, container));
  try {
    const keys: string[] = [];
    for await (const o of driver.list('')) keys.push(o.key);
    return keys;
  } finally {
    await driver.close();
  }
}

/**
 * Waits until a container holds no object (a backup's bytes are removed by a job after its DELETE
 * was accepted) and returns what is left after timeoutMs, so callers assert it is [].
 */
export async function emptiedContainer(region: 1 | 2, container: string, timeoutMs = 60_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await containerKeys(region, container);
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(250);
  }
}

/** A TempAuth token and storage URL of a region's test account, fetched without the driver. */
export async function tempAuth(region: 1 | 2): Promise<{ token: string; storageUrl: string }> {
  const res = await fetch(`${swiftProxyUrl(region)}/auth/v1.0`, {
    headers: { 'x-auth-user': 'test:tester', 'x-auth-key': 'testing' },
  });
  const token = res.headers.get('x-auth-token');
  const storageUrl = res.headers.get('x-storage-url');
  if (res.status !== 200 || !token || !storageUrl) throw new Error(`TempAuth of region${region} answered ${res.status}`);
  return { token, storageUrl };
}

/** Deletes every object of a container (manifests with their segments) and then the container. */
export async function dropContainer(region: 1 | 2, container: string): Promise<void> {
  const driver = new SwiftDriver(swiftConfig(region, container));
  try {
    for (const key of await containerKeys(region, container)) await driver.delete(key);
    const { token, storageUrl } = await tempAuth(region);
    await fetch(`${storageUrl}/${encodeURIComponent(container)}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
  } finally {
    await driver.close();
  }
}

/**
 * A loopback TCP proxy in front of a Swift proxy, for faults a healthy Swift never shows: 503s,
 * a 401 for a valid token, connections cut part way through a body. Point authUrl at
 * `proxy.url + '/auth/v1.0'`: TempAuth then hands out storage URLs on the proxy too.
 */
export class FaultProxy {
  /** 'pass' forwards; '503' answers every new connection's first request with 503 and closes. */
  mode: 'pass' | '503' = 'pass';
  /** TempAuth requests seen (GET /auth/v1.0). */
  authRequests = 0;
  private readonly server: Server;
  private readonly target: number;
  private readonly sockets = new Set<Socket>();
  private unauthorized = 0;
  private failing = 0;
  private cutUp: number | null = null;
  private cutDown: number | null = null;
  /** Delay after each chunk Swift sends to the client (a slow link), in ms; 0 = none. */
  downDelayMs = 0;

  private constructor(server: Server, target: number) {
    this.server = server;
    this.target = target;
  }

  static async start(target: number): Promise<FaultProxy> {
    const server = createServer();
    const proxy = new FaultProxy(server, target);
    server.on('connection', (socket) => proxy.accept(socket));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The next n requests on new connections get a 503 (open connections are dropped first). */
  async failNext(n: number): Promise<void> {
    this.failing = n;
    await this.dropAll();
  }

  /** The next n requests other than TempAuth's get a 401, whatever their token. */
  async unauthorizedNext(n: number): Promise<void> {
    this.unauthorized = n;
    await this.dropAll();
  }

  /** Cuts the connection that carries the byte `bytes` bytes from now, client to Swift. */
  cutUploadAfter(bytes: number): void {
    this.cutUp = bytes;
  }

  /** Cuts the connection that carries the byte `bytes` bytes from now, Swift to client. */
  cutDownloadAfter(bytes: number): void {
    this.cutDown = bytes;
  }

  /** Closes every open connection, and gives clients a moment to notice. */
  async dropAll(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await sleep(30);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((done) => this.server.close(() => done()));
  }

  private accept(client: Socket): void {
    this.track(client);
    client.on('error', () => undefined);
    // The first bytes decide: a request line is always in the first chunk.
    client.once('data', (first: Buffer) => {
      const isAuth = first.includes('GET /auth/');
      let status: string | null = null;
      if (this.mode === '503' || this.failing > 0) {
        status = '503 Service Unavailable';
        if (this.failing > 0) this.failing--;
      } else if (this.unauthorized > 0 && !isAuth) {
        status = '401 Unauthorized';
        this.unauthorized--;
      }
      if (status) {
        client.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        return;
      }
      this.pass(client, first);
    });
  }

  private pass(client: Socket, first: Buffer): void {
    const upstream = connect(this.target, '127.0.0.1');
    this.track(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.unshift(first);
    this.forward(client, upstream, (chunk) => {
      if (chunk.includes('GET /auth/v1.0')) this.authRequests++;
      if (this.cutUp === null) return true;
      this.cutUp -= chunk.length;
      if (this.cutUp > 0) return true;
      this.cutUp = null;
      return false;
    });
    this.forward(
      upstream,
      client,
      (chunk) => {
        if (this.cutDown === null) return true;
        this.cutDown -= chunk.length;
        if (this.cutDown > 0) return true;
        this.cutDown = null;
        return false;
      },
      () => this.downDelayMs,
    );
  }

  /** Copies from -> to with backpressure; a chunk the check refuses cuts both connections. */
  private forward(from: Socket, to: Socket, check: (chunk: Buffer) => boolean, delayMs: () => number = () => 0): void {
    from.on('data', (chunk: Buffer) => {
      if (!check(chunk)) {
        from.destroy();
        to.destroy();
        return;
      }
      const delay = delayMs();
      if (delay > 0) {
        to.write(chunk);
        from.pause();
        setTimeout(() => from.resume(), delay);
        return;
      }
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => to.end());
    from.on('close', () => to.destroy());
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
  }
}
