import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../core/errors.ts';
import type { GeoMapBuilt, GeoMapInput } from './GeoMapBuilder.ts';
import type { GeoMapRequest, GeoMapWorkerData } from './geoMapWorker.ts';

/**
 * HAProxy's geo map for the whole GeoIP database (see GeoMapBuilder for what is in it), built in
 * a child process: a build takes seconds of CPU for the bundled DB-IP City Lite (15 million
 * networks), which the balancer's event loop must not wait through, and ~150 MB while it runs
 * (pages of the databases, a code per record, the prefix table, the map), which a process gives
 * back whole when it ends (a worker thread's freed memory stayed in the balancer's resident set).
 * The process reads the databases in pages (MmdbTree) and is kept for the next builds until
 * close(). Builds run one at a time. It ends when the balancer does (its IPC channel closes).
 *
 *   const geoMap = new GeoMap({ databases });        // the balancer's --geo-database files, or the bundled ones
 *   const { map } = await geoMap.build({ sites, pins, defaultRegion });   // write map to geo.map
 *   await geoMap.close();
 */

export interface GeoMapOptions {
  /** .mmdb files in GeoLocator's order; unset: the bundled DB-IP City Lite (IPv4 and IPv6). */
  databases?: string[];
}

export interface GeoMapResult extends GeoMapBuilt {
  /** The map as text (decoded from `map` when first read; write `map` to a file as it is). */
  readonly text: string;
  /** Lines that map a network (ipv4Entries + ipv6Entries). */
  entries: number;
  /** The map's size in bytes (UTF-8). */
  bytes: number;
  /** From build() to its answer, as the caller waits (process start included). */
  ms: number;
  /** The build itself, in the child process. */
  buildMs: number;
}

type Answer = { id: number; result: Omit<GeoMapBuilt, 'map'> & { buildMs: number }; error?: undefined } | { id: number; error: { name: string; message: string; field?: string } };

/** The child's own file: .js from dist/, .ts when the sources run through tsx (tests, benchmarks). */
const WORKER_PATH = fileURLToPath(new URL(`./geoMapWorker${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

function startWorker(workerData: GeoMapWorkerData): ChildProcess {
  return fork(WORKER_PATH, [JSON.stringify(workerData)], {
    // From the sources the child needs tsx's loader as the parent has it; the parent's other
    // flags (an inspector port, a heap limit) are not the child's.
    execArgv: WORKER_PATH.endsWith('.ts') ? ['--import', 'tsx'] : [],
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

  /** Builds the map for these regions and pins (after any build still running). */
  /**
   * `wanted`: asked when the build's turn comes; false skips it (a newer geography came meanwhile),
   * rejecting with GeoMapSkipped.
   */
  build(input: GeoMapInput, wanted: () => boolean = () => true): Promise<GeoMapResult> {
    if (this.#closed) return Promise.reject(new Error('GeoMap is closed'));
    const { sites, pins, defaultRegion } = input ?? {};
    if (!(sites instanceof Map)) return Promise.reject(new TypeError('sites must be a Map of region → positions'));
    if (!Array.isArray(pins)) return Promise.reject(new TypeError('pins must be an array'));
    if (typeof defaultRegion !== 'string') return Promise.reject(new TypeError('defaultRegion must be a region name'));
    const request: Omit<GeoMapRequest, 'id' | 'out'> = {
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

  async #run(request: Omit<GeoMapRequest, 'id' | 'out'>): Promise<GeoMapResult> {
    if (this.#closed) throw new Error('GeoMap is closed');
    const started = performance.now();
    const worker = this.#start();
    const id = this.#nextId++;
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-geomap-'));
    const out = join(dir, 'geo.map');
    worker.ref();
    worker.channel?.ref();
    let answer: Answer;
    let map = Buffer.alloc(0);
    try {
      answer = await new Promise<Answer>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        worker.send({ id, out, ...request } satisfies GeoMapRequest);
      });
      if (!answer.error) map = readFileSync(out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      this.#pending.delete(id);
      worker.unref();
      worker.channel?.unref();
    }
    if (answer.error) {
      const { name, message, field } = answer.error;
      if (name === 'ConfigError' && field) throw new ConfigError(field, message.replace(`${field}: `, ''));
      throw name === 'TypeError' ? new TypeError(message) : new Error(message);
    }
    const { result } = answer;
    let text: string | undefined;
    return {
      ...result,
      map,
      get text() {
        return (text ??= map.toString('utf8'));
      },
      entries: result.ipv4Entries + result.ipv6Entries,
      bytes: map.length,
      ms: performance.now() - started,
    };
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

/** One build in a process of its own, stopped after (GeoMap keeps one for many builds). */
export async function buildGeoMap(options: GeoMapOptions & GeoMapInput): Promise<GeoMapResult> {
  const geoMap = new GeoMap(options);
  try {
    return await geoMap.build(options);
  } finally {
    await geoMap.close();
  }
}
