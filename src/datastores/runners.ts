import { mariadbRunner } from './mariadb.ts';
import { postgresqlRunner } from './postgresql.ts';
import type { DatastoreRunner } from './types.ts';

// The runner of each datastore Tern can run instances of. 'mysql' backups can be copied and
// listed, but this host runs no MySQL servers, so there is no runner for it.

const RUNNERS: Record<string, DatastoreRunner> = {
  mariadb: mariadbRunner,
  postgresql: postgresqlRunner,
};

export function runnerFor(datastore: string): DatastoreRunner | undefined {
  return Object.hasOwn(RUNNERS, datastore) ? RUNNERS[datastore] : undefined;
}
