import { fileURLToPath } from 'node:url';
import { startChild, type Line } from './processes.ts';

/**
 * Starting the libwebrtc client (kit/clients/wrtc.ts) from a test or a benchmark. A long-lived
 * client driven by commands (a benchmark's publisher, a load generator's `view`) is started with
 * startChild(WRTC_CLIENT, args) (processes.ts); a client that runs for a while and ends by itself
 * (the tests' publisher, `play`) with publishClient() or playClient(), which collect its lines and
 * kill it if it overstays its `seconds` by OVERSTAY_MS.
 */
export const WRTC_CLIENT = fileURLToPath(new URL('./clients/wrtc.ts', import.meta.url));

/**
 * How long past its `seconds` a client may run before it is killed: a `play` viewer waits up to
 * 20 s more for its frames (clients/play.ts EXTRA_PLAY_MS), and leaving takes a moment.
 */
const OVERSTAY_MS = 30_000;

export type ClientLine = Line;

export interface ClientRun {
  lines: ClientLine[];
  /** Resolves when the client has exited, with everything it printed. */
  done: Promise<ClientLine[]>;
  /** Resolves at the first line with this event (or rejects when the client exits without it). */
  next(event: string): Promise<ClientLine>;
  kill(): void;
}

/** Runs the client with `args`; it ends by itself after `seconds`, and is killed OVERSTAY_MS later. */
export function runClient(args: string[], seconds: number): ClientRun {
  const client = startChild(WRTC_CLIENT, args);
  const limitMs = seconds * 1000 + OVERSTAY_MS;
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

/**
 * A publisher of the synthetic source to one WHIP URL for `seconds`, after which it DELETEs its
 * session and exits. Lines: `answer` (status, location), `connected`, `ready`, `ended` if its
 * connection fails or closes under it.
 */
export function publishClient(url: string, token: string, seconds: number): ClientRun {
  return runClient(['publish', '--target', url, '--token', token, '--seconds', String(seconds)], seconds);
}

/**
 * `viewers` viewers (default 1) of one WHEP URL for `seconds` (and until each connected one has
 * decoded a second of video, within a bound). Lines: `answer`, `connected`, `first-frame` per
 * viewer, then `stats` ({viewers: [{frames, width, audioPackets, firstFrameMs, …}]}). With
 * `phases`, a `phases` line per viewer: its steps to the first frame (clients/phases.ts). With
 * `h264`, receive-only viewers offering H.264 (they decode nothing: no `first-frame`). With
 * `counterOffer`, viewers that take the edge's WHEP counter-offer (clients/negotiate.ts).
 */
export function playClient(url: string, options: { seconds: number; viewers?: number; token?: string; phases?: boolean; h264?: boolean; counterOffer?: boolean }): ClientRun {
  const args = ['play', '--url', url, '--viewers', String(options.viewers ?? 1), '--seconds', String(options.seconds)];
  if (options.token) args.push('--token', options.token);
  if (options.phases) args.push('--phases');
  if (options.h264) args.push('--h264');
  if (options.counterOffer) args.push('--counter-offer');
  return runClient(args, options.seconds);
}
