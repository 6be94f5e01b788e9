import type { Knex } from 'knex';
import { z } from 'zod';
import { Problem } from '../core/errors.ts';
import { WEBHOOK_EVENT_TYPES } from '../core/webhookEvents.ts';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import {
  createEndpoint,
  deleteEndpoint,
  getDelivery,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  listEvents,
  replayDelivery,
  updateEndpoint,
} from '../db/repositories/webhooks.ts';
import { actor, operation, pageOf, type Operation } from './apiOperations.ts';
import { page, text } from './apiSchemas.ts';

/**
 * The admin API's webhooks (/api/v1/webhooks): the endpoints events go to and which events each
 * takes, their recent deliveries with their state, a replay of one, and the event log. Every
 * change is audited. An endpoint's secret is shown when it is made or rotated, never listed.
 */

const dateTime = z.iso.datetime();
const eventType = z.enum([...WEBHOOK_EVENT_TYPES, '*']);
const webhookUrl = z.url({ protocol: /^https?$/ }).max(2000).describe('where events are POSTed (http or https)');
const secret = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/=]{24,}$/, 'must be whsec_ followed by base64 of at least 18 bytes')
  .describe('the signing secret (Standard Webhooks, whsec_…); made for you when left out');

const endpointParams = z.object({ id: z.string().regex(/^wh_[A-Za-z0-9_-]{16}$/, 'webhook ids are wh_ and 16 letters, digits, "_" or "-"') }).strict();
const deliveryParams = endpointParams.extend({ delivery: z.string().regex(/^\d{1,18}$/, 'delivery ids are numbers') }).strict();

const createBody = z
  .object({
    url: webhookUrl,
    events: z.array(eventType).min(1).max(WEBHOOK_EVENT_TYPES.length + 1).default(['*']).describe('event types it takes; "*" for all (the default)'),
    description: text(200).optional(),
    enabled: z.boolean().default(true),
    secret: secret.optional(),
  })
  .strict();

const updateBody = z
  .object({
    url: webhookUrl.optional(),
    events: z.array(eventType).min(1).max(WEBHOOK_EVENT_TYPES.length + 1).optional(),
    description: text(200).optional(),
    enabled: z.boolean().optional().describe('false: no new deliveries are made for it; re-enabling ends its backoff'),
    rotateSecret: z.boolean().optional().describe('true: a new secret signs from the next attempt on; the answer shows it once'),
  })
  .strict();

const endpointView = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.string()),
  description: z.string(),
  enabled: z.boolean(),
  createdAt: dateTime,
});

const endpointWithSecret = endpointView.extend({ secret: z.string().describe('shown once: keep it to verify signatures') });

const envelope = z
  .object({
    id: z.string().describe('unique per event; the webhook-id header; the same on every attempt and replay'),
    type: z.enum(WEBHOOK_EVENT_TYPES),
    timestamp: dateTime,
    subject: z.string().describe('stream:<name> or node:<id>; events of one subject arrive in order'),
    sequence: z.number().int(),
    data: z.record(z.string(), z.unknown()),
  })
  .describe('the body of an event call');

const deliveryView = z.object({
  id: z.string(),
  endpointId: z.string(),
  event: envelope,
  state: z.enum(['pending', 'delivered', 'failed']).describe('failed: given up after --webhook-give-up-s; replay to send it again'),
  attempts: z.number().int(),
  nextAttemptAt: dateTime.nullable(),
  lastAttemptAt: dateTime.nullable(),
  lastNode: z.string().nullable().describe('the balancer that made the last attempt'),
  lastStatus: z.number().int().nullable().describe('the HTTP status of the last answer; null when there was none'),
  lastError: z.string().nullable(),
  deliveredAt: dateTime.nullable(),
  replayOf: z.string().nullable(),
  createdAt: dateTime,
});

const cursor = (name: string) => (value: string | undefined) => {
  if (value !== undefined && !/^\d{1,18}$/.test(value)) throw new Problem('invalid-request', `query.cursor: not a cursor of this ${name}`);
  return value;
};

export function webhookOperations(db: Knex): Operation[] {
  const existing = async (id: string) => {
    const endpoint = await getEndpoint(db, id);
    if (!endpoint) throw new Problem('not-found', `no webhook ${id}`);
    return endpoint;
  };
  return [
    operation({
      method: 'get',
      path: '/webhooks',
      operationId: 'listWebhooks',
      tag: 'webhooks',
      summary: 'List the endpoints events are sent to (without their secrets)',
      scope: 'read',
      responses: { 200: { description: 'the endpoints', schema: z.object({ items: z.array(endpointView) }) } },
      handle: async () => ({ status: 200, body: { items: await listEndpoints(db) } }),
    }),
    operation({
      method: 'post',
      path: '/webhooks',
      operationId: 'createWebhook',
      tag: 'webhooks',
      summary: 'Add an endpoint: events from now on are sent to it, signed with its secret',
      scope: 'write',
      body: createBody,
      responses: { 201: { description: 'the endpoint, with its secret (shown once)', schema: endpointWithSecret } },
      handle: async ({ body, token }) => {
        const signing = body.secret ?? newWebhookSecret();
        const endpoint = await db.transaction(async (trx) => {
          const made = await createEndpoint(trx, { ...body, secret: signing });
          await recordAudit(trx, { actor: actor(token), action: 'webhook.create', target: made.id, detail: { url: made.url, events: made.events } });
          return made;
        });
        return { status: 201, body: { ...endpoint, secret: signing } };
      },
    }),
    operation({
      method: 'get',
      path: '/webhooks/{id}',
      operationId: 'getWebhook',
      tag: 'webhooks',
      summary: 'One endpoint',
      scope: 'read',
      params: endpointParams,
      responses: { 200: { description: 'the endpoint', schema: endpointView }, 404: { description: 'no such webhook' } },
      handle: async ({ params }) => ({ status: 200, body: await existing(params.id) }),
    }),
    operation({
      method: 'patch',
      path: '/webhooks/{id}',
      operationId: 'updateWebhook',
      tag: 'webhooks',
      summary: 'Change an endpoint: its URL, events, description, whether it is enabled, or its secret',
      scope: 'write',
      params: endpointParams,
      body: updateBody,
      responses: { 200: { description: 'the endpoint (with its new secret, once, when rotated)', schema: endpointView.extend({ secret: z.string().optional() }) }, 404: { description: 'no such webhook' } },
      handle: async ({ params, body, token }) => {
        const { rotateSecret, ...changes } = body;
        const signing = rotateSecret ? newWebhookSecret() : undefined;
        const endpoint = await db.transaction(async (trx) => {
          const changed = await updateEndpoint(trx, params.id, { ...changes, secret: signing });
          if (!changed) throw new Problem('not-found', `no webhook ${params.id}`);
          await recordAudit(trx, { actor: actor(token), action: 'webhook.update', target: params.id, detail: { ...changes, rotateSecret: rotateSecret ?? false } });
          return changed;
        });
        return { status: 200, body: signing ? { ...endpoint, secret: signing } : endpoint };
      },
    }),
    operation({
      method: 'delete',
      path: '/webhooks/{id}',
      operationId: 'deleteWebhook',
      tag: 'webhooks',
      summary: 'Remove an endpoint, with its deliveries (pending ones are not sent)',
      scope: 'write',
      params: endpointParams,
      responses: { 204: { description: 'removed' }, 404: { description: 'no such webhook' } },
      handle: async ({ params, token }) => {
        await db.transaction(async (trx) => {
          if (!(await deleteEndpoint(trx, params.id))) throw new Problem('not-found', `no webhook ${params.id}`);
          await recordAudit(trx, { actor: actor(token), action: 'webhook.delete', target: params.id });
        });
        return { status: 204 };
      },
    }),
    operation({
      method: 'get',
      path: '/webhooks/{id}/deliveries',
      operationId: 'listWebhookDeliveries',
      tag: 'webhooks',
      summary: 'An endpoint\'s deliveries, newest first, with their state, attempts and last answer',
      scope: 'read',
      params: endpointParams,
      query: z.object({ state: z.enum(['pending', 'delivered', 'failed']).optional(), subject: text(200).optional(), ...page }).strict(),
      responses: { 200: { description: 'a page of deliveries', schema: z.object({ items: z.array(deliveryView), next: z.string().nullable() }) }, 404: { description: 'no such webhook' } },
      handle: async ({ params, query }) => {
        await existing(params.id);
        const rows = await listDeliveries(db, { endpointId: params.id, state: query.state, subject: query.subject, before: cursor('list')(query.cursor), limit: query.limit + 1 });
        return { status: 200, body: pageOf(rows, query.limit, (d) => d.id) };
      },
    }),
    operation({
      method: 'post',
      path: '/webhooks/{id}/deliveries/{delivery}/replay',
      operationId: 'replayWebhookDelivery',
      tag: 'webhooks',
      summary: 'Send a delivery\'s event again (same event id), after what is queued for its subject',
      scope: 'write',
      params: deliveryParams,
      responses: { 202: { description: 'the new delivery, pending', schema: deliveryView }, 404: { description: 'no such delivery of this webhook' } },
      handle: async ({ params, token }) => {
        const original = await getDelivery(db, params.delivery);
        if (!original || original.endpointId !== params.id) throw new Problem('not-found', `no delivery ${params.delivery} of webhook ${params.id}`);
        const replay = await db.transaction(async (trx) => {
          const made = await replayDelivery(trx, params.delivery);
          await recordAudit(trx, { actor: actor(token), action: 'webhook.replay', target: params.id, detail: { delivery: params.delivery, event: original.event.id, replay: made?.id } });
          return made;
        });
        return { status: 202, body: replay };
      },
    }),
    operation({
      method: 'get',
      path: '/events',
      operationId: 'listEvents',
      tag: 'webhooks',
      summary: 'The events the cluster recorded (newest first), whether or not an endpoint takes them; kept a week',
      scope: 'read',
      query: z.object({ subject: text(200).optional(), type: z.enum(WEBHOOK_EVENT_TYPES).optional(), ...page }).strict(),
      responses: { 200: { description: 'a page of events', schema: z.object({ items: z.array(envelope), next: z.string().nullable() }) } },
      handle: async ({ query }) => {
        const rows = await listEvents(db, { subject: query.subject, type: query.type, before: cursor('list')(query.cursor), limit: query.limit + 1 });
        return { status: 200, body: pageOf(rows, query.limit, (e) => String(e.sequence)) };
      },
    }),
  ];
}
