import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../core/errors.ts';
import type { GeoMapBuilt, GeoMapInput } from './GeoMapBuilder.ts';
import type { GeoMapRequest, GeoMapWorkerData } from './geoMapWorker.ts';

/**
 * HAProxy's geo map for the whole GeoIP database (see GeoMapBuilder for what is in it), built in
 * a child process: a build takes seconds of CPU for the bundled DB-IP City Lite (15 million
 * networks), which the balancer's event loop must not wait through, and ~90 MB over its modules'
 * ~50 MB while it runs at 100 regions (pages of the databases, a code per record, the prefix table;
 * the map goes to its file 1 MB at a time), which a process gives back whole when it ends (a worker
 * thread's freed memory stayed in the balancer's resident set).
 * The process reads the databases in pages (MmdbTree) and is kept for the next builds until
 * close(). Builds run one at a time. It ends when the balancer does (its IPC channel closes).
 *
 * The map goes to a file the caller names, written there by the child process: the balancer never
 * holds it (MapFile copies and sends it from the file).
 *
 *   const geoMap = new GeoMap({ databases });        // the balancer's --geo-database files, or the bundled ones
 *   const { path, entries } = await geoMap.build({ sites, pins, defaultRegion }, { out: 'geo-1.map' });
 *   await geoMap.close();
 */

export interface GeoMapOptions {
  /** .mmdb files in GeoLocator's order; unset: the bundled DB-IP City Lite (IPv4 and IPv6). */
  databases?: string[];
}

export interface GeoMapResult extends Omit<GeoMapBuilt, 'map'> {
  /** The map file (UTF-8 text), where build() was asked to write it. */
  path: string;
  /** Lines that map a network (ipv4Entries + ipv6Entries). */
  entries: number;
  /** The map's size in bytes (UTF-8). */
  bytes: number;
  /** From build() to its answer, as the caller waits (process start included). */
  ms: number;
  /** The build itself, in the child process. */
  buildMs: number;
}

/** buildGeoMap's answer: the map read back into memory (tests, benchmarks; never the balancer). */
export interface GeoMapBytes extends Omit<GeoMapResult, 'path'> {
  map: Buffer;
  /** The map as text (decoded from `map` when first read). */
  readonly text: string;
}

export interface GeoMapBuildOptions {
  /** Where the map is written (replaced if it exists; removed if the build fails). */
  out: string;
  /** Asked when the build's turn comes; false skips it (a newer geography came meanwhile), rejecting with GeoMapSkipped. */
  wanted?: () => boolean;
}

type Answer = { id: number; result: Omit<GeoMapBuilt, 'map'> & { buildMs: number }; error?: undefined } | { id: number; error: { name: string; message: string; field?: string } };

/** The child's own file: .js from dist/, .ts when the sources run through tsx (tests, benchmarks). */
const WORKER_PATH = fileURLToPath(new URL(`./geoMapWorker${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

/**
 * The child's V8 new space, in MB per semi-space: a build's garbage is short-lived (cursors, decoded
 * fields, IPv6 addresses' text), and with V8's default (up to 16 MB) the new space grew to its most
 * during a build: ~30 MB more resident memory than at 2, for no faster build (a 100-region build
 * under tsx peaked at 197 MB by default, 165 at 2, 167 at 4; 2026-12-08). What survives a build
 * step is in typed arrays, outside the heap.
 */
const WORKER_SEMI_SPACE_MB = 2;

function startWorker(workerData: GeoMapWorkerData): ChildProcess {
  return fork(WORKER_PATH, [JSON.stringify(workerData)], {
    // From the sources the child needs tsx's loader as the parent has it; the parent's other
    // flags (an inspector port, a heap limit) are not the child's.
    execArgv: [...(WORKER_PATH.endsWith('.ts') ? ['--import', 'tsx'] : []), `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** A build no longer wanted when its turn came (see build()). */
export class GeoMapSkipped extends Error {
  constructor() {
    super('geo map build skipped: no longer wanted');
    this.name = 'GeoMapSkipped';
  }
}

export class GeoMap {
  readonly #data: GeoMapWorkerData;
  #worker: ChildProcess | undefined;
  readonly #pending = new Map<number, { resolve: (answer: Answer) => void; reject: (error: Error) => void }>();
  #nextId = 1;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: GeoMapOptions = {}) {
    const { databases } = options;
    if (databases !== undefined && (!Array.isArray(databases) || databases.some((d) => typeof d !== 'string' || !d))) throw new TypeError('databases must be .mmdb paths');
    this.#data = { databases: databases ? [...databases] : undefined };
  }

  /** Builds the map for these regions and pins into the file `out` (after any build still running). */
  build(input: GeoMapInput, options: GeoMapBuildOptions): Promise<GeoMapResult> {
    if (this.#closed) return Promise.reject(new Error('GeoMap is closed'));
    const { sites, pins, defaultRegion } = input ?? {};
    const { out, wanted = () => true } = options ?? {};
    if (!(sites instanceof Map)) return Promise.reject(new TypeError('sites must be a Map of region → positions'));
    if (!Array.isArray(pins)) return Promise.reject(new TypeError('pins must be an array'));
    if (typeof defaultRegion !== 'string') return Promise.reject(new TypeError('defaultRegion must be a region name'));
    if (typeof out !== 'string' || !out) return Promise.reject(new TypeError('out must be a file path'));
    const request: Omit<GeoMapRequest, 'id'> = {
      out,
      sites: [...(sites as GeoMapInput['sites'])].map(([name, positions]) => [name, positions.map(({ lat, lon }) => ({ lat, lon }))]),
      pins: pins.map(({ cidr, region, lat, lon }) => ({ cidr, region, lat, lon })),
      defaultRegion,
    };
    const run = this.#queue.then(() => {
      if (!wanted()) throw new GeoMapSkipped();
      return this.#run(request);
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Stops the child process (a build under way is rejected). */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    if (!worker || worker.exitCode !== null || worker.signalCode !== null) return;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    // Waited for: the process's exit keeps this one's event loop alive until it comes.
    worker.ref();
    worker.kill('SIGKILL');
    await exited;
  }

  async #run(request: Omit<GeoMapRequest, 'id'>): Promise<GeoMapResult> {
    if (this.#closed) throw new Error('GeoMap is closed');
    const started = performance.now();
    const worker = this.#start();
    const id = this.#nextId++;
    worker.ref();
    worker.channel?.ref();
    let answer: Answer;
    try {
      answer = await new Promise<Answer>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        worker.send({ id, ...request } satisfies GeoMapRequest);
      });
    } catch (error) {
      rmSync(request.out, { force: true });
      throw error;
    } finally {
      this.#pending.delete(id);
      worker.unref();
      worker.channel?.unref();
    }
    if (answer.error) {
      rmSync(request.out, { force: true });
      const { name, message, field } = answer.error;
      if (name === 'ConfigError' && field) throw new ConfigError(field, message.replace(`${field}: `, ''));
      throw name === 'TypeError' ? new TypeError(message) : new Error(message);
    }
    const { result } = answer;
    return { ...result, path: request.out, entries: result.ipv4Entries + result.ipv6Entries, bytes: statSync(request.out).size, ms: performance.now() - started };
  }

  #start(): ChildProcess {
    if (this.#worker) return this.#worker;
    const worker = startWorker(this.#data);
    worker.unref();
    worker.channel?.unref();
    const fail = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const { reject } of this.#pending.values()) reject(error);
    };
    worker.on('message', (answer: Answer) => this.#pending.get(answer.id)?.resolve(answer));
    worker.on('error', fail);
    worker.on('exit', (code, signal) => fail(new Error(`the geo map process exited (${code ?? signal})`)));
    this.#worker = worker;
    return worker;
  }
}

/** One build in a process of its own, stopped after (GeoMap keeps one for many builds), its map read back. */
export async function buildGeoMap(options: GeoMapOptions & GeoMapInput): Promise<GeoMapBytes> {
  const geoMap = new GeoMap(options);
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-geomap-'));
  try {
    const { path: out, ...result } = await geoMap.build(options, { out: join(dir, 'geo.map') });
    const map = readFileSync(out);
    let text: string | undefined;
    return {
      ...result,
      map,
      get text() {
        return (text ??= map.toString('utf8'));
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await geoMap.close();
  }
}
