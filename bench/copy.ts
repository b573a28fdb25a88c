// Cross-region copy: Tern's copy engine against rclone and a plain curl | curl stream, between the
// two loopback Swift clusters (region1 :8081 -> region2 :8082), on synthetic backups laid out as
// Tern writes them (64 MiB segments "<id>_%08d" joined by an SLO manifest "<id>.xbstream.gz.enc").
//
//   Tern   copyBackupTask (src/backups/tasks/copy.ts) in a child process, SQLite metadata,
//          per-segment MD5+size checks and the manifest checksum checked against the source;
//          timed as the job (a worker starts Node and loads Tern once, not per copy), with the
//          whole process's time printed after the table
//   rclone rclone copyto r1:<src>/<manifest> r2:<dst>/<manifest> (swift remotes, auth v1)
//   curl   curl GET region1 | curl -T - PUT region2 (one chunked upload, no checks)
//
// After the table, a bound per size: both Swift clusters share the machine's cores with the
// contenders, so no copy can beat the CPU its servers and Tern spend divided by the cores.
//
// Then a resume test: the Tern copy is SIGKILLed at ~90% of its segments and run again; it prints
// how many segments were sent again (at most the ones in flight, i.e. <= parallelism).
//
// Run: node_modules/.bin/node bench/copy.ts
//   env BENCH_SIZES=1024,4096 (MiB)  BENCH_PARALLELISM=4 (config copy.parallelism default)
//       BENCH_RUNS=3 (rounds per size: Tern, rclone and curl in turn; each row is the contender's
//       run of median time)
// Needs scripts/swift-regions.sh start; installs rclone from Debian when missing. Everything written
// (source and target containers, the SQLite files) is removed at the end.

import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync, randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { SegmentInfo, StorageDriver } from '../src/storage/driver.ts';
import { SwiftDriver } from '../src/storage/drivers/swift.ts';
import { segmentKey } from '../src/storage/keys.ts';
import {
  fmt,
  log,
  type Measured,
  MiB,
  mbps,
  measure,
  measurePipeline,
  NODE,
  ROOT,
  swiftServersCpuSeconds,
  swiftToken,
  ternEnv,
  ternNodeFlags,
} from './lib.ts';

const SOURCE = 'tern-bench-copy-src';
const TARGET = 'tern-bench-copy';
const SEGMENT = 64 * MiB;
const PARALLELISM = Number(process.env.BENCH_PARALLELISM ?? 4);
// Every contender's time varies from run to run (rclone's by up to 30% on a 2-core machine), and
// Tern's peak RSS by up to 20 MiB (when V8 collects the chunks it has read): one run each cannot
// give a ratio, or tell whether RSS grows with the size. Rounds run the contenders in turn, so a
// slow spell of the machine falls on all of them.
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));

function swift(region: 1 | 2, container: string): SwiftDriver {
  const authUrl = `http://127.0.0.1:${8080 + region}/auth/v1.0`;
  return new SwiftDriver({ authUrl, authVersion: '1', user: 'test:tester', key: 'testing', container });
}

/**
 * Child: runs the copy job for backupId (inserting its row on first run) and prints its figures.
 * With a log file, appends "start <key>" / "done <key>" for every segment PUT.
 */
async function child([dbFile, backupId, location, logFile]: string[]): Promise<void> {
  const { connectDb } = await import('../src/db/connect.ts');
  const { findBackup, insertBackup, newBackupRow } = await import('../src/db/repos/backups.ts');
  const { Catalog } = await import('../src/regions/catalog.ts');
  const { copyBackupTask } = await import('../src/backups/tasks/copy.ts');
  const db = await connectDb(`sqlite:${dbFile}`, { migrate: true });
  if (!(await findBackup(db.kysely, backupId))) {
    await insertBackup(db.kysely, newBackupRow({ id: backupId, project_id: 'bench', name: 'copy', source_location: location }));
  }
  const real = swift(2, TARGET);
  const source = swift(1, SOURCE);
  let puts = 0;
  const target: StorageDriver = Object.create(real);
  target.put = async (key, body, options) => {
    if (logFile) appendFileSync(logFile, `start ${key}\n`);
    const result = await real.put(key, body, options);
    puts++;
    if (logFile) appendFileSync(logFile, `done ${key}\n`);
    return result;
  };
  const catalog = new Catalog([
    { region: 'region2', driver: real },
    { region: 'region1', driver: source },
  ]);
  const task = copyBackupTask({ db, catalog, target, parallelism: PARALLELISM });
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  await task.run({ backupId }, { jobId: 1, attempt: 1, finalAttempt: false, signal: new AbortController().signal });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const row = await findBackup(db.kysely, backupId);
  await Promise.all([real.close(), source.close(), db.close()]);
  const figures = {
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    puts,
    status: row?.status,
    checksum: row?.checksum,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(JSON.stringify(figures));
}

/** Writes a synthetic segmented backup of sizeMiB random bytes into region1. */
async function seed(driver: SwiftDriver, sizeMiB: number): Promise<{ key: string; etag: string; segments: SegmentInfo[] }> {
  const id = randomUUID();
  const segments: SegmentInfo[] = [];
  const count = Math.ceil((sizeMiB * MiB) / SEGMENT);
  const block = Buffer.alloc(4 * MiB);
  for (let n = 1; n <= count; n++) {
    const size = Math.min(SEGMENT, sizeMiB * MiB - (n - 1) * SEGMENT);
    const body = Readable.from(
      (function* () {
        for (let done = 0; done < size; done += block.length) {
          randomFillSync(block);
          yield Buffer.from(block.subarray(0, Math.min(block.length, size - done)));
        }
      })(),
    );
    const key = segmentKey(id, n);
    const put = await driver.put(key, body, { size });
    segments.push({ key, size: put.size, etag: put.etag });
  }
  const key = `${id}.xbstream.gz.enc`;
  const manifest = await driver.putManifest(key, segments, { metadata: { datastore: 'mariadb', 'datastore-version': '10.11' } });
  return { key, etag: manifest.etag, segments };
}

interface Result {
  label: string;
  seconds: number;
  /** CPU seconds of the contender's processes. */
  cpuSeconds: number;
  /** CPU seconds the Swift servers of both regions spent meanwhile. */
  serversCpuSeconds?: number;
  peakRssMiB: number;
  note?: string;
}

/** Runs a contender and adds what the Swift servers spent meanwhile. */
async function withServersCpu<R extends Result>(run: () => Promise<R>): Promise<R> {
  const before = swiftServersCpuSeconds();
  const result = await run();
  return { ...result, serversCpuSeconds: swiftServersCpuSeconds() - before };
}

/**
 * Tern's row is the copy job as a running worker runs it (from authenticating to both regions to
 * the verified manifest); its process, which also starts Node, loads Tern's modules and migrates
 * SQLite (once per worker in production, not per copy), is kept beside it.
 */
async function tern(dir: string, location: string): Promise<Result & { checksum: string; process: Measured }> {
  const backupId = randomUUID();
  const dbFile = join(dir, `${backupId}.sqlite`);
  const m = await measure([NODE, ...ternNodeFlags(), import.meta.filename, 'child', dbFile, backupId, location], ternEnv());
  const f = JSON.parse(m.stdout) as { seconds: number; cpuSeconds: number; status: string; checksum: string; maxRssMiB: number };
  if (f.status !== 'COMPLETED') throw new Error(`Tern copy ended ${f.status}`);
  // The copy's own objects are removed before the next contender runs.
  await swift(2, TARGET).delete(targetKeyOf(backupId, location));
  return {
    label: 'Tern copy job',
    seconds: f.seconds,
    cpuSeconds: f.cpuSeconds,
    peakRssMiB: f.maxRssMiB,
    checksum: f.checksum,
    process: m,
    note: `process ${fmt(m.seconds, 1)} s, ${fmt(m.cpuSeconds, 1)} CPU s`,
  };
}

type TernRun = Awaited<ReturnType<typeof tern>>;

function targetKeyOf(backupId: string, location: string): string {
  const suffix = location.slice(location.lastIndexOf('/') + 1).replace(/^[^.]*/, '');
  return `${backupId}${suffix}`;
}

async function rclone(key: string): Promise<Result> {
  const env = { ...process.env };
  for (const [name, port] of [
    ['R1', 8081],
    ['R2', 8082],
  ] as const) {
    env[`RCLONE_CONFIG_${name}_TYPE`] = 'swift';
    env[`RCLONE_CONFIG_${name}_AUTH`] = `http://127.0.0.1:${port}/auth/v1.0`;
    env[`RCLONE_CONFIG_${name}_USER`] = 'test:tester';
    env[`RCLONE_CONFIG_${name}_KEY`] = 'testing';
    env[`RCLONE_CONFIG_${name}_AUTH_VERSION`] = '1';
  }
  const m = await measure(
    ['rclone', '--config', '/dev/null', 'copyto', `r1:${SOURCE}/${key}`, `r2:${TARGET}/rclone-${key}`],
    env,
  );
  await swift(2, TARGET).delete(`rclone-${key}`);
  return { label: 'rclone copyto', seconds: m.seconds, cpuSeconds: m.cpuSeconds, peakRssMiB: m.peakRssMiB };
}

async function curlStream(key: string): Promise<Result> {
  const [a, b] = await Promise.all([swiftToken(1), swiftToken(2)]);
  const m = await measurePipeline(
    ['curl', '-sS', '-f', '-H', `X-Auth-Token: ${a.token}`, `${a.storageUrl}/${SOURCE}/${key}`],
    ['curl', '-sS', '-f', '-H', `X-Auth-Token: ${b.token}`, '-T', '-', `${b.storageUrl}/${TARGET}/curl-${key}`],
  );
  await swift(2, TARGET).delete(`curl-${key}`);
  return {
    label: 'curl | curl',
    seconds: m.seconds,
    cpuSeconds: m.cpuSeconds,
    peakRssMiB: Math.max(...m.peakRssMiB),
    note: `GET ${fmt(m.peakRssMiB[0])} + PUT ${fmt(m.peakRssMiB[1])} MiB`,
  };
}

/** SIGKILLs a Tern copy after ~90% of its segments are done, runs it again, counts segments sent twice. */
async function resume(dir: string, location: string, total: number): Promise<string> {
  const backupId = randomUUID();
  const dbFile = join(dir, `${backupId}.sqlite`);
  const logFile = join(dir, `${backupId}.log`);
  const killAt = Math.floor(total * 0.9);
  const argv = [...ternNodeFlags(), import.meta.filename, 'child', dbFile, backupId, location, logFile];
  const first = spawn(NODE, argv, { stdio: 'ignore', env: ternEnv() });
  const killed = new Promise<void>((done) => first.on('exit', () => done()));
  for (;;) {
    await new Promise((r) => setTimeout(r, 25));
    const done = readLog(logFile).filter((l) => l.startsWith('done ')).length;
    if (done >= killAt) break;
    if (first.exitCode !== null) throw new Error('the copy finished before it could be killed');
  }
  first.kill('SIGKILL');
  await killed;
  const lines = readLog(logFile);
  const startedBefore = new Set(lines.filter((l) => l.startsWith('start ')).map((l) => l.slice(6)));
  const doneBefore = new Set(lines.filter((l) => l.startsWith('done ')).map((l) => l.slice(5)));
  const inFlight = [...startedBefore].filter((k) => !doneBefore.has(k)).length;
  rmSync(logFile);
  const m = await measure([NODE, ...argv.slice(0, -1), logFile], ternEnv());
  const f = JSON.parse(m.stdout) as { status: string; puts: number };
  const again = readLog(logFile)
    .filter((l) => l.startsWith('start '))
    .map((l) => l.slice(6));
  const resent = again.filter((k) => startedBefore.has(k));
  const resentDone = resent.filter((k) => doneBefore.has(k)).length;
  await swift(2, TARGET).delete(targetKeyOf(backupId, location));
  return (
    `resume: ${total} segments, killed (SIGKILL) after ${doneBefore.size} finished with ${inFlight} in flight; ` +
    `the restart sent ${f.puts} segments, ${resent.length} of them sent before (${resentDone} had finished but were not yet recorded); ` +
    `parallelism ${PARALLELISM}; final status ${f.status}`
  );
}

function readLog(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const sizes = (process.env.BENCH_SIZES ?? '1024,4096').split(',').map(Number);
  // Before seeding: otherwise a missing rclone shows only after the first Tern copy.
  const ensure = spawnSync('bash', ['-c', 'source "$1" && apt_ensure rclone', 'bash', join(ROOT, 'scripts/lib.sh')], {
    stdio: 'inherit',
  });
  if (ensure.status !== 0) throw new Error('could not install rclone (apt_ensure rclone failed)');
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? '/var/tmp', 'tern-bench-copy-'));
  const maxFileSize = await maxObjectSize(2);
  const source = swift(1, SOURCE);
  const lines: string[] = [];
  const table: { sizeMiB: number; results: [TernRun, ...Result[]]; ternRssMiB: number[] }[] = [];
  try {
    for (const sizeMiB of sizes) {
      const backup = await seed(source, sizeMiB);
      const location = source.locationOf(backup.key);
      log(`seeded ${sizeMiB} MiB in ${backup.segments.length} segments: ${location}`);
      // One curl PUT is one object, and Swift refuses one above max_file_size (413).
      const withCurl = sizeMiB * MiB <= maxFileSize;
      if (!withCurl) {
        lines.push(
          `${sizeMiB} MiB: no curl | curl run, the object would exceed region2's max_file_size (${fmt(maxFileSize / MiB)} MiB)`,
        );
      }
      const ternRuns: TernRun[] = [];
      const rcloneRuns: Result[] = [];
      const curlRuns: Result[] = [];
      const rate = (r: Result) => `${fmt(mbps(sizeMiB * MiB, r.seconds))} MB/s`;
      for (let round = 1; round <= RUNS; round++) {
        const t = await withServersCpu(() => tern(dir, location));
        if (t.checksum !== backup.etag) throw new Error(`Tern copy checksum ${t.checksum} != source ${backup.etag}`);
        ternRuns.push(t);
        const r = await withServersCpu(() => rclone(backup.key));
        rcloneRuns.push(r);
        const c = withCurl ? await withServersCpu(() => curlStream(backup.key)) : undefined;
        if (c) curlRuns.push(c);
        log(
          `${sizeMiB} MiB round ${round}: tern ${rate(t)} (${fmt(t.peakRssMiB)} MiB), rclone ${rate(r)}${c ? `, curl ${rate(c)}` : ''}`,
        );
      }
      const results: [TernRun, ...Result[]] = [
        medianRun(ternRuns),
        medianRun(rcloneRuns),
        ...(withCurl ? [medianRun(curlRuns)] : []),
      ];
      table.push({ sizeMiB, results, ternRssMiB: ternRuns.map((r) => r.peakRssMiB) });
      if (sizeMiB === sizes[0]) lines.push(await resume(dir, location, backup.segments.length));
      await source.delete(backup.key);
    }
  } finally {
    await source.close();
    rmSync(dir, { recursive: true, force: true });
    await dropContainers();
  }
  console.log(`\nCopy region1 -> region2 Swift, ${SEGMENT / MiB} MiB segments, Tern parallelism ${PARALLELISM}`);
  console.log(
    `CPU s: the contender's processes; Swift CPU s: both regions' servers meanwhile (${availableParallelism()} cores, so at most ${availableParallelism()} CPU s per second in all)`,
  );
  console.log('size      contender          seconds    MB/s   CPU s   Swift CPU s   peak RSS   Tern/this   notes');
  for (const { sizeMiB, results } of table) {
    const ternSeconds = results[0].seconds;
    for (const r of results) {
      console.log(
        `${`${sizeMiB} MiB`.padEnd(10)}${r.label.padEnd(17)}${fmt(r.seconds, 1).padStart(9)}${fmt(mbps(sizeMiB * MiB, r.seconds)).padStart(8)}` +
          `${fmt(r.cpuSeconds, 1).padStart(8)}${fmt(r.serversCpuSeconds ?? 0, 1).padStart(14)}` +
          `${`${fmt(r.peakRssMiB)} MiB`.padStart(11)}${`${fmt(r.seconds / ternSeconds, 2)}x`.padStart(12)}   ${r.note ?? ''}`,
      );
    }
  }
  for (const { sizeMiB, results } of table) {
    const ternProcess = results[0].process;
    console.log(
      `${sizeMiB} MiB Tern's whole process (Node's start, module loading and the SQLite migration too): ` +
        `${fmt(ternProcess.seconds, 1)} s, ${fmt(results[1].seconds / ternProcess.seconds, 2)}x rclone's throughput`,
    );
  }
  for (const { sizeMiB, results } of table) console.log(cpuBound(sizeMiB, results));
  const rss = table.map(({ sizeMiB, ternRssMiB }) => `${sizeMiB} MiB ${spread(ternRssMiB)} MiB`);
  console.log(`Tern peak RSS over ${RUNS} runs, min-max (median): ${rss.join(', ')}`);
  for (const l of lines) console.log(l);
}

/** The run of median time, its note extended with the spread of all runs' times. */
function medianRun<R extends Result>(runs: R[]): R {
  const median = middle([...runs].sort((a, b) => a.seconds - b.seconds));
  if (runs.length === 1) return median;
  const times = `median of ${runs.length} runs, ${spread(
    runs.map((r) => r.seconds),
    1,
  )} s`;
  return { ...median, note: median.note ? `${median.note}; ${times}` : times };
}

/** "min-max (median)" of a few figures. */
function spread(values: number[], digits = 0): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `${fmt(sorted[0], digits)}-${fmt(sorted[sorted.length - 1], digits)} (${fmt(middle(sorted), digits)})`;
}

/** The median of a sorted list (the lower one of an even count). */
function middle<T>(sorted: T[]): T {
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The largest object a region's Swift takes in one PUT (its /info max_file_size, as the driver reads it). */
async function maxObjectSize(region: 1 | 2): Promise<number> {
  const driver = swift(region, TARGET);
  try {
    return (await driver.limits()).maxSegmentSize;
  } finally {
    await driver.close();
  }
}

/**
 * What the cores allow: the two Swift clusters run on the same cores as the contenders, so a copy
 * cannot take less than the CPU it needs (Swift's servers' plus Tern's) over the cores.
 */
function cpuBound(sizeMiB: number, [tern, rcloneRun]: Result[]): string {
  const cores = availableParallelism();
  const servers = tern.serversCpuSeconds ?? 0;
  const floor = (servers + tern.cpuSeconds) / cores;
  return (
    `${sizeMiB} MiB bound: Swift's servers spent ${fmt(servers, 1)} CPU s on Tern's copy and Tern ${fmt(tern.cpuSeconds, 1)}; ` +
    `on ${cores} cores that takes at least ${fmt(floor, 1)} s (${fmt(mbps(sizeMiB * MiB, floor))} MB/s), ` +
    `${fmt(rcloneRun.seconds / floor, 2)}x rclone's time; with Swift's share alone, ${fmt((rcloneRun.seconds * cores) / servers, 2)}x`
  );
}

async function dropContainers(): Promise<void> {
  // rclone uploads an object above max_file_size as a DLO, its segments in "<container>_segments";
  // deleting the manifest leaves them.
  for (const [region, container] of [
    [1, SOURCE],
    [2, TARGET],
    [2, `${TARGET}_segments`],
  ] as const) {
    const { token, storageUrl } = await swiftToken(region);
    const url = `${storageUrl}/${container}`;
    const list = await fetch(`${url}?format=json`, { headers: { 'x-auth-token': token } });
    const names = list.status === 200 ? ((await list.json()) as { name: string }[]) : [];
    for (const o of names)
      await fetch(`${url}/${encodeURIComponent(o.name)}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
    await fetch(url, { method: 'DELETE', headers: { 'x-auth-token': token } });
  }
}

if (process.argv[2] === 'child') await child(process.argv.slice(3));
else await main();
