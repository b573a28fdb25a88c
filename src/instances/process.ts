import { readdirSync, readFileSync } from 'node:fs';
import { lchown, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BadRequest } from '../errors.ts';

// Small OS helpers for running database servers as their own system users, watching their
// processes by PID, and keeping secret files private.

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Looks a system user up in /etc/passwd (Node has no getpwnam). */
export function lookupUser(name: string): OsUser {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [user, , uid, gid, , home] = line.split(':');
    if (user === name) return { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
  }
  throw new Error(`system user "${name}" does not exist (is the datastore package installed?)`);
}

/**
 * The user a server and its files belong to: the datastore's system user when Tern runs as root
 * (mariadbd and postgres refuse root), or null for "whoever runs Tern".
 */
export function serviceUser(name: 'mysql' | 'postgres'): OsUser | null {
  return isRoot() ? lookupUser(name) : null;
}

/** A minimal environment for child processes: none of Tern's own variables (which may hold secrets). */
export function childEnv(user: OsUser | null, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    HOME: user?.home ?? process.env.HOME ?? '/tmp',
    ...extra,
  };
}

/** True while the process exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The command line of a process, or null when it is gone. */
export function commandLine(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

/** Waits until the process is gone; false on timeout. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Sends `signal`, waits up to timeoutMs, then SIGKILLs. Only ever called with PIDs we started. */
export async function terminate(pid: number, signal: NodeJS.Signals, timeoutMs = 60_000): Promise<void> {
  if (!isRunning(pid)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return; // already gone
  }
  if (await waitForExit(pid, timeoutMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitForExit(pid, 10_000);
}

/** chown -R without following symlinks. */
export async function chownTree(path: string, user: OsUser): Promise<void> {
  await lchown(path, user.uid, user.gid);
  const entries = await readdir(path, { recursive: true });
  for (const entry of entries) await lchown(join(path, entry), user.uid, user.gid);
}

/**
 * Fails with a clear message when `user` cannot reach `dir` (e.g. a 0700 mkdtemp parent owned by
 * root), instead of a server that dies with "Permission denied" deep in its log.
 */
export async function assertReachable(dir: string, user: OsUser | null): Promise<void> {
  if (!user) return;
  for (let d = dirname(dir); ; d = dirname(d)) {
    const s = await stat(d);
    const canEnter = s.uid === user.uid ? s.mode & 0o100 : s.gid === user.gid ? s.mode & 0o010 : s.mode & 0o001;
    if (!canEnter)
      throw new Error(`user ${user.name} cannot enter ${d}; make it traversable (chmod o+x) or choose another folder`);
    if (d === dirname(d)) return;
  }
}

/**
 * A fresh 0700 folder for secret files of one operation; remove it with `rm(dir, {recursive})`.
 * Its name carries our pid: a process killed mid-operation never runs its cleanup, and
 * removeDeadTempDirs() at the next start tells its folders (and the secrets in them) from live ones.
 */
export function privateTempDir(prefix = 'tern-secret-'): Promise<string> {
  return mkdtemp(join(tmpdir(), `${prefix}pid${process.pid}-`));
}

const PRIVATE_TEMP = /^tern-[a-z0-9-]+-pid(\d+)-[A-Za-z0-9]{6}$/;

/** Removes the private temp folders (see privateTempDir) of processes that are gone; returns their paths. */
export async function removeDeadTempDirs(dir = tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const pid = e.isDirectory() ? Number(PRIVATE_TEMP.exec(e.name)?.[1]) : Number.NaN;
    if (!(pid > 0) || pid === process.pid || isRunning(pid)) continue;
    const path = join(dir, e.name);
    // Another user's folder is not ours to judge (and a non-root Tern could not remove it).
    const info = await stat(path).catch(() => null);
    if (!info || info.uid !== process.getuid?.()) continue;
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/**
 * PIDs of other processes whose command line names `dir` or a path inside it: tools a killed Tern
 * left running on an instance folder (mbstream -C dir, mariabackup --target-dir=dir/db, ...).
 */
export function processesUsing(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const argv = commandLine(pid);
    if (argv?.some((arg) => arg === dir || arg.endsWith(`=${dir}`) || arg.includes(`${dir}/`))) found.push(pid);
  }
  return found;
}

/** Writes a 0600 file (owned by `owner` when given); it must not exist yet. */
export async function writeSecretFile(path: string, content: string, owner: OsUser | null = null): Promise<void> {
  await writeFile(path, content, { mode: 0o600, flag: 'wx' });
  if (owner) await lchown(path, owner.uid, owner.gid);
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

/** What a file gained since `offset`, at most the last 64 KiB (what a server logged during one start). */
export async function readFrom(path: string, offset: number): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, 'r');
    const { size } = await handle.stat();
    const start = Math.max(offset, size - 64 * 1024, 0);
    const buf = Buffer.alloc(Math.max(0, size - start));
    await handle.read(buf, 0, buf.length, start);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}

/** Passwords go into SQL literals, option files and pgpass lines; refuse what those cannot carry. */
export function checkPassword(password: string): void {
  if (typeof password !== 'string' || password.length === 0) throw new BadRequest('password must not be empty');
  if (/[\0\r\n]/.test(password)) throw new BadRequest('password must not contain NUL or line breaks');
}
