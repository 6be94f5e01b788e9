/**
 * The events Relaycast tells an operator's endpoints about (balancer/WebhookDispatcher.ts), by
 * name. A name, once published, keeps its meaning; `data` may gain fields, never lose them.
 * Every call's body is a `WebhookEnvelope`; events of one subject (a stream, a node) arrive in
 * the order they happened, each at least once (deduplicate on `id`).
 */
export const WEBHOOK_EVENT_TYPES = [
  /** A publisher went live: `{stream, origin: {id, region}, protocol, codecs}`. */
  'stream.published',
  /** A publish ended: `{stream, origin, reason}` (reason: the publisher left, was kicked, its origin died). */
  'stream.unpublished',
  /** A stream went live on another origin than its last publish, soon after it ended there (failover): `{stream, from, to}`. */
  'stream.moved',
  /** A stream's viewers crossed a threshold (`crossed`: up or down), or the periodic count: `{stream, viewers, threshold, crossed}`. */
  'stream.viewers',
  /** A node registered: `{node: {id, region, roles}}`. */
  'node.up',
  /** A node ended: `{node, reason: dead|gone, streams}` (dead: its heartbeats stopped; gone: it shut down). */
  'node.down',
  /** An operator drained a node, or ended its drain: `{node, draining}`. */
  'node.draining',
  /** A recording began: `{stream, recording: {id, startedAt, playlistPath}}`. */
  'recording.started',
  /** A recording ended with its stream: `{stream, recording: {id, startedAt, endedAt, duration, bytes, playlistPath, exportPath}}` (paths under the balancer)`. */
  'recording.finished',
  /** A recording was deleted (by retention or the admin API): `{stream, recording: {id}, by}`. */
  'recording.deleted',
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The JSON body of every event call. */
export interface WebhookEnvelope {
  /** Unique per event, the same on every attempt and replay: the `webhook-id` header too. */
  id: string;
  type: WebhookEventType;
  /** When the change happened (ISO 8601). */
  timestamp: string;
  /** stream:<name> or node:<id>: events of one subject arrive in order. */
  subject: string;
  /** Increases with each event of a subject (across subjects too, with gaps). */
  sequence: number;
  data: Record<string, unknown>;
}

export const streamSubject = (name: string) => `stream:${name}`;
export const nodeSubject = (id: string) => `node:${id}`;
