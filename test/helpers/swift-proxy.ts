import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './serve.ts';

// A private swift-proxy-server in front of a region's real account, container and object servers
// (scripts/swift-regions.sh), on its own port: a test can kill and restart it mid-transfer without
// disturbing the shared proxies other tests use.

const BASE = process.env.TERN_SWIFT_DIR ?? '/var/tmp/tern-swift';

export interface PrivateSwiftProxy {
  port: number;
  url: string;
  /** kill -9 of the proxy process. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function privateSwiftProxy(region: 1 | 2): Promise<PrivateSwiftProxy> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tern-swift-proxy-'));
  const conf = readFileSync(join(BASE, `region${region}`, 'etc', 'proxy-server.conf'), 'utf8')
    .replace(/^bind_port = \d+$/m, `bind_port = ${port}`)
    // One process, no forked workers: kill -9 of the pid takes the whole proxy down.
    .replace(/^workers = \d+$/m, 'workers = 0')
    .replace(/^log_name = .*$/m, `log_name = region${region}-private`);
  const file = join(dir, 'proxy-server.conf');
  writeFileSync(file, conf);
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;

  const start = async () => {
    child = spawn('swift-proxy-server', [file, '-v'], {
      env: { ...process.env, EVENTLET_NO_GREENDNS: 'yes' },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`swift-proxy-server exited with ${child.exitCode}`);
      try {
        if ((await fetch(`${url}/healthcheck`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the private Swift proxy on ${url} did not start`);
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port,
    url,
    kill,
    start,
    async close() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
