import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

// Adapts Node's built-in node:sqlite to the better-sqlite3 shape Kysely's SqliteDialect expects.
// node:sqlite needs no native build, so a fresh machine runs Tern with nothing compiled.

export function openSqlite(path: string): SqliteDatabase {
  const db = new DatabaseSync(path);
  // WAL lets readers proceed during a write; busy_timeout makes a second process wait, not fail.
  db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;');
  return {
    close: () => db.close(),
    prepare(sqlText: string): SqliteStatement {
      const stmt = db.prepare(sqlText);
      stmt.setReadBigInts(false);
      return {
        reader: stmt.columns().length > 0,
        all: (params) => stmt.all(...bind(params)) as unknown[],
        run: (params) => stmt.run(...bind(params)),
        iterate: (params) => stmt.iterate(...bind(params)) as IterableIterator<unknown>,
      };
    },
  };
}

function bind(params: ReadonlyArray<unknown>): SQLInputValue[] {
  return params.map((p) => {
    if (typeof p === 'boolean') return p ? 1 : 0;
    if (p instanceof Date) return p.toISOString();
    if (p === undefined) return null;
    return p as SQLInputValue;
  });
}
