import { Conflict } from '../errors.ts';

// The one table of allowed instance status moves, as Trove reports them. Every status change goes
// through the repo's compare-and-set UPDATE ... WHERE status IN (sourcesOf(to)).

export const InstanceStatus = {
  BUILD: 'BUILD',
  ACTIVE: 'ACTIVE',
  BACKUP: 'BACKUP',
  ERROR: 'ERROR',
  SHUTDOWN: 'SHUTDOWN',
} as const;
export type InstanceStatus = (typeof InstanceStatus)[keyof typeof InstanceStatus];

const MOVES: Record<InstanceStatus, readonly InstanceStatus[]> = {
  // BUILD -> BUILD: a retried or reclaimed create job starts over.
  BUILD: ['BUILD', 'ACTIVE', 'ERROR'],
  // ACTIVE -> ERROR: the server could not be re-adopted after a Tern restart.
  ACTIVE: ['BACKUP', 'SHUTDOWN', 'ERROR'],
  // BACKUP -> ACTIVE after the backup job, whether it succeeded or failed.
  BACKUP: ['ACTIVE', 'ERROR'],
  ERROR: ['SHUTDOWN'],
  // SHUTDOWN ends in a soft delete (deleted_at), not in another status.
  SHUTDOWN: ['SHUTDOWN'],
};

export function canMove(from: InstanceStatus, to: InstanceStatus): boolean {
  return MOVES[from]?.includes(to) ?? false;
}

export function assertMove(from: InstanceStatus, to: InstanceStatus): void {
  if (!canMove(from, to)) throw new Conflict(`instance cannot go from ${from} to ${to}`);
}

/** The statuses from which `to` may be reached: the WHERE clause of a compare-and-set. */
export function sourcesOf(to: InstanceStatus): InstanceStatus[] {
  return (Object.keys(MOVES) as InstanceStatus[]).filter((from) => MOVES[from].includes(to));
}
