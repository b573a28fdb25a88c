import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { TestContext } from 'node:test';
import type { StorageDriver } from '../../src/storage/driver.ts';

// Shared by the fault tests: the line each one reports for the fault table
// (test/faults/table-reporter.ts), and ways to look at what a fault left behind.

export interface FaultOutcome {
  /** Short name of the fault, one word with dashes. */
  name: string;
  /** How many times the fault was injected. */
  injected: number;
  /** How many of those ended in a truthful state (verified COMPLETED/ACTIVE, or FAILED/ERROR with a reason). */
  survived: number;
  /** Backups or instances that ended COMPLETED/ACTIVE with bytes or data other than the source's. */
  lost: number;
  /** Objects, temp files, private temp folders or processes left behind. */
  orphans: number;
}

/** Reports one row of the fault table; call it before asserting, so a failing run still shows its row. */
export function reportFault(t: TestContext, o: FaultOutcome, detail?: string): void {
  t.diagnostic(`FAULT name=${o.name} injected=${o.injected} survived=${o.survived} lost=${o.lost} orphans=${o.orphans}`);
  if (detail) t.diagnostic(detail);
}

/**
 * Calls a region's Trove API as project p1 with `token`; `baseUrl` is asked on every call, since
 * the fault tests restart the region on new ports. Answers status and parsed body (null if none).
 */
export function regionApi(baseUrl: () => string, token: string) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${baseUrl()}/v1.0/p1${path}`, {
      method,
      headers: { 'x-auth-token': token, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
}

/** Every file under a folder, as paths relative to it (temp files included, which a driver's list hides). */
export function filesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => relative(dir, join(e.parentPath, e.name)))
      .sort();
  } catch {
    return [];
  }
}

export async function listKeys(driver: StorageDriver): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of driver.list('')) keys.push(o.key);
  return keys.sort();
}

/**
 * The keys of a storage that belong to no COMPLETED backup of the list (Trove records): anything
 * else is an orphan, since a FAILED backup must leave nothing behind.
 */
export async function orphanKeys(driver: StorageDriver, backups: Array<{ status: string; locationRef: string | null }>) {
  const owned = new Set<string>();
  for (const b of backups) {
    const key = b.status === 'COMPLETED' && b.locationRef ? driver.keyOf(b.locationRef) : null;
    if (!key) continue;
    owned.add(key);
    for (const s of (await driver.segments(key)) ?? []) owned.add(s.key);
  }
  return (await listKeys(driver)).filter((k) => !owned.has(k));
}

/**
 * Reads a stored backup back segment by segment: true when each segment has the MD5 its manifest
 * records and the manifest etag (MD5 of those MD5s) is the checksum the backup reports.
 */
export async function storedBytesMatch(driver: StorageDriver, key: string, checksum: string): Promise<boolean> {
  const head = await driver.head(key);
  if (!head || head.etag !== checksum) return false;
  const segments = (await driver.segments(key)) ?? [{ key, size: head.size, etag: head.etag }];
  const md5s: string[] = [];
  for (const s of segments) {
    const hash = createHash('md5');
    for await (const chunk of await driver.get(s.key)) hash.update(chunk as Buffer);
    const md5 = hash.digest('hex');
    if (md5 !== s.etag) return false;
    md5s.push(md5);
  }
  const joined = segments.length === 1 && !head.segmented ? md5s[0] : createHash('md5').update(md5s.join('')).digest('hex');
  return joined === checksum;
}

/** PIDs of processes whose command line mentions `text` (a test's own unique folder), optionally of one program. */
export function pidsMentioning(text: string, program?: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (program && !argv[0]?.endsWith(program)) continue;
      if (argv.some((a) => a.includes(text))) found.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Sends a signal to a PID and waits (up to timeoutMs) until it is gone; for processes the test started. */
export async function killAndWait(pid: number, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return;
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

const SWIFT_BASE = process.env.TERN_SWIFT_DIR ?? '/var/tmp/tern-swift';

/**
 * Removes a test's container from region N's Swift: its objects one by one (plain DELETEs, so a
 * manifest whose segment Swift quarantined goes too, and a listing entry of a quarantined object
 * is answered 404), then the container itself.
 */
export async function dropSwiftContainer(region: 1 | 2, container: string): Promise<void> {
  const auth = await fetch(`http://127.0.0.1:${8080 + region}/auth/v1.0`, {
    headers: { 'x-storage-user': 'test:tester', 'x-storage-pass': 'testing' },
  });
  const token = auth.headers.get('x-auth-token')!;
  const base = `${auth.headers.get('x-storage-url')}/${encodeURIComponent(container)}`;
  const headers = { 'x-auth-token': token };
  let marker = '';
  for (;;) {
    const res = await fetch(`${base}?format=json&marker=${encodeURIComponent(marker)}`, { headers });
    if (res.status === 404) return;
    const page = (await res.json()) as Array<{ name: string }>;
    if (page.length === 0) break;
    for (const o of page) {
      const del = await fetch(`${base}/${o.name.split('/').map(encodeURIComponent).join('/')}`, { method: 'DELETE', headers });
      await del.body?.cancel();
    }
    marker = page[page.length - 1].name;
  }
  const del = await fetch(base, { method: 'DELETE', headers });
  await del.body?.cancel();
}

/**
 * The .data file holding a Swift object on region N's single device (one replica), found through
 * the region's real object ring and Swift's own hash_path (which reads /etc/swift/swift.conf).
 */
export function swiftObjectFile(region: 1 | 2, container: string, object: string, account = 'AUTH_test'): string {
  const etc = join(SWIFT_BASE, `region${region}`, 'etc');
  const script = [
    'import sys',
    'from swift.common.ring import Ring',
    'from swift.common.utils import hash_path',
    'a, c, o = sys.argv[2:5]',
    "print(Ring(sys.argv[1], ring_name='object').get_part(a, c, o), hash_path(a, c, o))",
  ].join('\n');
  // Debian's python3 has the swift package; a python3 earlier on PATH may not (see DESIGN.md).
  const out = execFileSync('/usr/bin/python3', ['-c', script, etc, account, container, object], { encoding: 'utf8' });
  const [part, hash] = out.trim().split(' ');
  const dir = join(SWIFT_BASE, `region${region}`, 'srv', 'd1', 'objects', part, hash.slice(-3), hash);
  const data = readdirSync(dir).filter((f) => f.endsWith('.data'));
  if (data.length !== 1) throw new Error(`expected one .data file in ${dir}, found ${data.join(', ') || 'none'}`);
  return join(dir, data[0]);
}
