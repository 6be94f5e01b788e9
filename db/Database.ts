import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import type { Logger } from '../core/logger.ts';
import { migrationSource } from './migrations/index.ts';

/**
 * Knex over one of two backends with one code path: a real Postgres when a URL is given, else the
 * embedded PGlite (the zero-setup default), on a directory or in memory.
 */

export type DatabaseKind = 'postgres' | 'pglite';

export interface DatabaseOptions {
  /** postgres:// URL; without it, PGlite. */
  url?: string;
  /** PGlite's data directory; without it (and without url), an in-memory PGlite. */
  pgliteDir?: string;
  /** Where knex's own warnings go (it writes to the console otherwise). */
  logger?: Logger;
}

/**
 * How long a query waits for a connection before failing. Short, so that a dead database turns
 * into a quick 503 and a logged heartbeat miss, not a request hanging for knex's default 60 s.
 */
const ACQUIRE_TIMEOUT_MS = 3000;

export class Database {
  readonly knex: Knex;
  readonly kind: DatabaseKind;

  private constructor(knex: Knex, kind: DatabaseKind) {
    this.knex = knex;
    this.kind = kind;
  }

  static open(options: DatabaseOptions = {}): Database {
    const log = knexLog(options.logger);
    if (options.url) {
      const knex = knexFactory({
        client: 'pg',
        connection: { connectionString: options.url, connectionTimeoutMillis: ACQUIRE_TIMEOUT_MS },
        // min 0: no idle connection is kept to die with the server; each query gets a live one.
        pool: { min: 0, max: 10, idleTimeoutMillis: 10_000 },
        acquireConnectionTimeout: ACQUIRE_TIMEOUT_MS,
        log,
      });
      return new Database(knex, 'postgres');
    }
    if (options.pgliteDir) mkdirSync(options.pgliteDir, { recursive: true });
    const knex = knexFactory({
      client: ClientPgLite as unknown as typeof Knex.Client,
      dialect: 'postgres',
      connection: options.pgliteDir ? { filename: options.pgliteDir } : {},
      log,
    } as Knex.Config);
    return new Database(knex, 'pglite');
  }

  /** PGlite's directory under a node's data dir. */
  static pgliteDirIn(dataDir: string): string {
    return join(dataDir, 'pglite');
  }

  async migrate(): Promise<string[]> {
    const [, applied] = (await this.knex.migrate.latest({ migrationSource })) as [number, string[]];
    return applied;
  }

  async rollbackAll(): Promise<string[]> {
    const [, undone] = (await this.knex.migrate.rollback({ migrationSource }, true)) as [number, string[]];
    return undone;
  }

  /** Throws when the database cannot answer. */
  async ping(): Promise<void> {
    await this.knex.raw('select 1');
  }

  async close(): Promise<void> {
    await this.knex.destroy();
  }
}

/** knex reports connection trouble itself; send it to our logger (or nowhere), not the console. */
function knexLog(logger?: Logger): Knex.Config['log'] {
  const to = (level: 'warn' | 'error' | 'debug') => (message: unknown) => {
    logger?.[level]({ component: 'db', detail: message instanceof Error ? message.message : message }, 'knex');
  };
  return { warn: to('warn'), error: to('error'), debug: to('debug'), deprecate: to('warn') };
}

/** Postgres error classes meaning "the server is not there or not taking queries". */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** Whether an error from a query means the database is unreachable (503), not a bug (500). */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { name?: string; code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.name === 'KnexTimeoutError') return true;
  if (e.code && (UNAVAILABLE_SQLSTATES.has(e.code) || UNAVAILABLE_CODES.has(e.code))) return true;
  return /Connection terminated|connection ended unexpectedly|Client was closed/i.test(e.message ?? '');
}
