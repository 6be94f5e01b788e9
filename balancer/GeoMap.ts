import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../core/errors.ts';
import type { GeoMapBuilt, GeoMapInput } from './GeoMapBuilder.ts';
import type { GeoMapRequest, GeoMapWorkerData } from './geoMapWorker.ts';

/**
 * HAProxy's geo map for the whole GeoIP database (see GeoMapBuilder for what is in it), built in
 * a worker thread: a build takes seconds of CPU for the bundled DB-IP City Lite (15 million
 * networks), which the balancer's event loop must not wait through. The worker opens the
 * databases at the first build and keeps them, with every record's decoded position, for the
 * next builds (seconds less each; ~350 MB of RSS held) until close(). Builds run one at a time.
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
  /** From build() to its answer, as the caller waits (worker start and database reading included). */
  ms: number;
  /** The build itself, in the worker. */
  buildMs: number;
}

type Answer = { id: number; result: Omit<GeoMapBuilt, 'map'> & { map: Uint8Array; buildMs: number }; error?: undefined } | { id: number; error: { name: string; message: string; field?: string } };

/** The worker's own file: .js from dist/, .ts when the sources run through tsx (tests, benchmarks). */
const WORKER_URL = new URL(`./geoMapWorker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

function startWorker(workerData: GeoMapWorkerData): Worker {
  if (WORKER_URL.pathname.endsWith('.js')) return new Worker(WORKER_URL, { workerData });
  // From the sources: Node 20 runs the parent's `--import tsx` in a worker but not its loader
  // hooks, so the worker registers them (tsx's ESM API) before it loads the .ts file.
  const manifest = createRequire(import.meta.url).resolve('tsx/package.json');
  const { exports } = JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
  const api = pathToFileURL(join(dirname(manifest), exports['./esm/api']!.import.default)).href;
  const boot = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

export class GeoMap {
  readonly #data: GeoMapWorkerData;
  #worker: Worker | undefined;
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
  build(input: GeoMapInput): Promise<GeoMapResult> {
    if (this.#closed) return Promise.reject(new Error('GeoMap is closed'));
    const { sites, pins, defaultRegion } = input ?? {};
    if (!(sites instanceof Map)) return Promise.reject(new TypeError('sites must be a Map of region → positions'));
    if (!Array.isArray(pins)) return Promise.reject(new TypeError('pins must be an array'));
    if (typeof defaultRegion !== 'string') return Promise.reject(new TypeError('defaultRegion must be a region name'));
    const request: Omit<GeoMapRequest, 'id'> = {
      sites: [...(sites as GeoMapInput['sites'])].map(([name, positions]) => [name, positions.map(({ lat, lon }) => ({ lat, lon }))]),
      pins: pins.map(({ cidr, region, lat, lon }) => ({ cidr, region, lat, lon })),
      defaultRegion,
    };
    const run = this.#queue.then(() => this.#run(request));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Stops the worker (a build under way is rejected). */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker) await worker.terminate();
  }

  async #run(request: Omit<GeoMapRequest, 'id'>): Promise<GeoMapResult> {
    if (this.#closed) throw new Error('GeoMap is closed');
    const started = performance.now();
    const worker = this.#start();
    const id = this.#nextId++;
    worker.ref();
    let answer: Answer;
    try {
      answer = await new Promise<Answer>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        worker.postMessage({ id, ...request } satisfies GeoMapRequest);
      });
    } finally {
      this.#pending.delete(id);
      worker.unref();
    }
    if (answer.error) {
      const { name, message, field } = answer.error;
      if (name === 'ConfigError' && field) throw new ConfigError(field, message.replace(`${field}: `, ''));
      throw name === 'TypeError' ? new TypeError(message) : new Error(message);
    }
    const { result } = answer;
    const map = Buffer.from(result.map.buffer, result.map.byteOffset, result.map.byteLength);
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

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = startWorker(this.#data);
    worker.unref();
    const fail = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const { reject } of this.#pending.values()) reject(error);
    };
    worker.on('message', (answer: Answer) => this.#pending.get(answer.id)?.resolve(answer));
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the geo map worker exited (code ${code})`)));
    this.#worker = worker;
    return worker;
  }
}

/** One build in a worker of its own, stopped after (GeoMap keeps one for many builds). */
export async function buildGeoMap(options: GeoMapOptions & GeoMapInput): Promise<GeoMapResult> {
  const geoMap = new GeoMap(options);
  try {
    return await geoMap.build(options);
  } finally {
    await geoMap.close();
  }
}
