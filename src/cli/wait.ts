import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { ApiError, type Backup, type TernClient } from './client.ts';
import { CliExit, type CliIo } from './context.ts';
import { formatEta, formatGb, formatRate, progressLine } from './output.ts';

// --wait: poll GET /backups/{id} until the backup settles, showing progress. A bar on a terminal,
// one line per change otherwise (logs and CI stay readable).

const DONE = new Set(['COMPLETED', 'FAILED', 'DELETE_FAILED']);
const DEFAULT_POLL_MS = 500;

interface Display {
  update(b: Backup): void;
  stop(): void;
}

type Out = CliIo['stdout'];

function barDisplay(out: Out, id: string): Display {
  const bar = new cliProgress.SingleBar(
    {
      stream: out,
      format: `${id.slice(0, 8)} {status} [{bar}] {percentage}% | {rate} | ETA {eta_text}`,
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      // Our ETA comes from the server; cli-progress would compute its own from our polls.
      etaBuffer: 1,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  // Ctrl-C while the bar is drawn: give the terminal back its cursor and line wrapping first.
  const interrupted = () => {
    bar.stop();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  return {
    update(b) {
      const p = b.progress;
      const payload = { status: b.status, rate: formatRate(p?.rate_bytes_per_s), eta_text: formatEta(p?.eta_seconds) };
      const value = b.status === 'COMPLETED' ? 100 : (p?.percent ?? 0);
      if (!started) {
        bar.start(100, value, payload);
        started = true;
      } else {
        bar.update(value, payload);
      }
    },
    stop() {
      process.off('SIGINT', interrupted);
      if (started) bar.stop();
    },
  };
}

function lineDisplay(out: Out, id: string): Display {
  let last = '';
  return {
    update(b) {
      const line = b.progress ? `${b.status} ${progressLine(b)}` : b.status;
      if (line !== last) out.write(`${id} ${line}\n`);
      last = line;
    },
    stop() {},
  };
}

/**
 * Waits for COMPLETED (returns) or FAILED (throws CliExit 1 with the reason), drawing progress on
 * `out` (stdout, or stderr when stdout carries JSON).
 */
export async function waitForBackup(client: TernClient, id: string, io: CliIo, out: Out = io.stdout): Promise<Backup> {
  const display = out.isTTY ? barDisplay(out, id) : lineDisplay(out, id);
  let backup: Backup;
  try {
    for (;;) {
      backup = (await client.getBackup(id)).backup;
      display.update(backup);
      if (DONE.has(backup.status)) break;
      await sleep(io.pollMs ?? DEFAULT_POLL_MS);
    }
  } finally {
    display.stop();
  }
  if (backup.status !== 'COMPLETED') {
    throw new CliExit(`backup ${id} ${backup.status}: ${backup.fail_reason ?? 'no reason given'}`, 1);
  }
  out.write(`backup ${id} COMPLETED (${formatGb(backup.size)} GB, checksum ${backup.checksum ?? '-'})\n`);
  return backup;
}

/** Waits until the backup is gone (404); DELETE_FAILED throws CliExit 1 with the reason. */
export async function waitForDeletion(client: TernClient, id: string, io: CliIo): Promise<void> {
  let last = '';
  for (;;) {
    let backup: Backup;
    try {
      backup = (await client.getBackup(id)).backup;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) break;
      throw err;
    }
    if (backup.status === 'DELETE_FAILED') {
      throw new CliExit(`backup ${id} DELETE_FAILED: ${backup.fail_reason ?? 'no reason given'}`, 1);
    }
    if (backup.status !== last) io.stdout.write(`${id} ${backup.status}\n`);
    last = backup.status;
    await sleep(io.pollMs ?? DEFAULT_POLL_MS);
  }
  io.stdout.write(`backup ${id} deleted\n`);
}
