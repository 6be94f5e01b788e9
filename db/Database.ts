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

/** The advisory lock every Relaycast node takes to migrate (an arbitrary constant: "rlycast"). */
const MIGRATION_LOCK_KEY = 0x726c7963617374;

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

  /**
   * Brings the schema up to date. Nodes starting together all migrate: on Postgres they take turns
   * under an advisory lock, because knex's own lock table is not safe against concurrent first
   * runs (two processes can each insert its lock row, and then no one can ever take the lock).
   * Holding the advisory lock, no other migrator can be running, so a lock left behind by a
   * migrator that died is released, and duplicate lock rows are removed.
   */
  async migrate(): Promise<string[]> {
    if (this.kind === 'pglite') return this.#latest();
    const client = this.knex.client as { acquireConnection(): Promise<unknown>; releaseConnection(c: unknown): Promise<void> };
    const connection = await client.acquireConnection();
    try {
      await this.knex.raw('select pg_advisory_lock(?)', [MIGRATION_LOCK_KEY]).connection(connection);
      try {
        if (await this.knex.schema.hasTable('knex_migrations_lock')) {
          await this.knex.raw('delete from knex_migrations_lock where index > (select min(index) from knex_migrations_lock)');
          await this.knex('knex_migrations_lock').update({ is_locked: 0 });
        }
        return await this.#latest();
      } finally {
        await this.knex.raw('select pg_advisory_unlock(?)', [MIGRATION_LOCK_KEY]).connection(connection);
      }
    } finally {
      await client.releaseConnection(connection);
    }
  }

  async #latest(): Promise<string[]> {
    const [, applied] = (await this.knex.migrate.latest({ migrationSource })) as [number, string[]];
    return applied;
  }

  async rollbackAll(): Promise<string[]> {
    const [, undone] = (await this.knex.migrate.rollback({ migrationSource }, true)) as [number, string[]];
    return undone;
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
