import { Conflict } from '../errors.ts';

// The one table of allowed status moves. Every status change goes through assertMove (in memory)
// and the repo's compare-and-set UPDATE ... WHERE status IN (allowed sources).

export const BackupStatus = {
  NEW: 'NEW',
  BUILDING: 'BUILDING',
  SAVING: 'SAVING',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  DELETE_FAILED: 'DELETE_FAILED',
} as const;
export type BackupStatus = (typeof BackupStatus)[keyof typeof BackupStatus];

const MOVES: Record<BackupStatus, readonly BackupStatus[]> = {
  NEW: ['BUILDING', 'FAILED'],
  // BUILDING -> BUILDING: a retried or reclaimed job picks the work up again.
  BUILDING: ['BUILDING', 'SAVING', 'COMPLETED', 'FAILED'],
  SAVING: ['SAVING', 'COMPLETED', 'FAILED'],
  COMPLETED: ['DELETE_FAILED'],
  FAILED: ['DELETE_FAILED'],
  DELETE_FAILED: ['DELETE_FAILED'],
};

/** Statuses in which work is still under way (Trove's "running" backups). */
export const RUNNING_STATUSES: readonly BackupStatus[] = ['NEW', 'BUILDING', 'SAVING'];

export function canMove(from: BackupStatus, to: BackupStatus): boolean {
  return MOVES[from]?.includes(to) ?? false;
}

export function assertMove(from: BackupStatus, to: BackupStatus): void {
  if (!canMove(from, to)) throw new Conflict(`backup cannot go from ${from} to ${to}`);
}

/** The statuses from which `to` may be reached: the WHERE clause of a compare-and-set. */
export function sourcesOf(to: BackupStatus): BackupStatus[] {
  return (Object.keys(MOVES) as BackupStatus[]).filter((from) => MOVES[from].includes(to));
}

export function isRunning(status: string): boolean {
  return (RUNNING_STATUSES as readonly string[]).includes(status);
}
