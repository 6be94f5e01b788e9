import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as mediasoup from 'mediasoup';
import type { Worker } from 'mediasoup/types';
import type { Logger } from '../core/logger.ts';
import type { RtcListen } from './WebRtcSession.ts';
import type { Metrics } from '../core/metrics.ts';
import { processCpuMs } from '../core/processCpu.ts';

export interface WorkerPoolOptions {
  count: number;
  /** mediasoup-worker binary; see WorkerPool.resolveWorkerBin(). */
  workerBin?: string;
  logger: Logger;
  metrics?: Metrics;
}

export interface WorkerPoolEvents {
  /** A worker died; everything it carried (routers, transports) is gone with it. */
  workerdied: [index: number, worker: Worker, error: Error];
  /** A replacement worker is running at `index`. */
  workerreplaced: [index: number, worker: Worker];
}

/**
 * How long to wait before replacing a worker that died, and again after a failed replacement. Long
 * enough that a binary crashing at start-up does not spin a core, short enough that the node is
 * back to full capacity within a couple of seconds.
 */
const RESPAWN_DELAY_MS = 1000;

/**
 * One mediasoup worker per core (vertical scaling inside a node). A worker that dies is logged,
 * counted and replaced; the pool never shrinks while it is open.
 */
export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  readonly #workerBin: string | undefined;
  readonly #logger: Logger;
  readonly #metrics?: Metrics;
  readonly #workers: Array<Worker | undefined>;
  #next = 0;
  #closed = false;
  readonly #respawnTimers = new Set<NodeJS.Timeout>();

  private constructor(options: WorkerPoolOptions) {
    super();
    this.#workerBin = options.workerBin;
    this.#logger = options.logger.child({ component: 'media' });
    this.#metrics = options.metrics;
    this.#workers = new Array<Worker | undefined>(options.count).fill(undefined);
  }

  /**
   * The worker binary to run: the one configured (or MEDIASOUP_WORKER_BIN), else the one
   * scripts/setup.sh built offline if it is there, else mediasoup's own (downloaded by npm install).
   * `version`: the mediasoup version it must match (another installation's, for the benchmark's
   * comparison of versions); the project's by default.
   */
  static resolveWorkerBin(configured?: string, version = mediasoup.version): string | undefined {
    if (configured) return configured;
    const built = join(homedir(), '.cache', 'mediasoup-worker', `mediasoup-worker-${version}-static-openssl`);
    return existsSync(built) ? built : undefined;
  }

  static async create(options: WorkerPoolOptions): Promise<WorkerPool> {
    if (!Number.isInteger(options.count) || options.count < 1) {
      throw new TypeError(`WorkerPool count must be a positive integer, got ${options.count}`);
    }
    const pool = new WorkerPool(options);
    try {
      for (let i = 0; i < options.count; i++) pool.#workers[i] = await pool.#spawn(i);
    } catch (error) {
      await pool.close();
      throw error;
    }
    pool.#logger.info({ workers: options.count, workerBin: pool.#workerBin ?? 'mediasoup default' }, 'media workers running');
    return pool;
  }

  /** The running workers (a dead one is absent until replaced). */
  get workers(): Worker[] {
    return this.#workers.filter((w): w is Worker => w !== undefined);
  }

  /**
   * User + system CPU time the running workers have used so far, in ms. Read from /proc where
   * there is one: asking the worker (getResourceUsage) queues behind its other requests, seconds
   * deep during a join storm, just when the reading matters most.
   */
  async cpuMs(): Promise<number> {
    const used = await Promise.all(this.workers.map(async (w) => processCpuMs(w.pid) ?? (await w.getResourceUsage().then((u) => u.ru_utime + u.ru_stime, () => 0))));
    return used.reduce((sum, ms) => sum + ms, 0);
  }

  /** The next running worker, round robin. */
  next(): Worker {
    for (let tried = 0; tried < this.#workers.length; tried++) {
      const worker = this.#workers[this.#next];
      this.#next = (this.#next + 1) % this.#workers.length;
      if (worker && !worker.closed) return worker;
    }
    throw new Error('no mediasoup worker is running');
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#respawnTimers) clearTimeout(timer);
    this.#respawnTimers.clear();
    for (const worker of this.#workers) worker?.close();
    this.#workers.fill(undefined);
    this.#metrics?.mediaWorkers.set(0);
  }

  async #spawn(index: number): Promise<Worker> {
    const worker = await mediasoup.createWorker({ workerBin: this.#workerBin, logLevel: 'warn', appData: { index } });
    worker.on('died', (error) => this.#onDied(index, worker, error));
    WorkerPool.#keepThroughSignals(worker);
    this.#metrics?.mediaWorkers.set(this.workers.length + 1);
    return worker;
  }

  /**
   * mediasoup closes every worker as soon as the process gets SIGINT or SIGTERM (a listener of its
   * own on `process`). That would cut every viewer off before a draining edge has moved them, so
   * the listener goes: shutdown is ClusterNode's, which closes the pool last. (The listener is a
   * private member of mediasoup's Worker; if a release renames it, this does nothing and the
   * failover test's SIGTERM drain fails.)
   */
  static #keepThroughSignals(worker: Worker): void {
    const onSignal = (worker as unknown as { onSignal?: (signal: NodeJS.Signals) => void }).onSignal;
    if (typeof onSignal !== 'function') return;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }

  #onDied(index: number, worker: Worker, error: Error): void {
    if (this.#workers[index] === worker) this.#workers[index] = undefined;
    this.#metrics?.mediaWorkers.set(this.workers.length);
    if (this.#closed) return;
    this.#logger.error({ worker: index, pid: worker.pid, err: error }, 'media worker died; replacing it');
    this.emit('workerdied', index, worker, error);
    this.#scheduleRespawn(index);
  }

  #scheduleRespawn(index: number): void {
    const timer = setTimeout(async () => {
      this.#respawnTimers.delete(timer);
      if (this.#closed) return;
      try {
        const worker = await this.#spawn(index);
        if (this.#closed) {
          worker.close();
          return;
        }
        this.#workers[index] = worker;
        this.#metrics?.mediaWorkerRestarts.inc();
        this.#logger.warn({ worker: index, pid: worker.pid }, 'media worker replaced');
        this.emit('workerreplaced', index, worker);
      } catch (error) {
        this.#logger.error({ worker: index, err: error }, 'could not replace media worker; trying again');
        this.#scheduleRespawn(index);
      }
    }, RESPAWN_DELAY_MS);
    this.#respawnTimers.add(timer);
  }
}

/** What a role that carries media (origin, edge) gets beyond the kernel's RoleContext. */
export interface MediaContext {
  workers: WorkerPool;
  rtc: RtcListen;
  /** Bits/s the whole node sends now (every role's viewers and relays): measured if that is quick, else the last measure. */
  egressSent: () => Promise<number>;
}
