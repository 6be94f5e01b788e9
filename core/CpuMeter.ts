import { cpus } from 'node:os';

/**
 * The machine's CPU use between two readings, 0..1 over all cores. The machine's, not the
 * process's: mediasoup workers are child processes, and a balancer cares whether the box is busy.
 */
export class CpuMeter {
  #last = CpuMeter.#sample();

  static #sample(): { idle: number; total: number } {
    let idle = 0;
    let total = 0;
    for (const cpu of cpus()) {
      const t = cpu.times;
      idle += t.idle;
      total += t.user + t.nice + t.sys + t.idle + t.irq;
    }
    return { idle, total };
  }

  /** Use since the previous call (or since construction). */
  read(): number {
    const now = CpuMeter.#sample();
    const total = now.total - this.#last.total;
    const idle = now.idle - this.#last.idle;
    this.#last = now;
    if (total <= 0) return 0;
    return Math.min(1, Math.max(0, 1 - idle / total));
  }
}
