import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { cpus } from 'node:os';
import { processCpuMs } from '../core/processCpu.ts';

/**
 * Processes as /proc shows them: CPU time, memory, names and children of a process (and of the
 * children it has, e.g. its mediasoup worker).
 */

/** Direct children of a process: every thread's (a child belongs to the thread that forked it). */
function children(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out = new Set<number>();
  for (const task of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/)) if (c) out.add(Number(c));
    } catch {
      // the thread ended meanwhile
    }
  }
  return [...out];
}

/** The process's command name (/proc/<pid>/comm: at most 15 characters), or '' once it is gone. */
export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Resident memory of the process (VmRSS), in kB; 0 once it is gone. */
export function rssKb(pid: number): number {
  try {
    return Number.parseInt(/^VmRSS:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0', 10);
  } catch {
    return 0;
  }
}

/** Whether the process runs (a zombie waiting for its parent to reap it counts as gone). */
export function isRunning(pid: number): boolean {
  try {
    const state = /^State:\s*(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return state !== undefined && state !== 'Z';
  } catch {
    return false;
  }
}

/** mediasoup's worker, whatever its build named the binary: comm is cut to "mediasoup-worke". */
export const isMediaWorker = (pid: number) => commOf(pid).startsWith('mediasoup-worke');

/** CPU seconds (user + system) so far of these processes and (unless told not to), recursively, their running children. */
export function cpuSeconds(pids: number[], withChildren = true): number {
  let total = 0;
  const seen = new Set<number>();
  const visit = (pid: number) => {
    if (seen.has(pid)) return;
    seen.add(pid);
    total += processCpuMs(pid) ?? 0;
    if (withChildren) for (const c of children(pid)) visit(c);
  };
  for (const pid of pids) visit(pid);
  return total / 1000;
}

/** A CPU meter over a window: start() then read() gives cores used (1 = one core busy) in between. */
export class CpuWindow {
  readonly #pids: () => number[];
  readonly #children: boolean;
  #start = { cpu: 0, at: 0 };

  /** `children: false` counts the listed processes only, not their children. */
  constructor(pids: number[] | (() => number[]), options: { children?: boolean } = {}) {
    this.#pids = typeof pids === 'function' ? pids : () => pids;
    this.#children = options.children ?? true;
  }

  #seconds(): number {
    return cpuSeconds(this.#pids(), this.#children);
  }

  start(): void {
    this.#start = { cpu: this.#seconds(), at: performance.now() };
  }

  /** Cores used since start(). */
  read(): number {
    const seconds = (performance.now() - this.#start.at) / 1000;
    return seconds > 0 ? (this.#seconds() - this.#start.cpu) / seconds : 0;
  }
}

/** The whole machine's busy share over a window, from /proc/stat: cores busy (any process). */
export class MachineCpu {
  #start = MachineCpu.#read();

  static #read(): { busy: number; total: number } {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
    const idle = line[3]! + (line[4] ?? 0);
    const total = line.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  }

  start(): void {
    this.#start = MachineCpu.#read();
  }

  /** Cores busy since start(). */
  read(): number {
    const now = MachineCpu.#read();
    const total = now.total - this.#start.total;
    return total > 0 ? ((now.busy - this.#start.busy) / total) * cpus().length : 0;
  }
}

export function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** These processes and, recursively, their children. */
export function processTree(pids: number[]): number[] {
  const out = new Set<number>();
  const visit = (pid: number) => {
    if (out.has(pid)) return;
    out.add(pid);
    for (const c of children(pid)) visit(c);
  };
  for (const pid of pids) visit(pid);
  return [...out];
}

/**
 * Datagrams the kernel dropped because a socket's receive buffer was full (the process did not
 * read in time), per socket inode, for the UDP sockets these processes hold (/proc/net/udp[6]).
 */
export function udpDrops(pids: number[]): Map<string, number> {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  const drops = new Map<string, number>();
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13 || !inodes.has(f[9]!)) continue;
      drops.set(f[9]!, Number(f[12]));
    }
  }
  return drops;
}

/** Drops between two udpDrops() readings (sockets opened in between count from zero). */
export function dropsBetween(before: Map<string, number>, after: Map<string, number>): number {
  let total = 0;
  for (const [inode, n] of after) total += n - (before.get(inode) ?? 0);
  return total;
}
