// Contract between the job runner and the domain's task handlers.

export interface JobContext {
  jobId: number;
  /** 1 on the first run, incremented on every retry or reclaim. */
  attempt: number;
  /** True when this is the last attempt the runner will make. */
  finalAttempt: boolean;
  /** Aborted on cancellation (reason: Cancelled), shutdown, or loss of the lease. */
  signal: AbortSignal;
}

export interface JobHandler<P = any> {
  /**
   * Does the work. Must be safe to run twice (a reclaimed job runs again after a crash):
   * resume from recorded progress, tolerate work already done. Throw a transient TernError
   * to be retried with backoff; any other error fails the job at once.
   */
  run(payload: P, ctx: JobContext): Promise<void>;
  /**
   * Called once when the job will not be tried again (final failure or cancellation), so the
   * handler can record a truthful state and remove what it wrote. Must not throw for cleanup misses.
   */
  onGiveUp?(payload: P, error: Error): Promise<void>;
}

export type JobHandlers = Record<string, JobHandler>;

export interface EnqueueOptions {
  kind: string;
  payload: unknown;
  /** The backup/instance the job works on; used to cancel it. */
  resourceId?: string;
  maxAttempts?: number;
  /** Earliest start, epoch ms (default now). */
  runAfter?: number;
}
