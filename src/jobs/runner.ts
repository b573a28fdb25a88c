import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Db } from '../db/connect.ts';
import { Cancelled, isTransient, TernError } from '../errors.ts';
import {
  claim,
  complete,
  DEFAULT_MAX_ATTEMPTS,
  errorText,
  fail,
  heartbeat,
  type JobRow,
  type KindLimits,
  markCancelled,
  release,
} from './queue.ts';
import type { JobContext, JobHandler, JobHandlers } from './types.ts';

// Runs queued jobs: claims up to `concurrency` at a time under a lease, heartbeats while a handler
// runs, retries transient failures with backoff, and on stop finishes or gives back what it holds.
// Nothing a handler does (throw, reject, hang after abort) may crash the process.

type LogFn = (obj: object, msg: string) => void;
export interface RunnerLogger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface JobRunnerOptions {
  db: Db;
  handlers: JobHandlers;
  /** Lease owner name; unique per runner by default (host:pid:random). */
  owner?: string;
  concurrency: number;
  /**
   * Most jobs of a kind running at once in the whole region (every worker sharing the database),
   * e.g. { 'backup.copy': 8 }; enforced by the claim, so a busy kind waits while others still run.
   */
  kindLimits?: KindLimits;
  leaseMs: number;
  heartbeatMs: number;
  pollMs: number;
  /** Used only where a job row lacks a sane max_attempts; enqueue sets it per job. */
  maxAttempts?: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  logger?: RunnerLogger;
}

/** The lease went to another worker (we were too slow to heartbeat); it will run the job. */
export class LeaseLost extends TernError {
  override readonly kind = 'leaseLost';
  override readonly transient = true;
}
/** The runner is stopping; the job is released to another worker. */
export class ShuttingDown extends TernError {
  override readonly kind = 'shuttingDown';
  override readonly transient = true;
}

/**
 * Delay before retry number `attempt` (1 = after the first failure): base * 2^(attempt-1), capped
 * at max, then "equal jitter" -- a random point in the upper half -- so workers that failed
 * together do not retry together, yet never sooner than half the nominal delay.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const nominal = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(nominal / 2 + (random() * nominal) / 2);
}

/** How long stop() waits for aborted handlers to return before releasing their jobs anyway. */
const ABORT_WAIT_MS = 2000;
const noop = () => {};
const SILENT: RunnerLogger = { info: noop, warn: noop, error: noop };

interface Active {
  job: JobRow;
  controller: AbortController;
  done: Promise<void>;
  /** Set by stop() when it released the job itself because the handler would not return. */
  released: boolean;
}

export class JobRunner {
  readonly owner: string;
  readonly #o: JobRunnerOptions;
  readonly #log: RunnerLogger;
  readonly #active = new Map<number, Active>();
  #started = false;
  #stopping = false;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #pollAgain = false;

  constructor(options: JobRunnerOptions) {
    // A heartbeat slower than the lease would let a healthy job be reclaimed under it.
    if (!(options.heartbeatMs < options.leaseMs)) throw new RangeError('heartbeatMs must be shorter than leaseMs');
    if (!(options.concurrency >= 1)) throw new RangeError('concurrency must be at least 1');
    this.#o = options;
    this.#log = options.logger ?? SILENT;
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  }

  start(): void {
    if (this.#started || this.#stopping) return;
    this.#started = true;
    this.wake();
  }

  /** Polls now instead of at the next tick (called after an enqueue). */
  wake(): void {
    if (!this.#started || this.#stopping) return;
    if (this.#polling) {
      this.#pollAgain = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#polling = this.#poll().finally(() => {
      this.#polling = undefined;
      if (this.#stopping) return;
      if (this.#pollAgain) {
        this.#pollAgain = false;
        this.wake();
      } else {
        this.#timer = setTimeout(() => this.wake(), this.#o.pollMs);
      }
    });
  }

  /** Claims and runs at most one job, to the end. True when there was one. */
  async runOnce(): Promise<boolean> {
    if (this.#stopping) return false;
    const job = await claim(this.#o.db, this.owner, this.#o.leaseMs, undefined, this.#o.kindLimits);
    if (!job) return false;
    await this.#launch(job).done;
    return true;
  }

  /**
   * Stops claiming, lets running jobs finish for up to graceMs, then aborts the rest and gives
   * their leases back (queued, attempt not counted) so another worker takes them over at once.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    await this.#polling;
    if (!(await settledWithin(this.#allDone(), options.graceMs ?? 0))) {
      for (const a of this.#active.values()) a.controller.abort(new ShuttingDown('worker is shutting down'));
      if (!(await settledWithin(this.#allDone(), ABORT_WAIT_MS))) {
        for (const a of this.#active.values()) {
          a.released = true;
          this.#log.warn({ jobId: a.job.id, kind: a.job.kind }, 'job handler ignored abort; releasing its job anyway');
          await release(this.#o.db, a.job.id, this.owner).catch((err) => this.#log.error({ err }, 'could not release job'));
        }
      }
    }
    clearTimeout(this.#timer);
  }

  #allDone(): Promise<unknown> {
    return Promise.allSettled([...this.#active.values()].map((a) => a.done));
  }

  async #poll(): Promise<void> {
    try {
      while (!this.#stopping && this.#active.size < this.#o.concurrency) {
        const job = await claim(this.#o.db, this.owner, this.#o.leaseMs, undefined, this.#o.kindLimits);
        if (!job) return;
        // stop() may have begun while we claimed; the job still runs and stop() waits for it.
        this.#launch(job);
      }
    } catch (err) {
      this.#log.error({ err }, 'could not claim a job');
    }
  }

  #launch(job: JobRow): Active {
    const controller = new AbortController();
    const active: Active = { job, controller, done: Promise.resolve(), released: false };
    active.done = this.#run(active)
      .catch((err) => this.#log.error({ err, jobId: job.id }, 'job runner failed'))
      .finally(() => {
        this.#active.delete(job.id);
        this.wake(); // a slot is free
      });
    this.#active.set(job.id, active);
    return active;
  }

  async #run(active: Active): Promise<void> {
    const { job, controller } = active;
    const { db } = this.#o;
    const log = { jobId: job.id, kind: job.kind, attempt: job.attempts };
    const beat = this.#heartbeat(active);
    try {
      const handler: JobHandler | undefined = this.#o.handlers[job.kind];
      if (!handler) {
        await fail(db, job.id, this.owner, `no handler for job kind "${job.kind}" in this worker`);
        this.#log.error(log, 'job of unknown kind failed');
        return;
      }
      let payload: unknown;
      try {
        payload = JSON.parse(job.payload);
      } catch {
        await fail(db, job.id, this.owner, 'job payload is not valid JSON');
        return;
      }
      const maxAttempts = job.max_attempts >= 1 ? job.max_attempts : (this.#o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
      if (job.cancel_requested === 1) controller.abort(new Cancelled('job cancelled'));
      else if (job.attempts > maxAttempts) {
        // Only reclaims push attempts past the maximum: the job keeps killing its workers.
        await this.#giveUp(
          active,
          handler,
          payload,
          new Error(`gave up after ${job.attempts - 1} attempts lost with their worker`),
        );
        return;
      }
      const ctx: JobContext = {
        jobId: job.id,
        attempt: job.attempts,
        finalAttempt: job.attempts >= maxAttempts,
        signal: controller.signal,
      };
      let error: unknown;
      let ok = false;
      if (!controller.signal.aborted) {
        this.#log.info(log, 'job started');
        try {
          await handler.run(payload, ctx);
          ok = true;
        } catch (err) {
          error = err;
        }
      }
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
      if (active.released) return;
      if (reason instanceof Cancelled) {
        this.#log.info(log, 'job cancelled');
        await this.#giveUp(active, handler, payload, reason, 'cancelled');
      } else if (ok) {
        if (await complete(db, job.id, this.owner)) this.#log.info(log, 'job succeeded');
        else this.#log.warn(log, 'job finished after its lease was lost; another worker has it');
      } else if (reason instanceof LeaseLost) {
        this.#log.warn({ ...log, err: error }, 'job aborted: lease lost');
      } else if (reason instanceof ShuttingDown) {
        if (await release(db, job.id, this.owner)) this.#log.info(log, 'job released at shutdown');
      } else if (isTransient(error) && job.attempts < maxAttempts) {
        const delay = backoffMs(job.attempts, this.#o.backoffBaseMs, this.#o.backoffMaxMs);
        await fail(db, job.id, this.owner, error, { retryAt: Date.now() + delay });
        this.#log.warn({ ...log, err: error, retryInMs: delay }, 'job failed; will retry');
      } else {
        this.#log.error({ ...log, err: error }, 'job failed');
        await this.#giveUp(active, handler, payload, asError(error));
      }
    } finally {
      beat.stop();
    }
  }

  /** Lets the handler clean up, then records the final state (in that order, so a crash between redoes the cleanup). */
  async #giveUp(active: Active, handler: JobHandler, payload: unknown, error: Error, status: 'failed' | 'cancelled' = 'failed') {
    const { db } = this.#o;
    try {
      await handler.onGiveUp?.(payload, error);
    } catch (err) {
      this.#log.error({ err, jobId: active.job.id }, 'job onGiveUp failed');
    }
    if (status === 'cancelled') await markCancelled(db, active.job.id, this.owner, errorText(error));
    else await fail(db, active.job.id, this.owner, error);
  }

  #heartbeat(active: Active): { stop(): void } {
    let busy = false;
    const timer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const hb = await heartbeat(this.#o.db, active.job.id, this.owner, this.#o.leaseMs);
        if (!hb.owned) active.controller.abort(new LeaseLost(`lost the lease on job ${active.job.id}`));
        else if (hb.cancelRequested) active.controller.abort(new Cancelled('job cancelled'));
      } catch (err) {
        // The database may be back before the lease runs out; if not, the next beat finds it lost.
        this.#log.warn({ err, jobId: active.job.id }, 'job heartbeat failed');
      } finally {
        busy = false;
      }
    }, this.#o.heartbeatMs);
    return { stop: () => clearInterval(timer) };
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** True if p settled within ms. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
