// Storage driver throughput and memory: upload and download of one large object per driver, side
// by side in one run with the plain tools against the same store.
//
//   fs     Tern FsDriver.put/get          vs  dd conv=fsync (Tern fsyncs too) / dd to /dev/null
//   swift  Tern SwiftDriver (region1)     vs  curl -T / curl -o /dev/null on the same proxy
//   s3     Tern S3Driver (region1 s3api)  vs  curl -T / curl -o /dev/null, SigV4 unsigned payload
//
// Run: node_modules/.bin/node bench/storage.ts
//   env BENCH_SIZES=256,1024 (MiB)  BENCH_DRIVERS=fs,swift,s3  BENCH_ROUNDS=1  BENCH_DIR=/var/tmp
// Needs scripts/swift-regions.sh start. Each Tern transfer runs in its own child process; its
// figures are the transfer time measured inside the child (after one HEAD that authenticates, as
// curl is handed a token) and the child's peak RSS (maxRSS).
// The idle row is a child that only loads and constructs the driver and makes one HEAD request:
// the floor under every transfer's RSS. Objects, files and the bucket/container are removed.

import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ObjectNotFound } from '../src/errors.ts';
import type { StorageDriver } from '../src/storage/driver.ts';
import {
  fmt,
  log,
  MiB,
  mbps,
  measure,
  NODE,
  randomFile,
  S3_ACCESS,
  S3_SECRET,
  sigv4Headers,
  swiftToken,
  ternEnv,
  ternNodeFlags,
} from './lib.ts';

const CONTAINER = 'tern-bench-storage';
type Kind = 'fs' | 'swift' | 's3';

/** Imports only the driver asked for, so a child's RSS holds no other driver's modules. */
async function driverFor(kind: Kind, dir: string): Promise<StorageDriver> {
  if (kind === 'fs') {
    const { FsDriver } = await import('../src/storage/drivers/fs.ts');
    return new FsDriver({ root: join(dir, 'fs-root'), container: CONTAINER });
  }
  if (kind === 'swift') {
    const { SwiftDriver } = await import('../src/storage/drivers/swift.ts');
    return new SwiftDriver({
      authUrl: 'http://127.0.0.1:8081/auth/v1.0',
      authVersion: '1',
      user: 'test:tester',
      key: 'testing',
      container: CONTAINER,
    });
  }
  const { S3Driver } = await import('../src/storage/drivers/s3.ts');
  return new S3Driver({
    endpoint: 'http://127.0.0.1:8081',
    region: 'us-east-1',
    bucket: CONTAINER,
    prefix: '',
    accessKeyId: S3_ACCESS,
    secretAccessKey: S3_SECRET,
    forcePathStyle: true,
    partSize: 64 * MiB,
  });
}

/** Child: one transfer, then its figures as JSON on stdout. */
async function child([op, kind, key, file, size, md5, dir]: string[]): Promise<void> {
  const driver = await driverFor(kind as Kind, dir);
  // Where the memory goes: peaks of the JS heap and of Buffer memory (ArrayBuffers, outside the heap).
  const peaks = { heapTotal: 0, arrayBuffers: 0, rss: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    peaks.heapTotal = Math.max(peaks.heapTotal, m.heapTotal / MiB);
    peaks.arrayBuffers = Math.max(peaks.arrayBuffers, m.arrayBuffers / MiB);
    peaks.rss = Math.max(peaks.rss, m.rss / MiB);
  };
  const sampler = setInterval(sample, 20);
  if (op !== 'idle') {
    // curl is handed a token; the driver gets its own (and a connection) before the clock starts.
    await driver.head(key).catch((err: unknown) => {
      if (!(err instanceof ObjectNotFound)) throw err;
    });
  }
  const loadedRssMiB = process.memoryUsage.rss() / MiB;
  const started = process.hrtime.bigint();
  let bytes = 0;
  if (op === 'upload') {
    const { createReadStream } = await import('node:fs');
    // 256 KiB reads, as the fs driver reads files (its READ_CHUNK, not imported: a Swift or S3
    // child loads no fs driver code). With fs streams' 64 KiB default, a fresh Buffer and a read
    // per 64 KiB cost the child 1.7-2.3 CPU s per GiB instead of 1.5-1.8 (Swift and S3 uploads,
    // 2 runs each); curl reads into one buffer it reuses.
    const source = createReadStream(file, { highWaterMark: 256 * 1024 });
    const result = await driver.put(key, source, { size: Number(size), md5 });
    bytes = result.size;
    if (result.etag !== md5) throw new Error(`uploaded etag ${result.etag}, file md5 ${md5}`);
  } else if (op === 'download') {
    const body = await driver.get(key);
    await pipeline(
      body,
      new Writable({
        write(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          done();
        },
      }),
    );
    if (bytes !== Number(size)) throw new Error(`downloaded ${bytes} bytes, expected ${size}`);
  } else {
    await driver.head(key);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(sampler);
  sample();
  await driver.close();
  const maxRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ seconds, bytes, maxRssMiB, loadedRssMiB, peaks }));
}

/** One transfer: wall seconds, CPU seconds and peak RSS (MiB) of the process that made it. */
interface Run {
  seconds: number;
  cpu: number;
  rss: number;
}

interface Row {
  kind: Kind;
  sizeMiB: number;
  op: 'upload' | 'download';
  tern: Run[];
  tool: Run[];
  toolName: string;
}

async function tern(op: string, kind: Kind, key: string, file: string, size: number, md5: string, dir: string) {
  const env = ternEnv();
  delete env.AWS_CA_BUNDLE;
  const m = await measure(
    [NODE, ...ternNodeFlags(), import.meta.filename, 'child', op, kind, key, file, String(size), md5, dir],
    env,
  );
  const figures = JSON.parse(m.stdout) as {
    seconds: number;
    maxRssMiB: number;
    loadedRssMiB: number;
    peaks: Record<string, number>;
  };
  if (process.env.BENCH_VERBOSE) {
    const p = figures.peaks;
    log(
      `  ${op} ${kind}: rss loaded ${fmt(figures.loadedRssMiB)} peak ${fmt(figures.maxRssMiB)}; peak heapTotal ${fmt(p.heapTotal)} arrayBuffers ${fmt(p.arrayBuffers)} MiB`,
    );
  }
  return { seconds: figures.seconds, cpu: m.cpuSeconds, rss: figures.maxRssMiB };
}

async function tool(op: 'upload' | 'download', kind: Kind, file: string, dir: string, key: string) {
  let argv: string[];
  if (kind === 'fs') {
    const path = join(dir, 'fs-root', CONTAINER, key);
    argv =
      op === 'upload'
        ? ['dd', `if=${file}`, `of=${path}`, 'bs=1M', 'conv=fsync', 'status=none']
        : ['dd', `if=${path}`, 'of=/dev/null', 'bs=1M', 'status=none'];
  } else if (kind === 'swift') {
    const { token, storageUrl } = await swiftToken(1);
    const url = `${storageUrl}/${CONTAINER}/${key}`;
    argv = ['curl', '-sS', '-f', '-H', `X-Auth-Token: ${token}`, ...(op === 'upload' ? ['-T', file] : ['-o', '/dev/null']), url];
  } else {
    const url = `http://127.0.0.1:8081/${CONTAINER}/${key}`;
    argv = [
      'curl',
      '-sS',
      '-f',
      ...sigv4Headers(op === 'upload' ? 'PUT' : 'GET', url),
      ...(op === 'upload' ? ['-T', file] : ['-o', '/dev/null']),
      url,
    ];
  }
  const m = await measure(argv);
  return { seconds: m.seconds, cpu: m.cpuSeconds, rss: m.peakRssMiB };
}

async function main(): Promise<void> {
  const sizes = (process.env.BENCH_SIZES ?? '256,1024').split(',').map(Number);
  const kinds = (process.env.BENCH_DRIVERS ?? 'fs,swift,s3').split(',') as Kind[];
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? '/var/tmp', 'tern-bench-storage-'));
  const drivers = new Map<Kind, StorageDriver>();
  for (const k of kinds) drivers.set(k, await driverFor(k, dir));
  const rows: Row[] = [];
  const idle = new Map<Kind, number>();
  try {
    for (const kind of kinds) {
      // Creates the container/bucket (and folder) once, outside the measured transfers.
      const d = drivers.get(kind)!;
      const { Readable } = await import('node:stream');
      await d.put('warm-up', Readable.from([Buffer.from('x')]));
      await d.delete('warm-up');
      // The first child fills Node's compile cache (keyed by the Node flags too); the second is
      // the idle figure, as every later child starts with that cache.
      await tern('idle', kind, 'warm-up', '-', 0, '-', dir);
      idle.set(kind, (await tern('idle', kind, 'warm-up', '-', 0, '-', dir)).rss);
    }
    for (const sizeMiB of sizes) {
      const file = join(dir, `source-${sizeMiB}`);
      const size = sizeMiB * MiB;
      const md5 = await randomFile(file, size);
      log(`${sizeMiB} MiB source file written (md5 ${md5})`);
      for (const kind of kinds) {
        const driver = drivers.get(kind)!;
        const up: Row = { kind, sizeMiB, op: 'upload', tern: [], tool: [], toolName: kind === 'fs' ? 'dd' : 'curl' };
        const down: Row = { ...up, op: 'download', tern: [], tool: [] };
        for (let round = 0; round < rounds; round++) {
          const key = `bench-${sizeMiB}-${round}`;
          const toolKey = `${key}-tool`;
          // Alternate who goes first, so neither profits from a warmer cache or a quieter moment.
          const first = round % 2 === 0;
          if (first) up.tern.push(await tern('upload', kind, key, file, size, md5, dir));
          up.tool.push(await tool('upload', kind, file, dir, toolKey));
          if (!first) up.tern.push(await tern('upload', kind, key, file, size, md5, dir));
          if (first) down.tern.push(await tern('download', kind, key, file, size, md5, dir));
          down.tool.push(await tool('download', kind, file, dir, key));
          if (!first) down.tern.push(await tern('download', kind, key, file, size, md5, dir));
          log(
            `${kind} ${sizeMiB} MiB round ${round + 1}: up tern ${fmt(mbps(size, up.tern.at(-1)!.seconds))} MB/s ${up.toolName} ${fmt(mbps(size, up.tool.at(-1)!.seconds))} MB/s; ` +
              `down tern ${fmt(mbps(size, down.tern.at(-1)!.seconds))} MB/s ${up.toolName} ${fmt(mbps(size, down.tool.at(-1)!.seconds))} MB/s`,
          );
          await driver.delete(key);
          if (kind === 'fs') rmSync(join(dir, 'fs-root', CONTAINER, toolKey), { force: true });
          else await driver.delete(toolKey);
        }
        rows.push(up, down);
      }
      rmSync(file);
    }
  } finally {
    for (const d of drivers.values()) await d.close().catch(() => {});
    await removeContainers(kinds);
    rmSync(dir, { recursive: true, force: true });
  }
  report(rows, idle, rounds);
}

async function removeContainers(kinds: Kind[]): Promise<void> {
  if (!kinds.includes('swift') && !kinds.includes('s3')) return;
  const { token, storageUrl } = await swiftToken(1);
  // The s3api keeps multipart segments in "<bucket>+segments"; both must be empty by now.
  for (const c of [CONTAINER, `${CONTAINER}+segments`]) {
    const url = `${storageUrl}/${encodeURIComponent(c)}`;
    const list = await fetch(`${url}?format=json`, { headers: { 'x-auth-token': token } });
    const names = list.status === 200 ? ((await list.json()) as { name: string }[]) : [];
    for (const o of names) {
      await fetch(`${url}/${encodeURIComponent(o.name)}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
    }
    await fetch(url, { method: 'DELETE', headers: { 'x-auth-token': token } });
  }
}

function report(rows: Row[], idle: Map<Kind, number>, rounds: number): void {
  const best = (xs: Run[]) => xs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const peak = (xs: Run[]) => Math.max(...xs.map((x) => x.rss));
  console.log(
    `\nStorage drivers, one object per transfer, best of ${rounds} round(s); Tern RSS = peak of the transfer's own process; CPU s of the best round's process`,
  );
  console.log(
    'driver  size      op         tern MB/s  tool        tool MB/s  tern/tool  tern CPU s  tool CPU s  tern peak RSS  tool peak RSS',
  );
  for (const r of rows) {
    const t = best(r.tern);
    const c = best(r.tool);
    const size = r.sizeMiB * MiB;
    console.log(
      `${r.kind.padEnd(8)}${`${r.sizeMiB} MiB`.padEnd(10)}${r.op.padEnd(11)}${fmt(mbps(size, t.seconds)).padStart(9)}  ${r.toolName.padEnd(10)}` +
        `${fmt(mbps(size, c.seconds)).padStart(10)}${fmt(c.seconds / t.seconds, 2).padStart(11)}` +
        `${fmt(t.cpu, 1).padStart(12)}${fmt(c.cpu, 1).padStart(12)}` +
        `${`${fmt(peak(r.tern))} MiB`.padStart(15)}${`${fmt(peak(r.tool))} MiB`.padStart(15)}`,
    );
  }
  for (const [kind, rss] of idle) console.log(`idle ${kind} child (load + construct + one HEAD): ${fmt(rss)} MiB`);
}

if (process.argv[2] === 'child') await child(process.argv.slice(3));
else await main();
