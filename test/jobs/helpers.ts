import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectDb, type Db } from '../../src/db/connect.ts';
import { createPgDatabase, dropPgDatabase } from '../helpers/db.ts';

export const NODE = resolve(import.meta.dirname, '../../node_modules/.bin/node');
export const FIXTURES = resolve(import.meta.dirname, 'fixtures');

/** Job kinds of fixtures/limited-worker.ts: one under a region-wide limit, one free. */
export const LIMITED = 'test.limited';
export const OTHER = 'test.other';

/** A database that several handles or processes can open by URL: a temp SQLite file or a fresh PostgreSQL database. */
export async function sharedDb(name: 'sqlite' | 'postgres'): Promise<{ url: string; db: Db; drop(): Promise<void> }> {
  if (name === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'tern-jobs-'));
    const url = `sqlite:${join(dir, 'meta.db')}`;
    const db = await connectDb(url);
    return {
      url,
      db,
      drop: async () => {
        await db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const url = await createPgDatabase();
  const db = await connectDb(url);
  return {
    url,
    db,
    drop: async () => {
      await db.close();
      await dropPgDatabase(url);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until check() returns a truthy value or the time is up. */
export async function until<T>(check: () => Promise<T> | T, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Starts a fixture script under Node 24; collects its output. `exited` gives the exit code, or the signal name. */
export function runFixture(
  script: string,
  args: string[],
): { child: ChildProcess; out: () => string; exited: Promise<number | string | null> } {
  const child = spawn(NODE, [join(FIXTURES, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | string | null>((ok) => child.on('exit', (code, signal) => ok(code ?? signal)));
  return { child, out: () => out + err, exited };
}

/** Kills a fixture we started (by its PID) if it is still running. */
export function killFixture(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
