import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';

/**
 * Real Postgres for tests and benchmarks. Each test (or benchmark rig) gets a database of its own on
 * the server that DATABASE_URL names (or the local one), so they never share state. A test that
 * stops Postgres on purpose runs a private server (PrivatePostgres) instead. freePort() finds a
 * free local TCP port for a process to listen on.
 */

export const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(serverUrl = SERVER_URL): Promise<TestDatabase> {
  const name = `relaycast_test_${randomBytes(6).toString('hex')}`;
  const admin = knexFactory({ client: 'pg', connection: serverUrl, pool: { min: 0, max: 1 } });
  try {
    await admin.raw(`create database ${name}`);
  } finally {
    await admin.destroy();
  }
  return {
    url: withDatabase(serverUrl, name),
    async drop() {
      const a = knexFactory({ client: 'pg', connection: serverUrl, pool: { min: 0, max: 1 } });
      try {
        await a.raw(`drop database if exists ${name} with (force)`);
      } finally {
        await a.destroy();
      }
    },
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function postgresBin(tool: string): string {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  return join('/usr/lib/postgresql', versions[0]!, 'bin', tool);
}

/** A PostgreSQL server of the test's own, in a temp dir on a free port, that it may stop and start. */
export class PrivatePostgres {
  readonly dir: string;
  readonly port: number;
  readonly #asRoot = process.getuid?.() === 0;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
  }

  static async create(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-pg-'));
    const server = new PrivatePostgres(dir, await freePort());
    // initdb refuses to run as root; run the server as the postgres user then.
    if (server.#asRoot) chownSync(dir, uidOf('postgres'), gidOf('postgres'));
    server.#run(postgresBin('initdb'), ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync']);
    server.start();
    return server;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  start(): void {
    this.#run(postgresBin('pg_ctl'), [
      '-D', join(this.dir, 'data'), '-l', join(this.dir, 'log'), '-w', '-t', '30',
      '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start',
    ]);
  }

  stop(): void {
    this.#run(postgresBin('pg_ctl'), ['-D', join(this.dir, 'data'), '-m', 'fast', '-w', '-t', '30', 'stop']);
  }

  destroy(): void {
    spawnSync(postgresBin('pg_ctl'), ['-D', join(this.dir, 'data'), '-m', 'immediate', 'stop'], {
      stdio: 'ignore',
      ...(this.#asRoot ? { uid: uidOf('postgres'), gid: gidOf('postgres') } : {}),
    });
    rmSync(this.dir, { recursive: true, force: true });
  }

  #run(bin: string, args: string[]): void {
    execFileSync(bin, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 60_000,
      ...(this.#asRoot ? { uid: uidOf('postgres'), gid: gidOf('postgres') } : {}),
    });
  }
}

function uidOf(user: string): number {
  return Number(execFileSync('id', ['-u', user]).toString().trim());
}

function gidOf(user: string): number {
  return Number(execFileSync('id', ['-g', user]).toString().trim());
}
