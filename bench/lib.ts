import { spawn, spawnSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { createReadStream, createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

// Shared by bench/storage.ts and bench/copy.ts: running a contender under /usr/bin/time (wall time
// and peak RSS of exactly that process), the loopback Swift/S3 credentials, SigV4 headers for curl,
// and a random test file.

export const ROOT = resolve(import.meta.dirname, '..');
export const NODE = resolve(ROOT, 'node_modules/.bin/node');
export const MiB = 1024 * 1024;
export const S3_ACCESS = 'test:tester';
export const S3_SECRET = 'testing';

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export interface Measured {
  seconds: number;
  /** Peak resident set of the measured process (VmHWM / ru_maxrss), MiB. */
  peakRssMiB: number;
  /** CPU seconds (user + system) the process used. */
  cpuSeconds: number;
  /** What the process printed on stdout (a Tern child prints JSON figures). */
  stdout: string;
}

/**
 * Runs argv under `/usr/bin/time -f '%e %M %U %S'` and returns wall seconds, CPU seconds (of the
 * process and the children it waited for) and peak RSS of that one process (children of a shell
 * are not counted by %M, so pipelines go through measurePipeline).
 */
export async function measure(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measured> {
  const marker = '@@time';
  const child = spawn('/usr/bin/time', ['-f', `${marker} %e %M %U %S`, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => {
    stdout += c;
  });
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const started = process.hrtime.bigint();
  const code = await new Promise<number | null>((done) => child.on('close', done));
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const line = stderr.split('\n').find((l) => l.startsWith(marker));
  if (code !== 0 || !line) throw new Error(`${argv.join(' ')} failed (${code}): ${stderr.slice(-2000)}`);
  const [, , kib, user, system] = line.split(' ');
  return { seconds: wall, peakRssMiB: Number(kib) / 1024, cpuSeconds: Number(user) + Number(system), stdout };
}

/** Peak RSS of each process of a two-stage pipeline `a | b`, its wall time and its CPU seconds in all. */
export async function measurePipeline(
  a: string[],
  b: string[],
): Promise<{ seconds: number; cpuSeconds: number; peakRssMiB: number[] }> {
  const script =
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash script, not a template
    'set -o pipefail; /usr/bin/time -f "@@time %M" -o "$TIME_A" "${@:1:$N}" | /usr/bin/time -f "@@time %M" -o "$TIME_B" "${@:$((N+1))}"';
  const tag = `${process.pid}-${Date.now()}`;
  const [timeA, timeB] = [`/tmp/tern-bench-${tag}-a`, `/tmp/tern-bench-${tag}-b`];
  const env = { ...process.env, TIME_A: timeA, TIME_B: timeB, N: String(a.length) };
  const m = await measure(['bash', '-c', script, 'pipe', ...a, ...b], env);
  const { readFileSync, rmSync } = await import('node:fs');
  const rss = [timeA, timeB].map((f) => {
    const text = readFileSync(f, 'utf8');
    rmSync(f, { force: true });
    return Number(/@@time (\d+)/.exec(text)?.[1] ?? 0) / 1024;
  });
  return { seconds: m.seconds, cpuSeconds: m.cpuSeconds, peakRssMiB: rss };
}

/** A file of random bytes (incompressible, like encrypted backups); returns its MD5. */
export async function randomFile(path: string, bytes: number): Promise<string> {
  const md5 = createHash('md5');
  const out = createWriteStream(path);
  const { randomFillSync } = await import('node:crypto');
  const block = Buffer.alloc(4 * MiB);
  for (let done = 0; done < bytes; ) {
    const n = Math.min(block.length, bytes - done);
    randomFillSync(block, 0, n);
    const chunk = Buffer.from(block.subarray(0, n));
    md5.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    done += n;
  }
  await new Promise<void>((done, fail) => out.end((err?: Error | null) => (err ? fail(err) : done())));
  return md5.digest('hex');
}

export async function md5File(path: string): Promise<string> {
  const md5 = createHash('md5');
  for await (const chunk of createReadStream(path)) md5.update(chunk);
  return md5.digest('hex');
}

/** A TempAuth token and storage URL of a loopback Swift region. */
export async function swiftToken(region: 1 | 2): Promise<{ token: string; storageUrl: string }> {
  const res = await fetch(`http://127.0.0.1:${8080 + region}/auth/v1.0`, {
    headers: { 'x-auth-user': 'test:tester', 'x-auth-key': 'testing' },
  });
  const token = res.headers.get('x-auth-token');
  const storageUrl = res.headers.get('x-storage-url');
  if (!res.ok || !token || !storageUrl) throw new Error(`TempAuth on region${region} failed: ${res.status}`);
  return { token, storageUrl };
}

/**
 * curl -H arguments that sign a request with SigV4 and an unsigned payload (what `aws s3 cp`
 * does over TLS). Needed because curl's own --aws-sigv4 takes the access key from --user, which
 * cannot hold TempAuth's "account:user" key.
 */
export function sigv4Headers(method: string, url: string, region = 'us-east-1'): string[] {
  const u = new URL(url);
  const amzDate = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const payload = 'UNSIGNED-PAYLOAD';
  const signed = 'host;x-amz-content-sha256;x-amz-date';
  const canonical = [
    method,
    u.pathname,
    '',
    `host:${u.host}`,
    `x-amz-content-sha256:${payload}`,
    `x-amz-date:${amzDate}`,
    '',
    signed,
    payload,
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${S3_SECRET}`).update(day).digest();
  for (const part of [region, 's3', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return [
    '-H',
    `x-amz-date: ${amzDate}`,
    '-H',
    `x-amz-content-sha256: ${payload}`,
    '-H',
    `Authorization: AWS4-HMAC-SHA256 Credential=${S3_ACCESS}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
  ];
}

export const mbps = (bytes: number, seconds: number) => bytes / 1e6 / seconds;
export const fmt = (n: number, digits = 0) => n.toFixed(digits);

/**
 * The environment bin/tern runs Tern with (its `export NAME="${NAME:-default}"` lines: compile
 * cache, malloc arenas), so a measured child runs as production does.
 */
export function ternEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const [, name, value] of binTern().matchAll(/^export (\w+)="\$\{\w+:-([^}]*)\}"$/gm)) {
    out[name] ??= value.replace('$repo', ROOT);
  }
  if (out.NODE_COMPILE_CACHE === undefined) throw new Error('bench/lib.ts ternEnv: bin/tern no longer sets NODE_COMPILE_CACHE');
  return out;
}

/**
 * The Node flags bin/tern runs Tern with, so a measured child runs as production does;
 * BENCH_NODE_FLAGS replaces them to compare settings.
 */
export function ternNodeFlags(): string[] {
  const flags = process.env.BENCH_NODE_FLAGS ?? /^node_flags=\(([^)]*)\)/m.exec(binTern())?.[1] ?? '';
  return flags.split(' ').filter(Boolean);
}

let binTernText: string | undefined;
/** bin/tern's text, read once: every child a bench starts asks for its flags and environment. */
function binTern(): string {
  binTernText ??= readFileSync(resolve(ROOT, 'bin/tern'), 'utf8');
  return binTernText;
}

/**
 * For a bench that runs Tern in its own process (backup.ts, load.ts): unless it already does, runs
 * the bench again as a child with bin/tern's Node flags and environment, and exits with its status.
 * Call it before the bench does anything.
 */
export function runAsTern(): void {
  const mark = 'TERN_BENCH_AS_TERN';
  if (process.env[mark] === '1') return;
  const argv = [...ternNodeFlags(), process.argv[1], ...process.argv.slice(2)];
  const child = spawnSync(NODE, argv, { stdio: 'inherit', env: { ...ternEnv(), [mark]: '1' } });
  process.exit(child.status ?? 1);
}

/**
 * CPU seconds used so far by the servers of the loopback Swift regions (the processes whose command
 * line names a config under scripts/swift-regions.sh's folder), from /proc. The difference across
 * a transfer is what the servers spent on it: on a 2-core machine that bounds every contender.
 */
export function swiftServersCpuSeconds(): number {
  const base = `${process.env.TERN_SWIFT_DIR ?? '/var/tmp/tern-swift'}/region`;
  const ticksPerSecond = 100; // Linux USER_HZ
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(base)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the ")" closing the command name start at field 3; utime and stime are 14, 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return ticks / ticksPerSecond;
}
