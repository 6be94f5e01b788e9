/**
 * The node's own CPU use between two readings, 0..1 of the cores it may use: this process plus
 * its mediasoup workers (child processes, so the process's own figures miss them), over the
 * number of workers. Its own, not the machine's: a balancer must not take an edge for full
 * because a neighbour on the same machine is busy, and on a dedicated machine the two agree.
 */
export class CpuMeter {
  readonly #workersCpuMs: () => Promise<number>;
  readonly #cores: number;
  #last: { at: number; cpuMs: number } | undefined;

  /** `workersCpuMs` sums the workers' user + system CPU time so far, in ms; `cores` is the share's denominator. */
  constructor(workersCpuMs: () => Promise<number>, cores: number) {
    this.#workersCpuMs = workersCpuMs;
    this.#cores = Math.max(1, cores);
  }

  async #sample(): Promise<{ at: number; cpuMs: number }> {
    const own = process.cpuUsage();
    const workers = await this.#workersCpuMs().catch(() => 0);
    return { at: performance.now(), cpuMs: (own.user + own.system) / 1000 + workers };
  }

  /** Use since the previous call (0 on the first). */
  async read(): Promise<number> {
    const now = await this.#sample();
    const last = this.#last;
    this.#last = now;
    if (!last || now.at <= last.at) return 0;
    return Math.min(1, Math.max(0, (now.cpuMs - last.cpuMs) / (now.at - last.at) / this.#cores));
  }
}
