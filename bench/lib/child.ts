import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * A benchmark helper process (a media client, the baseline server) that talks JSON lines on
 * stdout and takes commands on stdin. Every one started is killed when the suite exits.
 */

export interface Line {
  event: string;
  [key: string]: unknown;
}

export interface Child {
  child: ChildProcess;
  pid: number;
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

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export const MEDIA_CLIENT = fileURLToPath(new URL('../clients/media.ts', import.meta.url));
export const BASELINE_SERVER = fileURLToPath(new URL('../baseline/server.ts', import.meta.url));

export function startChild(script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  running.add(child);
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
      running.delete(child);
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
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`${script} has exited; no "${event}": ${stderr.slice(-800)}`));
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
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    exited,
  };
}
