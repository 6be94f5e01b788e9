import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/**
 * The one registry of the processes the tests and the benchmarks start: Relaycast nodes
 * (relaycast.ts), the libwebrtc clients (wrtc.ts), the benchmark's baseline server. Every child
 * started here is stopped: by whoever started it (stopProcess: SIGTERM, then SIGKILL after a grace
 * period), and any still running when the test runner or the benchmark exits are killed. Every wait
 * here is bounded.
 */

const running = new Set<ChildProcess>();
const hasExited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Registers a process something else spawned (a browser a driver library launched) until it exits:
 * killed if it outlives its parent, like every process spawnTracked() starts.
 */
export function track(child: ChildProcess): ChildProcess {
  if (hasExited(child)) return child;
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/** Spawns a process that is registered until it exits (and killed if it outlives its parent). */
export function spawnTracked(command: string, args: string[], options: SpawnOptions): ChildProcess {
  return track(spawn(command, args, options));
}

/**
 * Sends `signal` (SIGTERM by default), then SIGKILL after `graceMs`; resolves with the exit code
 * once the process has exited (at once if it already had).
 */
export async function stopProcess(child: ChildProcess, graceMs: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (hasExited(child)) return child.exitCode;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const [code] = (await exited) as [number | null];
  clearTimeout(timer);
  return code;
}

/**
 * Polls `check` until it returns true: every `intervalMs`, at most `timeoutMs`. Bounded in count
 * and time; a condition that never holds fails the test with `what` in the message.
 */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---- helper scripts that talk JSON lines ---------------------------------------------------------

/** One line a helper script printed: a JSON object with an `event`. */
export interface Line {
  event: string;
  [key: string]: unknown;
}

/**
 * A helper script (a libwebrtc client, the baseline server) run with tsx: it reports on stdout, one
 * JSON object a line, and takes commands on stdin, one a line.
 */
export interface Child {
  child: ChildProcess;
  pid: number;
  /** Every line it has printed so far. */
  lines: Line[];
  /** Sends one command line on stdin. */
  send(command: string): void;
  /** The next line with this event (after those already consumed by earlier calls), within `timeoutMs`. */
  next(event: string, timeoutMs?: number): Promise<Line>;
  /** Sends a command and waits for its reply event. */
  ask(command: string, event: string, timeoutMs?: number): Promise<Line>;
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  exited: Promise<void>;
}

export function startChild(script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Child {
  const child = spawnTracked(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  const lines: Line[] = [];
  const consumed = new Map<string, number>();
  const waiters: Array<{ event: string; resolve: (l: Line) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const deliver = (line: Line) => {
    const w = waiters.find((x) => x.event === line.event);
    if (!w) return false;
    waiters.splice(waiters.indexOf(w), 1);
    clearTimeout(w.timer);
    w.resolve(line);
    return true;
  };
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (!text.startsWith('{')) return;
    let line: Line;
    try {
      line = JSON.parse(text) as Line;
    } catch {
      return;
    }
    lines.push(line);
    if (deliver(line)) consumed.set(line.event, lines.filter((l) => l.event === line.event).length);
  });
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      for (const w of waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`${script} exited (${child.exitCode ?? child.signalCode}) before "${w.event}": ${JSON.stringify(lines.filter((l) => l.event === 'error'))} ${stderr.slice(-800)}`));
      }
      resolve();
    }),
  );
  const next = (event: string, timeoutMs = 60_000) => {
    const seen = lines.filter((l) => l.event === event);
    const used = consumed.get(event) ?? 0;
    if (seen.length > used) {
      consumed.set(event, used + 1);
      return Promise.resolve(seen[used]!);
    }
    if (hasExited(child)) return Promise.reject(new Error(`${script} has exited; no "${event}": ${stderr.slice(-800)}`));
    return new Promise<Line>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.findIndex((w) => w.timer === timer), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}" from ${script}`));
      }, timeoutMs);
      waiters.push({ event, resolve, reject, timer });
    });
  };
  return {
    child,
    pid: child.pid!,
    lines,
    send: (command) => void child.stdin!.write(`${command}\n`),
    next,
    ask(command, event, timeoutMs) {
      const reply = next(event, timeoutMs);
      child.stdin!.write(`${command}\n`);
      return reply;
    },
    stderr: () => stderr,
    async stop(graceMs = 5000) {
      await stopProcess(child, graceMs);
      await exited;
    },
    exited,
  };
}
