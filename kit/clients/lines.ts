/**
 * How a client process (wrtc.ts) talks to the test or benchmark that started it: reports leave on
 * stdout, one JSON object a line ({"event": …, …}); commands arrive on stdin, one a line.
 */
import { createInterface } from 'node:readline';

const started = Date.now();

/** Milliseconds since this client started: the `ms` of its `connected` and `ended` lines. */
export const elapsed = (): number => Date.now() - started;

export function emit(event: string, data: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

/**
 * Runs `handler` for each command line, one at a time, in order; a failing command is reported as
 * an `error` line and the next one runs. When stdin closes (the parent is gone or done), `onEnd`
 * runs after the commands already queued.
 */
export function commands(handler: (words: string[]) => Promise<void>, onEnd: () => Promise<void>): void {
  const rl = createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    queue = queue.then(() => handler(words)).catch((error) => emit('error', { command: words[0], message: (error as Error).message }));
  });
  rl.on('close', () => void queue.then(onEnd));
}
