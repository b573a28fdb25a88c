// Read load on the API: GET list and show at a fixed request rate against a region whose metadata
// is in PostgreSQL, for a fixed time, printing p50/p90/p99/max latency and any errors.
//
// Run: node_modules/.bin/node bench/load.ts   (env LOAD_RPS=200, LOAD_SECONDS=60, LOAD_BACKUPS=2000,
//      TERN_BENCH_PG_URL=postgres://... default: the test server of scripts/pg-test.sh, started when needed)

import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { loadConfig } from '../src/config.ts';
import { insertBackup, newBackupRow } from '../src/db/repos/backups.ts';
import { createLogger } from '../src/logger.ts';
import { startTern } from '../src/main/server.ts';
import { runAsTern } from './lib.ts';

// Tern runs in this process: measure it with the settings bin/tern gives it in production.
runAsTern();

const RPS = Number(process.env.LOAD_RPS ?? 200);
const SECONDS = Number(process.env.LOAD_SECONDS ?? 60);
const BACKUPS = Number(process.env.LOAD_BACKUPS ?? 2000);
const ROOT = resolve(import.meta.dirname, '..');

function pgUrl(): string {
  if (process.env.TERN_BENCH_PG_URL) return process.env.TERN_BENCH_PG_URL;
  execFileSync('bash', [join(ROOT, 'scripts/pg-test.sh'), 'start'], { stdio: 'inherit' });
  return execFileSync('bash', [join(ROOT, 'scripts/pg-test.sh'), 'url'], { encoding: 'utf8' }).trim();
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const base = pgUrl();
const dbName = `tern_load_${randomBytes(4).toString('hex')}`;
execFileSync('psql', [base, '-qc', `CREATE DATABASE ${dbName}`]);
const dir = mkdtempSync(join(tmpdir(), 'tern-load-'));
const token = randomBytes(16).toString('hex');
const file = join(dir, 'tern.json');
writeFileSync(
  file,
  JSON.stringify({
    region: 'load',
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: dir,
    database: { url: base.replace(/\/[^/]*$/, `/${dbName}`) },
    auth: { tokens: [{ token, project: 'p1', roles: ['member'] }] },
    worker: { enabled: false },
    logLevel: 'warn',
  }),
);
const tern = await startTern(loadConfig({ file }), { logger: createLogger('warn') });
try {
  const db = tern.container.db.kysely;
  const ids: string[] = [];
  for (let i = 0; i < BACKUPS; i += 500) {
    const rows = Array.from({ length: Math.min(500, BACKUPS - i) }, (_, j) =>
      newBackupRow({
        id: randomUUID(),
        project_id: j % 10 === 0 ? 'p2' : 'p1',
        name: `load-${i + j}`,
        status: 'COMPLETED',
        size_bytes: 1e6,
      }),
    );
    await db.transaction().execute(async (trx) => {
      for (const r of rows) await insertBackup(trx, r);
    });
    ids.push(...rows.filter((r) => r.project_id === 'p1').map((r) => r.id));
  }
  console.log(
    `load: ${BACKUPS} backups in PostgreSQL; ${RPS} requests/s for ${SECONDS} s, half list (limit 20, random marker), half show`,
  );
  const agent = new Agent({ connections: 64 });
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  const inflight = new Set<Promise<void>>();
  let errors = 0;
  const started = performance.now();
  const total = RPS * SECONDS;
  for (let n = 0; n < total; n++) {
    const due = started + (n * 1000) / RPS;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const id = ids[Math.floor(Math.random() * ids.length)];
    const path = n % 2 === 0 ? `/v1.0/p1/backups?limit=20&marker=${id}` : `/v1.0/p1/backups/${id}`;
    // Latency counts from when the request was due, so a stalled server cannot hide its queue.
    const p = request(`${tern.url}${path}`, { dispatcher: agent, headers: { 'x-auth-token': token } })
      .then(async (res) => {
        await res.body.dump();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        latencies.push(performance.now() - due);
      })
      .catch(() => {
        errors++;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  console.log(
    `requests ${latencies.length + errors} in ${elapsed.toFixed(1)} s (${((latencies.length + errors) / elapsed).toFixed(0)}/s); statuses ${JSON.stringify(Object.fromEntries(statuses))}; connection errors ${errors}`,
  );
  console.log(
    `latency p50 ${ms(percentile(latencies, 50))}  p90 ${ms(percentile(latencies, 90))}  p99 ${ms(percentile(latencies, 99))}  max ${ms(latencies[latencies.length - 1])}`,
  );
  console.log(`peak RSS of the process (API + load generator) ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
  await agent.close();
  if (errors > 0 || [...statuses.keys()].some((s) => s !== 200)) process.exitCode = 1;
} finally {
  await tern.close();
  execFileSync('psql', [base, '-qc', `DROP DATABASE ${dbName}`]);
  rmSync(dir, { recursive: true, force: true });
}
