import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// Absolute paths of the Debian tools we run, so a PATH without /usr/sbin (non-root shells) or a
// PostgreSQL that Debian keeps under /usr/lib/postgresql/<major>/bin still works.

function firstExisting(candidates: string[], fallback: string): string {
  return candidates.find((path) => existsSync(path)) ?? fallback;
}

function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((name) => /^\d+$/.test(name))
        .sort((a, b) => Number(a) - Number(b))
    : [];
  return majors.length > 0 ? join(root, majors[majors.length - 1], 'bin') : '';
}

const pgBin = postgresBinDir();
const pg = (name: string) => (pgBin ? join(pgBin, name) : name);

export const BIN = {
  mariadbd: firstExisting(['/usr/sbin/mariadbd', '/usr/bin/mariadbd'], 'mariadbd'),
  mariadbInstallDb: firstExisting(['/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db'], 'mariadb-install-db'),
  mariadb: firstExisting(['/usr/bin/mariadb'], 'mariadb'),
  mariabackup: firstExisting(['/usr/bin/mariabackup', '/usr/bin/mariadb-backup'], 'mariabackup'),
  mbstream: firstExisting(['/usr/bin/mbstream', '/usr/bin/mariadb-backup-stream'], 'mbstream'),
  initdb: pg('initdb'),
  postgres: pg('postgres'),
  pgBasebackup: pg('pg_basebackup'),
  psql: pg('psql'),
  tar: firstExisting(['/usr/bin/tar', '/bin/tar'], 'tar'),
} as const;
