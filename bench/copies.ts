// Many copies at once: BENCH_COPIES (50) backups of BENCH_SIZE_MIB (16) MiB in region1's Swift are
// requested in one burst (POST /backups, the blueprint's "location" form) from a region2 whose
// API runs as one `tern serve` process (TERN_WORKER=off) and whose copies run in BENCH_WORKERS (2)
// `src/main/worker.ts` processes, PostgreSQL metadata, copy.maxRunning BENCH_MAX_RUNNING (3).
// Every worker has more slots than the cap (worker.concurrency BENCH_WORKER_CONCURRENCY, 4), so
// the cap is what limits. Prints:
//   - time to accept all copies, POST latency min/p50/p99/max (each POST HEADs the source and its segments)
//   - time until all COMPLETED, aggregate MB/s (bytes copied / time from the first POST)
//   - copy jobs running at once, sampled from the jobs table every 50 ms (must stay <= the cap)
//   - attempts per job, longest queue wait (job created -> first seen running, sampled)
//   - every target checksum (row, and a HEAD of the target object) against its source's
// then a quota run: with the quota set to copies + 10 (at most half the copies more), the same
// burst again must find room for exactly those 10 and be refused 413 overLimit for the rest.
//
// Run: node_modules/.bin/node bench/copies.ts
//   env BENCH_COPIES=50 BENCH_SIZE_MIB=16 BENCH_SEGMENT_MIB=4 BENCH_MAX_RUNNING=3 BENCH_WORKERS=2
//       BENCH_WORKER_CONCURRENCY=4 TERN_BENCH_PG_URL=postgres://... (default: scripts/pg-test.sh's server)
// Starts (or reuses) scripts/swift-regions.sh and scripts/pg-test.sh; removes its containers,
// database and folder at the end.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { COPY_JOB } from '../src/backups/jobs.ts';
import { connectDb, type Db } from '../src/db/connect.ts';
import type { SegmentInfo } from '../src/storage/driver.ts';
import { SwiftDriver } from '../src/storage/drivers/swift.ts';
import { segmentKey } from '../src/storage/keys.ts';
import { fmt, log, MiB, NODE, ROOT, swiftToken, ternEnv, ternNodeFlags } from './lib.ts';

const COPIES = Number(process.env.BENCH_COPIES ?? 50);
const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 16) * MiB;
const SEGMENT = Number(process.env.BENCH_SEGMENT_MIB ?? 4) * MiB;
const MAX_RUNNING = Number(process.env.BENCH_MAX_RUNNING ?? 3);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_WORKER_CONCURRENCY ?? 4);
/** The quota leaves room for this many more after the first burst; the quota run's burst must find exactly that. */
const HEADROOM = Math.min(10, Math.floor(COPIES / 2));
const QUOTA = COPIES + HEADROOM;
const RUN = randomBytes(4).toString('hex');
const SOURCE = `tern_bench_copies_${RUN}_src`;
const TARGET = `tern_bench_copies_${RUN}`;
const TOKEN = randomBytes(16).toString('hex');

function swift(region: 1 | 2, container: string) {
  return {
    driver: 'swift' as const,
    authUrl: `http://127.0.0.1:${8080 + region}/auth/v1.0`,
    authVersion: '1' as const,
    user: 'test:tester',
    key: 'testing',
    container,
  };
}

function script(name: string, ...args: string[]): string {
  return execFileSync('bash', [join(ROOT, 'scripts', name), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** One synthetic backup in region1, laid out as Tern writes it: segments and an SLO manifest, owned by p1. */
async function seedOne(driver: SwiftDriver): Promise<{ location: string; etag: string }> {
  const id = crypto.randomUUID();
  const segments: SegmentInfo[] = [];
  for (let n = 1, done = 0; done < SIZE; n++) {
    const size = Math.min(SEGMENT, SIZE - done);
    const body = randomFillSync(Buffer.alloc(size));
    const put = await driver.put(segmentKey(id, n), Readable.from([body]), { size });
    segments.push({ key: segmentKey(id, n), size: put.size, etag: put.etag });
    done += size;
  }
  const key = `${id}.xbstream.gz`;
  const metadata = { datastore: 'mariadb', 'datastore-version': '10.11', 'project-id': 'p1' };
  const manifest = await driver.putManifest(key, segments, { metadata });
  return { location: driver.locationOf(key), etag: manifest.etag };
}

/** Starts a child whose output goes to a file; resolves once `ready` appears in it (or at once without). */
async function start(argv: string[], env: NodeJS.ProcessEnv, logFile: string, ready?: RegExp): Promise<ChildProcess> {
  const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  for (const s of [child.stdout!, child.stderr!]) s.on('data', (d) => (out += d));
  child.on('exit', () => writeFileSync(logFile, out));
  for (let i = 0; ready && !ready.test(out); i++) {
    if (child.exitCode !== null || i > 600) {
      await stop(child);
      throw new Error(`${argv.join(' ')} did not start: ${out.slice(-2000)}`);
    }
    await sleep(50);
  }
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

/** POSTs one create per location, all at once; returns each status and latency. */
async function burst(api: string, agent: Agent, locations: string[], tag: string) {
  const started = performance.now();
  const results = await Promise.all(
    locations.map(async (location, i) => {
      const t = performance.now();
      const res = await request(`${api}/v1.0/p1/backups`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ backup: { name: `${tag}-${i}`, location } }),
      });
      const body = (await res.body.json()) as any;
      return { status: res.statusCode, body, ms: performance.now() - t, at: performance.now() - started };
    }),
  );
  return { started, results };
}

/** Samples the copy jobs every 50 ms until stopped: most running at once, when each was first seen running. */
function sampler(db: Db) {
  const firstRunning = new Map<number, number>();
  let maxRunning = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const rows = await db.kysely.selectFrom('jobs').select(['id', 'status']).where('kind', '=', COPY_JOB).execute();
      const now = Date.now();
      const running = rows.filter((r) => r.status === 'running');
      maxRunning = Math.max(maxRunning, running.length);
      for (const r of running) if (!firstRunning.has(r.id)) firstRunning.set(r.id, now);
      await sleep(50);
    }
  })();
  return {
    firstRunning,
    max: () => maxRunning,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function waitAll(db: Db, ids: string[]): Promise<void> {
  while (ids.length > 0) {
    const rows = await db.kysely.selectFrom('backups').select('status').where('id', 'in', ids).execute();
    if (rows.every((r) => r.status === 'COMPLETED' || r.status === 'FAILED')) return;
    await sleep(100);
  }
}

async function dropContainer(region: 1 | 2, container: string): Promise<void> {
  const { token, storageUrl } = await swiftToken(region);
  const url = `${storageUrl}/${container}`;
  const list = await fetch(`${url}?format=json`, { headers: { 'x-auth-token': token } });
  const names = list.status === 200 ? ((await list.json()) as { name: string }[]) : [];
  for (const o of names)
    await fetch(`${url}/${encodeURIComponent(o.name)}`, { method: 'DELETE', headers: { 'x-auth-token': token } });
  await fetch(url, { method: 'DELETE', headers: { 'x-auth-token': token } });
}

async function main(): Promise<void> {
  script('swift-regions.sh', 'start');
  if (!process.env.TERN_BENCH_PG_URL) script('pg-test.sh', 'start');
  const base = process.env.TERN_BENCH_PG_URL ?? script('pg-test.sh', 'url');
  const dbName = `tern_bench_copies_${RUN}`;
  execFileSync('psql', [base, '-qc', `CREATE DATABASE ${dbName}`]);
  const dbUrl = base.replace(/\/[^/]*$/, `/${dbName}`);
  const dir = mkdtempSync(join(tmpdir(), 'tern-bench-copies-'));
  const source = new SwiftDriver(swift(1, SOURCE));
  const target = new SwiftDriver(swift(2, TARGET));
  const children: ChildProcess[] = [];
  const agent = new Agent({ connections: COPIES * 2 });
  let db: Db | undefined;
  try {
    log(`seeding ${COPIES} x ${SIZE / MiB} MiB backups in region1 (${SOURCE})`);
    const sources: Array<{ location: string; etag: string }> = [];
    for (let i = 0; i < COPIES; i += 4)
      sources.push(...(await Promise.all(Array.from({ length: Math.min(4, COPIES - i) }, () => seedOne(source)))));
    const port = await freePort();
    const config = join(dir, 'tern.json');
    writeFileSync(
      config,
      JSON.stringify({
        region: 'region2',
        listen: { host: '127.0.0.1', port },
        dataDir: dir,
        database: { url: dbUrl },
        storage: swift(2, TARGET),
        catalog: [{ region: 'region1', storage: swift(1, SOURCE) }],
        auth: { tokens: [{ token: TOKEN, project: 'p1', roles: ['member'] }] },
        worker: { concurrency: CONCURRENCY, pollMs: 200 },
        copy: { maxRunning: MAX_RUNNING },
        quotas: { backupsPerProject: QUOTA },
        logLevel: 'warn',
      }),
    );
    const env = { ...ternEnv(), TERN_CONFIG: config };
    const flags = ternNodeFlags();
    const cli = [NODE, ...flags, join(ROOT, 'src/main/cli.ts'), 'serve'];
    children.push(await start(cli, { ...env, TERN_WORKER: 'off' }, join(dir, 'api.log'), /serving on/));
    for (let i = 0; i < WORKERS; i++) {
      const argv = [NODE, ...flags, join(ROOT, 'src/main/worker.ts')];
      children.push(await start(argv, { ...env, TERN_LOG_LEVEL: 'info' }, join(dir, `worker${i}.log`), /tern worker started/));
    }
    db = await connectDb(dbUrl, { migrate: false });
    const api = `http://127.0.0.1:${port}`;

    log(`${COPIES} POSTs at once`);
    const sample = sampler(db);
    const { started, results } = await burst(
      api,
      agent,
      sources.map((s) => s.location),
      'copy',
    );
    const refused = results.filter((r) => r.status !== 202);
    if (refused.length > 0) throw new Error(`refused: ${JSON.stringify(refused[0].body)}`);
    const acceptAll = Math.max(...results.map((r) => r.at)) / 1000;
    const ids = results.map((r) => r.body.backup.id as string);
    await waitAll(db, ids);
    const allDone = (performance.now() - started) / 1000;
    await sample.stop();

    const rows = await db.kysely.selectFrom('backups').selectAll().where('id', 'in', ids).execute();
    const jobs = await db.kysely.selectFrom('jobs').selectAll().where('kind', '=', COPY_JOB).execute();
    const etagOf = new Map(sources.map((s) => [s.location, s.etag]));
    let matching = 0;
    for (const row of rows) {
      const key = row.location
        ? decodeURIComponent(row.location.slice(row.location.indexOf(`/${TARGET}/`) + TARGET.length + 2))
        : '';
      const head = key ? await target.head(key) : null;
      if (row.status === 'COMPLETED' && row.checksum === etagOf.get(row.source_location!) && head?.etag === row.checksum)
        matching++;
    }
    const attempts = new Map<number, number>();
    for (const j of jobs) attempts.set(j.attempts, (attempts.get(j.attempts) ?? 0) + 1);
    const waits = jobs.map((j) => (sample.firstRunning.get(j.id) ?? Number.NaN) - Date.parse(j.created_at));
    const latencies = results.map((r) => r.ms).sort((a, b) => a - b);
    const failed = rows.filter((r) => r.status === 'FAILED');

    log(`quota run: ${COPIES} more POSTs at once, ${COPIES} of ${QUOTA} used`);
    const quotaRun = await burst(
      api,
      agent,
      sources.map((s) => s.location),
      'over',
    );
    const accepted = quotaRun.results.filter((r) => r.status === 202);
    const over = quotaRun.results.filter((r) => r.status === 413 && r.body?.overLimit?.code === 413);
    const held = await db.kysely
      .selectFrom('backups')
      .select('id')
      .where('project_id', '=', 'p1')
      .where('deleted_at', 'is', null)
      .execute();
    await waitAll(
      db,
      accepted.map((r) => r.body.backup.id),
    );

    const mb = (COPIES * SIZE) / 1e6;
    console.log(
      `\n${COPIES} copies of ${SIZE / MiB} MiB (${SIZE / SEGMENT} segments each) region1 -> region2 Swift, PostgreSQL metadata,`,
    );
    console.log(
      `${WORKERS} worker processes x concurrency ${CONCURRENCY}, copy.maxRunning ${MAX_RUNNING}, copy.parallelism 4 (default)`,
    );
    console.log(
      `accepted ${results.length}/${COPIES} (202) in ${fmt(acceptAll, 2)} s; POST latency min ${fmt(latencies[0])} ms, p50 ${fmt(pct(latencies, 50))} ms, p99 ${fmt(pct(latencies, 99))} ms, max ${fmt(latencies[latencies.length - 1])} ms`,
    );
    console.log(
      `all ${COPIES} COMPLETED ${fmt(allDone, 1)} s after the first POST (${failed.length} FAILED); aggregate ${fmt(mb / allDone, 1)} MB/s (${fmt(mb)} MB)`,
    );
    console.log(`copy jobs running at once (sampled every 50 ms): max ${sample.max()} (cap ${MAX_RUNNING})`);
    console.log(`attempts per job: ${[...attempts].map(([a, n]) => `${a} attempt${a === 1 ? '' : 's'} x${n}`).join(', ')}`);
    console.log(
      `queue wait (created -> first seen running): longest ${fmt(Math.max(...waits) / 1000, 1)} s, median ${fmt(
        pct(
          [...waits].sort((a, b) => a - b),
          50,
        ) / 1000,
        1,
      )} s`,
    );
    console.log(
      `checksums: ${matching}/${COPIES} targets COMPLETED with the source's checksum (row and HEAD of the target object)`,
    );
    console.log(
      `quota run (quota ${QUOTA}, ${COPIES} held): ${COPIES} POSTs at once -> ${accepted.length} accepted (202), ${over.length} refused (413 overLimit); project holds ${held.length}`,
    );
    if (sample.max() > MAX_RUNNING || matching !== COPIES || accepted.length !== HEADROOM || over.length !== COPIES - HEADROOM) {
      console.log('FAILED: a figure above is not what it must be');
      process.exitCode = 1;
    }
  } finally {
    for (const c of children.reverse()) await stop(c);
    await db?.close();
    await agent.close();
    await Promise.all([source.close(), target.close()]);
    await Promise.all([dropContainer(1, SOURCE), dropContainer(2, TARGET)]);
    execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
