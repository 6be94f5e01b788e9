import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * Runs test/clients/wrtc.ts (libwebrtc in Node) as a child process and collects its JSON lines.
 * The child ends by itself after `seconds`; it is killed if it overstays by 30 s.
 */
const CLIENT = fileURLToPath(new URL('../clients/wrtc.ts', import.meta.url));

export interface ClientLine {
  event: string;
  [key: string]: unknown;
}

export interface ClientRun {
  lines: ClientLine[];
  /** Resolves when the client has exited, with everything it printed. */
  done: Promise<ClientLine[]>;
  /** Resolves at the first line with this event (or rejects when the client exits without it). */
  next(event: string): Promise<ClientLine>;
  kill(): void;
}

export function runClient(args: string[], seconds: number): ClientRun {
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: ClientLine[] = [];
  const waiters: Array<{ event: string; resolve: (l: ClientLine) => void; reject: (e: Error) => void }> = [];
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (text) => {
    if (!text.startsWith('{')) return;
    const line = JSON.parse(text) as ClientLine;
    lines.push(line);
    for (const w of waiters.filter((w) => w.event === line.event)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
  const done = new Promise<ClientLine[]>((resolve) =>
    child.once('exit', () => {
      clearTimeout(timer);
      for (const w of waiters.splice(0)) w.reject(new Error(`client exited without "${w.event}": ${JSON.stringify(lines)} ${stderr.slice(-500)}`));
      resolve(lines);
    }),
  );
  return {
    lines,
    done,
    next(event) {
      const seen = lines.find((l) => l.event === event);
      if (seen) return Promise.resolve(seen);
      if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`client exited without "${event}"`));
      return new Promise((resolve, reject) => waiters.push({ event, resolve, reject }));
    },
    kill: () => child.kill('SIGKILL'),
  };
}
