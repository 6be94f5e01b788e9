import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { WebhookEnvelope, WebhookEventType } from '../../core/webhookEvents.ts';

/**
 * The webhook tables (migration 009): endpoints, the event outbox and the deliveries. Events are
 * written with `recordEvent` inside the transaction of the change they report, so a crash between
 * the change and the call loses nothing; the balancers' dispatchers claim and send them.
 */

export interface WebhookEvent {
  type: WebhookEventType;
  subject: string;
  data: Record<string, unknown>;
}

/**
 * Appends events to the outbox, with a pending delivery for each enabled endpoint that takes
 * them. Call it in the transaction of the change, after the change: it takes a transaction-scoped
 * lock on each subject so that events of one subject are numbered in the order they commit (the
 * dispatcher must never see a later one before an earlier one).
 */
export async function recordEvent(db: Knex, events: WebhookEvent | WebhookEvent[]): Promise<void> {
  const list = Array.isArray(events) ? events : [events];
  if (list.length === 0) return;
  await db.transaction(async (trx) => {
    // Sorted, so that two writers of the same subjects take the locks in one order.
    for (const subject of [...new Set(list.map((e) => e.subject))].sort()) {
      await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [subject]);
    }
    for (const event of list) {
      const [row] = (await trx('webhook_events')
        .insert({ id: `evt_${randomUUID()}`, type: event.type, subject: event.subject, data: JSON.stringify(event.data) })
        .returning('seq')) as Array<{ seq: string | number }>;
      await trx.raw(
        `insert into webhook_deliveries (event_seq, endpoint_id, subject)
         select ?, id, ? from webhook_endpoints where enabled and (events @> '["*"]'::jsonb or events @> ?::jsonb)
         order by id`,
        [row!.seq, event.subject, JSON.stringify([event.type])],
      );
    }
  });
}

export interface WebhookEndpoint {
  id: string;
  url: string;
  events: string[];
  description: string;
  enabled: boolean;
  createdAt: Date;
}

interface EndpointRow {
  id: string;
  url: string;
  secret: string;
  events: string[];
  description: string;
  enabled: boolean;
  created_at: Date | string;
}

const toEndpoint = (row: EndpointRow): WebhookEndpoint => ({
  id: row.id,
  url: row.url,
  events: row.events,
  description: row.description,
  enabled: row.enabled,
  createdAt: new Date(row.created_at),
});

export async function createEndpoint(db: Knex, endpoint: { url: string; secret: string; events: string[]; description?: string; enabled?: boolean }): Promise<WebhookEndpoint> {
  const [row] = (await db('webhook_endpoints')
    .insert({
      id: `wh_${randomBytes(12).toString('base64url')}`,
      url: endpoint.url,
      secret: endpoint.secret,
      events: JSON.stringify(endpoint.events),
      description: endpoint.description ?? '',
      enabled: endpoint.enabled ?? true,
    })
    .returning('*')) as EndpointRow[];
  return toEndpoint(row!);
}

export async function listEndpoints(db: Knex): Promise<WebhookEndpoint[]> {
  const rows: EndpointRow[] = await db('webhook_endpoints').orderBy('created_at').orderBy('id');
  return rows.map(toEndpoint);
}

export async function getEndpoint(db: Knex, id: string): Promise<WebhookEndpoint | undefined> {
  const row: EndpointRow | undefined = await db('webhook_endpoints').where({ id }).first();
  return row && toEndpoint(row);
}

/** Changes an endpoint; undefined when there is none. A new secret applies from the next attempt. */
export async function updateEndpoint(
  db: Knex,
  id: string,
  changes: { url?: string; secret?: string; events?: string[]; description?: string; enabled?: boolean },
): Promise<WebhookEndpoint | undefined> {
  const columns: Record<string, unknown> = {};
  if (changes.url !== undefined) columns.url = changes.url;
  if (changes.secret !== undefined) columns.secret = changes.secret;
  if (changes.events !== undefined) columns.events = JSON.stringify(changes.events);
  if (changes.description !== undefined) columns.description = changes.description;
  if (changes.enabled !== undefined) Object.assign(columns, { enabled: changes.enabled, retry_at: null, failures: 0 });
  if (Object.keys(columns).length === 0) return getEndpoint(db, id);
  const [row] = (await db('webhook_endpoints').where({ id }).update(columns).returning('*')) as EndpointRow[];
  return row && toEndpoint(row);
}

/** Deletes an endpoint with its deliveries; false when there was none. */
export async function deleteEndpoint(db: Knex, id: string): Promise<boolean> {
  return (await db('webhook_endpoints').where({ id }).delete()) === 1;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface WebhookDelivery {
  id: string;
  endpointId: string;
  event: WebhookEnvelope;
  state: DeliveryState;
  attempts: number;
  nextAttemptAt: Date | null;
  lastAttemptAt: Date | null;
  lastNode: string | null;
  lastStatus: number | null;
  lastError: string | null;
  deliveredAt: Date | null;
  replayOf: string | null;
  createdAt: Date;
}

interface DeliveryRow {
  id: string | number;
  endpoint_id: string;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: Date | string;
  last_attempt_at: Date | string | null;
  last_node: string | null;
  last_status: number | null;
  last_error: string | null;
  delivered_at: Date | string | null;
  replay_of: string | number | null;
  created_at: Date | string;
  event_id: string;
  event_seq: string | number;
  type: WebhookEventType;
  subject: string;
  data: Record<string, unknown>;
  event_created_at: Date | string;
}

const date = (value: Date | string | null) => (value === null ? null : new Date(value));

export const envelopeOf = (row: Pick<DeliveryRow, 'event_id' | 'event_seq' | 'type' | 'subject' | 'data' | 'event_created_at'>): WebhookEnvelope => ({
  id: row.event_id,
  type: row.type,
  timestamp: new Date(row.event_created_at).toISOString(),
  subject: row.subject,
  sequence: Number(row.event_seq),
  data: row.data,
});

const toDelivery = (row: DeliveryRow): WebhookDelivery => ({
  id: String(row.id),
  endpointId: row.endpoint_id,
  event: envelopeOf(row),
  state: row.state,
  attempts: row.attempts,
  nextAttemptAt: row.state === 'pending' ? date(row.next_attempt_at) : null,
  lastAttemptAt: date(row.last_attempt_at),
  lastNode: row.last_node,
  lastStatus: row.last_status,
  lastError: row.last_error,
  deliveredAt: date(row.delivered_at),
  replayOf: row.replay_of === null ? null : String(row.replay_of),
  createdAt: new Date(row.created_at),
});

const deliveryColumns = [
  'd.id',
  'd.endpoint_id',
  'd.state',
  'd.attempts',
  'd.next_attempt_at',
  'd.last_attempt_at',
  'd.last_node',
  'd.last_status',
  'd.last_error',
  'd.delivered_at',
  'd.replay_of',
  'd.created_at',
  'e.id as event_id',
  'e.seq as event_seq',
  'e.type',
  'e.subject',
  'e.data',
  'e.created_at as event_created_at',
];

/** An endpoint's deliveries, newest first; `before` pages on. */
export async function listDeliveries(
  db: Knex,
  filter: { endpointId: string; state?: DeliveryState; subject?: string; before?: string; limit?: number },
): Promise<WebhookDelivery[]> {
  const query = db('webhook_deliveries as d')
    .join('webhook_events as e', 'e.seq', 'd.event_seq')
    .where('d.endpoint_id', filter.endpointId)
    .orderBy('d.id', 'desc')
    .limit(filter.limit ?? 100)
    .select(deliveryColumns);
  if (filter.state) query.where('d.state', filter.state);
  if (filter.subject) query.where('d.subject', filter.subject);
  if (filter.before !== undefined) query.where('d.id', '<', filter.before);
  const rows: DeliveryRow[] = await query;
  return rows.map(toDelivery);
}

export async function getDelivery(db: Knex, id: string): Promise<WebhookDelivery | undefined> {
  const row: DeliveryRow | undefined = await db('webhook_deliveries as d').join('webhook_events as e', 'e.seq', 'd.event_seq').where('d.id', id).first(deliveryColumns);
  return row && toDelivery(row);
}

/**
 * Sends a delivery's event again, as a new delivery at the end of its subject's queue (so the
 * events after it are not held back by it), with the same event id. Undefined when there is none.
 */
export async function replayDelivery(db: Knex, id: string): Promise<WebhookDelivery | undefined> {
  const [row] = (await db
    .insert(db('webhook_deliveries').where({ id }).select('event_seq', 'endpoint_id', 'subject', db.raw('? as replay_of', [id])))
    .into(db.raw('webhook_deliveries (event_seq, endpoint_id, subject, replay_of)'))
    .returning('id')) as Array<{ id: string | number }>;
  return row && getDelivery(db, String(row.id));
}

/** One delivery a dispatcher is sending: what to send, where, and with which secret. */
export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  url: string;
  secret: string;
  attempts: number;
  createdAt: Date;
  event: WebhookEnvelope;
}

/**
 * Leases up to `limit` deliveries due now for `owner`, each the oldest pending one of its endpoint
 * and subject (so events of a subject go out one at a time, in order), skipping endpoints that
 * are backing off and deliveries another dispatcher holds. The lease lasts `leaseMs`: a
 * dispatcher that dies mid-call leaves its deliveries to the others once it passes.
 */
export async function claimDeliveries(db: Knex, options: { owner: string; nodeId: string; limit: number; leaseMs: number }): Promise<ClaimedDelivery[]> {
  // The queues' heads are found by walking the partial index (endpoint_id, subject, id) one queue
  // at a time (a loose index scan: one probe per queue with pending deliveries), not by testing
  // every pending delivery for an older one: a stream with a backlog of thousands (an endpoint
  // down for hours) costs one probe, not a scan of its backlog on every claim.
  const { rows } = (await db.raw(
    `with recursive queues as (
       (select endpoint_id, subject, id from webhook_deliveries
         where state = 'pending' order by endpoint_id, subject, id limit 1)
       union all
       select n.endpoint_id, n.subject, n.id from queues q,
         lateral (select endpoint_id, subject, id from webhook_deliveries
                   where state = 'pending' and (endpoint_id, subject) > (q.endpoint_id, q.subject)
                   order by endpoint_id, subject, id limit 1) n),
     heads as (
       select d.id from webhook_deliveries d
       join queues q on q.id = d.id
       join webhook_endpoints w on w.id = d.endpoint_id
       where d.state = 'pending' and d.next_attempt_at <= now()
         and (d.lease_until is null or d.lease_until < now())
         and w.enabled and (w.retry_at is null or w.retry_at <= now())
       order by d.id
       limit ?
       for update of d skip locked)
     update webhook_deliveries u
        set lease_owner = ?, lease_until = now() + make_interval(secs => ?), attempts = u.attempts + 1,
            last_attempt_at = now(), last_node = ?
       from heads, webhook_endpoints w, webhook_events e
      where u.id = heads.id and w.id = u.endpoint_id and e.seq = u.event_seq
     returning u.id, u.endpoint_id, u.attempts, u.created_at, w.url, w.secret,
               e.id as event_id, e.seq as event_seq, e.type, e.subject, e.data, e.created_at as event_created_at`,
    [options.limit, options.owner, options.leaseMs / 1000, options.nodeId],
  )) as { rows: Array<DeliveryRow & { url: string; secret: string }> };
  return rows
    .map((row) => ({
      id: String(row.id),
      endpointId: row.endpoint_id,
      url: row.url,
      secret: row.secret,
      attempts: row.attempts,
      createdAt: new Date(row.created_at),
      event: envelopeOf(row),
    }))
    .sort((a, b) => Number(a.id) - Number(b.id));
}

/** The endpoint took it (a 2xx). Clears the endpoint's backoff. */
export async function markDelivered(db: Knex, delivery: { id: string; endpointId: string; owner: string; status: number }): Promise<void> {
  await db.transaction(async (trx) => {
    await trx('webhook_deliveries')
      .where({ id: delivery.id, lease_owner: delivery.owner })
      .update({ state: 'delivered', delivered_at: trx.fn.now(), last_status: delivery.status, last_error: null, lease_owner: null, lease_until: null });
    await trx('webhook_endpoints').where({ id: delivery.endpointId }).whereNot({ failures: 0 }).update({ retry_at: null, failures: 0 });
  });
}

/**
 * The attempt failed: the delivery waits `retryInMs`, or is given up (`failed`, kept) when it is
 * older than `giveUpMs`. `unreachable` (no HTTP answer at all) also makes its whole endpoint
 * wait `endpointRetryInMs(failures)`, so a dead endpoint gets one probe per backoff, not one per stream.
 */
export async function markAttemptFailed(
  db: Knex,
  delivery: { id: string; endpointId: string; owner: string; status?: number; error: string; retryInMs: number; giveUpMs: number; unreachable: boolean },
  endpointRetryInMs: (failures: number) => number,
): Promise<DeliveryState> {
  return db.transaction(async (trx) => {
    const [row] = (await trx('webhook_deliveries')
      .where({ id: delivery.id, lease_owner: delivery.owner })
      .update({
        state: trx.raw(`case when created_at < now() - make_interval(secs => ?) then 'failed' else 'pending' end`, [delivery.giveUpMs / 1000]),
        next_attempt_at: trx.raw('now() + make_interval(secs => ?)', [delivery.retryInMs / 1000]),
        last_status: delivery.status ?? null,
        last_error: delivery.error.slice(0, 500),
        lease_owner: null,
        lease_until: null,
      })
      .returning('state')) as Array<{ state: DeliveryState }>;
    if (delivery.unreachable) {
      const [endpoint] = (await trx('webhook_endpoints').where({ id: delivery.endpointId }).increment('failures', 1).returning('failures')) as Array<{ failures: number }>;
      if (endpoint) {
        await trx('webhook_endpoints')
          .where({ id: delivery.endpointId })
          .update({ retry_at: trx.raw('now() + make_interval(secs => ?)', [endpointRetryInMs(endpoint.failures) / 1000]) });
      }
    }
    return row?.state ?? 'pending';
  });
}

/** What the outbox holds now, for /metrics: pending deliveries and the age of the oldest. */
export async function outboxBacklog(db: Knex): Promise<{ pending: number; oldestAgeS: number }> {
  const row = (await db('webhook_deliveries')
    .where({ state: 'pending' })
    .first(db.raw('count(*) as pending'), db.raw('extract(epoch from now() - min(created_at)) as oldest'))) as { pending: string | number; oldest: string | number | null };
  return { pending: Number(row.pending), oldestAgeS: Number(row.oldest ?? 0) };
}

/**
 * Forgets what was delivered more than `deliveredMs` ago, what was given up more than `failedMs`
 * ago, and events without deliveries past `deliveredMs`. Returns how many rows went.
 */
export async function pruneOutbox(db: Knex, options: { deliveredMs: number; failedMs: number }): Promise<number> {
  const deliveries = await db('webhook_deliveries')
    .where((q) =>
      q
        .where('state', 'delivered')
        .andWhere('delivered_at', '<', db.raw('now() - make_interval(secs => ?)', [options.deliveredMs / 1000]))
        .orWhere((f) => f.where('state', 'failed').andWhere('last_attempt_at', '<', db.raw('now() - make_interval(secs => ?)', [options.failedMs / 1000]))),
    )
    .delete();
  const events = await db('webhook_events')
    .where('created_at', '<', db.raw('now() - make_interval(secs => ?)', [options.deliveredMs / 1000]))
    .whereNotExists(db('webhook_deliveries').whereRaw('webhook_deliveries.event_seq = webhook_events.seq'))
    .delete();
  return deliveries + events;
}

/** Recent events of a subject (or all), newest first, for the admin API. */
export async function listEvents(db: Knex, filter: { subject?: string; type?: string; before?: string; limit?: number } = {}): Promise<WebhookEnvelope[]> {
  const query = db('webhook_events').orderBy('seq', 'desc').limit(filter.limit ?? 100).select('id as event_id', 'seq as event_seq', 'type', 'subject', 'data', 'created_at as event_created_at');
  if (filter.subject) query.where('subject', filter.subject);
  if (filter.type) query.where('type', filter.type);
  if (filter.before !== undefined) query.where('seq', '<', filter.before);
  const rows: Array<Pick<DeliveryRow, 'event_id' | 'event_seq' | 'type' | 'subject' | 'data' | 'event_created_at'>> = await query;
  return rows.map(envelopeOf);
}
