// Backup throughput: Trove's shell pipeline against Tern's runner, on the same MariaDB data set.
//
//   (a) Trove:  mariabackup --backup --stream=xbstream | gzip -6 | openssl enc -aes-256-cbc ... > file
//   (b) Tern:   mariabackup --backup --stream=xbstream -> parallel gzip (worker threads) -> our cipher -> file
//
// Run: node_modules/.bin/node bench/backup.ts   (env BENCH_ROWS=1048576, BENCH_ROUNDS=2, BENCH_LEVELS=6,1)
// Prints wall times, ratios, output sizes and Tern's peak RSS, and checks every output with
// `openssl enc -d | gzip -d` (the bytes must stay readable by Trove's tools).

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { mariadbRunner } from '../src/datastores/mariadb.ts';
import { BIN } from '../src/instances/binaries.ts';
import { adopt, type ManagedServer, mariadbClientConfig, startMariadb } from '../src/instances/provisioner.ts';
import { createEncryptStream } from '../src/streams/openssl-cipher.ts';
import { ROOT, runAsTern } from './lib.ts';

// Tern runs in this process: measure it with the settings bin/tern gives it in production.
runAsTern();

const ROWS = Number(process.env.BENCH_ROWS ?? 1 << 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const LEVELS = (process.env.BENCH_LEVELS ?? '6,1').split(',').map(Number);
const PASSWORD = randomBytes(12).toString('hex');
const KEY = randomBytes(16).toString('hex');

const dir = mkdtempSync(join(tmpdir(), 'tern-bench-backup-'));
chmodSync(dir, 0o711);
let server: ManagedServer | null = null;

async function cleanup(): Promise<void> {
  await server?.destroy().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
process.once('SIGINT', () => {
  void cleanup().then(() => process.exit(130));
});

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** Runs SQL through the mariadb client (password in a 0600 file). */
function sql(statements: string): void {
  const result = spawnSync(BIN.mariadb, [`--defaults-file=${join(dir, 'client.cnf')}`, '--batch'], { input: statements });
  if (result.status !== 0) throw new Error(`mariadb: ${result.stderr}`);
}

/** ~400 bytes a row, compressible about 2-3x like typical table data (hex ids, repeated text, numbers). */
function loadData(): void {
  const doublings = Math.ceil(Math.log2(ROWS / 1024));
  sql(`CREATE DATABASE bench; USE bench;
    CREATE TABLE t (id BIGINT PRIMARY KEY AUTO_INCREMENT, uid CHAR(32), status VARCHAR(16), amount DECIMAL(12,2),
      body VARCHAR(400), created DATETIME) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
    INSERT INTO t (uid, status, amount, body, created)
      SELECT MD5(seq), ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled'), seq * 3.7,
        CONCAT(MD5(RAND()), ' customer note ', REPEAT(CHAR(97 + seq % 26), 40), ' ', SHA2(RAND(), 256), ' ', MD5(RAND()), ' end'),
        NOW() - INTERVAL seq MINUTE
      FROM seq_1_to_1024;`);
  for (let i = 0; i < doublings; i++) {
    sql(`USE bench; INSERT INTO t (uid, status, amount, body, created)
      SELECT MD5(RAND()), status, amount + 1, CONCAT(MD5(RAND()), SUBSTRING(body, 33, 240), SHA2(RAND(), 256)), created
      FROM t LIMIT ${ROWS - 1024 * 2 ** i};`);
  }
}

interface Measure {
  seconds: number;
  bytes: number;
  peakRssMiB?: number;
}

async function trove(level: number, out: string): Promise<Measure> {
  const tmp = mkdtempSync(join(dir, 'trove-'));
  // Trove's pipeline as its backup strategy runs it; paths come in as $1..$4, the key via the environment.
  const script = `set -euo pipefail
${BIN.mariabackup} --defaults-file="$1" --backup --stream=xbstream --target-dir="$2" 2>"$2.log" \\
  | gzip -${level} \\
  | openssl enc -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt -pass env:TERN_BENCH_KEY > "$3"`;
  const started = process.hrtime.bigint();
  const child = spawn('bash', ['-c', script, 'trove', join(dir, 'client.cnf'), tmp, out], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TERN_BENCH_KEY: KEY },
    stdio: 'inherit',
  });
  const code = await new Promise((r) => child.on('close', r));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (code !== 0) throw new Error(`Trove pipeline failed (${code})`);
  rmSync(tmp, { recursive: true, force: true });
  return { seconds, bytes: statSync(out).size };
}

async function tern(level: number, out: string): Promise<Measure> {
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  const started = process.hrtime.bigint();
  try {
    const run = mariadbRunner.backupStream(server!, { password: PASSWORD, gzip: { level } });
    await pipeline(run.stream, createEncryptStream(KEY), createWriteStream(out));
    await run.done;
  } finally {
    clearInterval(sampler);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, bytes: statSync(out).size, peakRssMiB: peak / 1024 / 1024 };
}

/** mariabackup alone into /dev/null: the floor no compression scheme can beat. */
async function rawBackup(): Promise<Measure> {
  const tmp = mkdtempSync(join(dir, 'raw-'));
  const started = process.hrtime.bigint();
  const child = spawn(
    BIN.mariabackup,
    [`--defaults-file=${join(dir, 'client.cnf')}`, '--backup', '--stream=xbstream', `--target-dir=${tmp}`],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const closed = new Promise((r) => child.on('close', r));
  let bytes = 0;
  for await (const chunk of child.stdout) bytes += chunk.length;
  const code = await closed;
  if (code !== 0) throw new Error('mariabackup failed');
  rmSync(tmp, { recursive: true, force: true });
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, bytes };
}

/** openssl enc -d | gzip -d must read the file back to a complete xbstream. */
async function verify(file: string): Promise<number> {
  const openssl = spawn(
    'openssl',
    [
      'enc',
      '-d',
      '-aes-256-cbc',
      '-md',
      'sha512',
      '-pbkdf2',
      '-iter',
      '10000',
      '-salt',
      '-pass',
      'env:TERN_BENCH_KEY',
      '-in',
      file,
    ],
    {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TERN_BENCH_KEY: KEY },
    },
  );
  const gunzip = spawn('gzip', ['-d']);
  openssl.stdout.pipe(gunzip.stdin);
  const closed = Promise.all([openssl, gunzip].map((p) => new Promise((r) => p.on('close', r))));
  let bytes = 0;
  let head = Buffer.alloc(0);
  for await (const chunk of gunzip.stdout) {
    if (head.length < 8) head = Buffer.concat([head, chunk]).subarray(0, 8);
    bytes += chunk.length;
  }
  const codes = await closed;
  if (codes.some((c) => c !== 0) || head.toString('latin1') !== 'XBSTCK01')
    throw new Error(`${file} does not decrypt+gunzip to an xbstream`);
  return bytes;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

async function main(): Promise<void> {
  spawnSync('bash', [join(ROOT, 'scripts/datastores.sh')], { stdio: 'inherit' });
  log(`starting MariaDB in ${dir}`);
  server = await startMariadb({
    dataDir: join(dir, 'server'),
    rootPassword: PASSWORD,
    extraArgs: ['--innodb-buffer-pool-size=1G', '--innodb-log-file-size=512M', '--innodb-flush-log-at-trx-commit=0'],
  });
  writeFileSync(join(dir, 'client.cnf'), mariadbClientConfig(server, 'root', PASSWORD), { mode: 0o600 });
  let t = Date.now();
  loadData();
  log(`loaded ${ROWS} rows in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  // A clean shutdown checkpoints everything: every backup then copies the same bytes, instead of
  // later runs copying less redo log than earlier ones.
  await server.stop();
  server = await adopt(server.dataDir);
  mkdirSync(join(dir, 'out'));

  t = Date.now();
  await rawBackup(); // warms the page cache for all contenders
  const raw = await rawBackup();
  log(`mariabackup alone ${raw.seconds.toFixed(2)} s, xbstream ${mib(raw.bytes)}`);
  const idleRssMiB = process.memoryUsage.rss() / 1024 / 1024;

  const contenders = [
    { label: 'Trove  mariabackup | gzip | openssl', run: trove },
    { label: 'Tern   runner, parallel gzip + cipher', run: tern },
  ];
  const runs = new Map<string, { label: string; level: number; best: Measure | null; peakRssMiB: number; plain: number }>();
  // Rounds alternate the contenders (and their order), so neither profits from running later.
  for (let round = 0; round < ROUNDS; round++) {
    for (const level of LEVELS) {
      const order = round % 2 === 0 ? contenders : [...contenders].reverse();
      for (const contender of order) {
        const key = `${contender.label}/${level}`;
        const entry = runs.get(key) ?? { label: contender.label, level, best: null, peakRssMiB: 0, plain: 0 };
        runs.set(key, entry);
        const out = join(dir, 'out', `${contender.label.split(' ')[0]}-${level}-${round}.xbstream.gz.enc`);
        const m = await contender.run(level, out);
        const plain = await verify(out);
        log(
          `${contender.label} level ${level} round ${round + 1}: ${m.seconds.toFixed(2)} s, ${mib(m.bytes)} (verified: ${mib(plain)} xbstream)`,
        );
        rmSync(out);
        if (!entry.best || m.seconds < entry.best.seconds) entry.best = m;
        entry.peakRssMiB = Math.max(entry.peakRssMiB, m.peakRssMiB ?? 0);
        entry.plain = plain;
      }
    }
  }
  const results = LEVELS.flatMap((level) =>
    contenders.map((c) => {
      const entry = runs.get(`${c.label}/${level}`)!;
      return { label: c.label, level, best: { ...entry.best!, peakRssMiB: entry.peakRssMiB || undefined } };
    }),
  );

  const troveAt = (level: number) => results.find((r) => r.label.startsWith('Trove') && r.level === level)?.best;
  const baseline = troveAt(6) ?? results[0].best;
  console.log(`\nBackup of ${ROWS} rows, xbstream ${mib(raw.bytes)}, ${availableParallelism()} cores, best of ${ROUNDS}`);
  console.log(`mariabackup alone (no compression): ${raw.seconds.toFixed(2)} s`);
  console.log(
    'pipeline                                  level   seconds   MB/s    output     vs Trove -6   vs Trove same level   peak RSS',
  );
  for (const r of results) {
    const same = troveAt(r.level);
    const rate = raw.bytes / 1e6 / r.best.seconds;
    console.log(
      `${r.label.padEnd(42)}${String(r.level).padStart(5)}${r.best.seconds.toFixed(2).padStart(10)}${rate.toFixed(0).padStart(7)}` +
        `${mib(r.best.bytes).padStart(11)}${`${(baseline.seconds / r.best.seconds).toFixed(2)}x`.padStart(14)}` +
        `${same ? `${(same.seconds / r.best.seconds).toFixed(2)}x`.padStart(22) : ''.padStart(22)}` +
        `${r.best.peakRssMiB ? `${r.best.peakRssMiB.toFixed(0)} MiB`.padStart(11) : ''}`,
    );
  }
  console.log(
    `Tern process RSS before its runs: ${idleRssMiB.toFixed(0)} MiB; maxRSS over the whole run: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
  );
}

try {
  await main();
} finally {
  await cleanup();
}
