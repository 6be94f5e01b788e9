import { fileURLToPath } from 'node:url';
import { startChild, type Line } from './processes.ts';

/**
 * Runs test/clients/wrtc.ts (libwebrtc in Node) as a child process (processes.ts, as the
 * benchmark's clients are) and collects its JSON lines.
 * The child ends by itself after `seconds`; it is killed if it overstays by 30 s.
 */
const CLIENT = fileURLToPath(new URL('../test/clients/wrtc.ts', import.meta.url));
export const MEDIA_CLIENT = fileURLToPath(new URL('../bench/clients/media.ts', import.meta.url));

export type ClientLine = Line;

export interface ClientRun {
  lines: ClientLine[];
  /** Resolves when the client has exited, with everything it printed. */
  done: Promise<ClientLine[]>;
  /** Resolves at the first line with this event (or rejects when the client exits without it). */
  next(event: string): Promise<ClientLine>;
  kill(): void;
}

export function runClient(args: string[], seconds: number): ClientRun {
  const client = startChild(CLIENT, args);
  const limitMs = (seconds + 30) * 1000;
  const timer = setTimeout(() => client.child.kill('SIGKILL'), limitMs);
  const done = client.exited.then(() => {
    clearTimeout(timer);
    return client.lines;
  });
  return {
    lines: client.lines,
    done,
    next(event) {
      const seen = client.lines.find((l) => l.event === event);
      return seen ? Promise.resolve(seen) : client.next(event, limitMs);
    },
    kill: () => client.child.kill('SIGKILL'),
  };
}
