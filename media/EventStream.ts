import { randomBytes } from 'node:crypto';
import type { Response } from 'express';

/**
 * One server-to-client event stream of a WHEP session (the draft's server-sent-events extension,
 * WHATWG server-sent events): the player POSTs the events it wants, gets this stream's URL, and
 * long-polls it with GET (an EventSource). Events sent while no GET is attached wait in a short
 * queue; the stream ends with its session.
 */

/**
 * Events kept while no GET is attached (between a POST and its EventSource, or while the
 * EventSource reconnects). The events are state (layers, the current layer, viewer count), so
 * the newest few are what matters; older ones are dropped first.
 */
const MAX_QUEUED = 32;

/**
 * A comment line this often keeps proxies (HAProxy's `timeout server`, load balancers' idle
 * timeouts, usually 30–60 s) from closing a quiet stream.
 */
const KEEPALIVE_MS = 15_000;

export class EventStream {
  /** Random, unguessable: the URL of the stream is the capability to read it (an EventSource cannot send a bearer token). */
  readonly id = randomBytes(18).toString('base64url');
  readonly events: ReadonlySet<string>;
  readonly #queue: string[] = [];
  #response: Response | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(events: Iterable<string>) {
    this.events = new Set(events);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues or writes `event` with `data` as one JSON line, if the client asked for this event. */
  send(event: string, data: unknown): void {
    if (this.#closed || !this.events.has(event)) return;
    const message = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    if (this.#response) {
      this.#response.write(message);
      return;
    }
    this.#queue.push(message);
    if (this.#queue.length > MAX_QUEUED) this.#queue.shift();
  }

  /** Serves the stream on `res` (a GET); a GET already attached is ended, as a reconnecting EventSource replaces it. */
  attach(res: Response): void {
    if (this.#closed) throw new TypeError('the event stream has ended');
    this.#detach();
    res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    this.#response = res;
    for (const message of this.#queue.splice(0)) res.write(message);
    this.#keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    res.once('close', () => {
      if (this.#response === res) this.#detach();
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#detach();
  }

  #detach(): void {
    clearInterval(this.#keepalive);
    const res = this.#response;
    this.#response = undefined;
    if (res && !res.writableEnded) res.end();
  }
}
