import assert from 'node:assert/strict';
import { retryDelayMs } from '../balancer/WebhookDispatcher.ts';
import { upsertNode } from '../db/repositories/nodes.ts';
import { markStreamIdle, markStreamLive } from '../db/repositories/streams.ts';
import {
  claimDeliveries,
  createEndpoint,
  listDeliveries,
  listEvents,
  markAttemptFailed,
  markDelivered,
  recordEvent,
  replayDelivery,
  updateEndpoint,
  type ClaimedDelivery,
} from '../db/repositories/webhooks.ts';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import type { Database } from '../db/Database.ts';
import { BACKENDS } from './helpers/backends.ts';

/**
 * The outbox's rules, on Postgres and on PGlite: who gets a delivery, one in flight per endpoint
 * and subject in order, leases that pass to another sender, retries, giving up without holding
 * the rest back, replays, and the events a publish, its end and a move to another origin write.
 */

const LEASE_MS = 60_000;
const stream = (name: string, n: number) => ({ type: 'stream.viewers' as const, subject: `stream:${name}`, data: { stream: name, viewers: n } });
const claim = (db: Database, owner: string, leaseMs = LEASE_MS) => claimDeliveries(db.knex, { owner, nodeId: owner, limit: 50, leaseMs });
const failed = (db: Database, d: ClaimedDelivery, owner: string, options: { retryInMs?: number; giveUpMs?: number; unreachable?: boolean } = {}) =>
  markAttemptFailed(
    db.knex,
    { id: d.id, endpointId: d.endpointId, owner, error: 'answered 500', status: 500, retryInMs: options.retryInMs ?? 0, giveUpMs: options.giveUpMs ?? 3_600_000, unreachable: options.unreachable ?? false },
    () => 60_000,
  );

for (const backend of BACKENDS) {
  describe(`webhook outbox on ${backend.name}`, () => {
    let handle: Awaited<ReturnType<typeof backend.open>>;
    let all: string;
    let nodesOnly: string;
    before(async () => {
      handle = await backend.open();
      await handle.db.migrate();
      all = (await createEndpoint(handle.db.knex, { url: 'http://127.0.0.1:9/all', secret: newWebhookSecret(), events: ['*'] })).id;
      nodesOnly = (await createEndpoint(handle.db.knex, { url: 'http://127.0.0.1:9/nodes', secret: newWebhookSecret(), events: ['node.up'] })).id;
      await createEndpoint(handle.db.knex, { url: 'http://127.0.0.1:9/off', secret: newWebhookSecret(), events: ['*'], enabled: false });
    });
    after(async () => {
      await handle?.close();
    });

    it('gives each event to the enabled endpoints that take its type', async () => {
      const { knex } = handle.db;
      await recordEvent(knex, [stream('a', 1), { type: 'node.up', subject: 'node:n1', data: { node: { id: 'n1' } } }]);
      const toAll = await listDeliveries(knex, { endpointId: all });
      const toNodes = await listDeliveries(knex, { endpointId: nodesOnly });
      assert.deepEqual(toAll.map((d) => d.event.type).sort(), ['node.up', 'stream.viewers']);
      assert.deepEqual(toNodes.map((d) => d.event.type), ['node.up']);
      assert.equal(toAll.find((d) => d.event.type === 'node.up')!.event.id, toNodes[0]!.event.id, 'one event, one id, for every endpoint');
      // Settle them, so the next tests start from an empty queue.
      for (const d of await claim(handle.db, 'setup')) await markDelivered(knex, { id: d.id, endpointId: d.endpointId, owner: 'setup', status: 200 });
    });

    it('hands out one delivery per endpoint and subject at a time, oldest first, leased to one sender', async () => {
      const { knex } = handle.db;
      await recordEvent(knex, [stream('b', 1), stream('b', 2), stream('c', 1)]);
      await recordEvent(knex, stream('b', 3));
      const first = await claim(handle.db, 'one');
      assert.deepEqual(first.map((d) => `${d.event.subject} ${d.event.data.viewers}`), ['stream:b 1', 'stream:c 1'], 'the head of each queue');
      assert.deepEqual(await claim(handle.db, 'two'), [], 'leased: nobody else sends them, nor what waits behind them');
      await markDelivered(knex, { id: first[0]!.id, endpointId: all, owner: 'one', status: 200 });
      const next = await claim(handle.db, 'two');
      assert.deepEqual(next.map((d) => `${d.event.subject} ${d.event.data.viewers}`), ['stream:b 2']);
      // A sender that fails is retried; its lease is given back.
      assert.equal(await failed(handle.db, next[0]!, 'two'), 'pending');
      const again = await claim(handle.db, 'three');
      assert.deepEqual(again.map((d) => [d.event.data.viewers, d.attempts]), [[2, 2]]);
      // Given up: kept as failed, and no longer holding stream b's queue.
      assert.equal(await failed(handle.db, again[0]!, 'three', { giveUpMs: 0 }), 'failed');
      const after = await claim(handle.db, 'three');
      assert.deepEqual(after.map((d) => d.event.data.viewers), [3]);
      await markDelivered(knex, { id: after[0]!.id, endpointId: all, owner: 'three', status: 200 });
      await markDelivered(knex, { id: first[1]!.id, endpointId: all, owner: 'one', status: 200 });
      const states = (await listDeliveries(knex, { endpointId: all, subject: 'stream:b' })).map((d) => [d.event.data.viewers, d.state]);
      assert.deepEqual(states, [[3, 'delivered'], [2, 'failed'], [1, 'delivered']]);
    });

    it('passes a lease on once it expires (its sender died), and replays an event with its id', async () => {
      const { knex } = handle.db;
      await recordEvent(knex, stream('d', 1));
      const [held] = await claim(handle.db, 'dying', 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const [taken] = await claim(handle.db, 'heir');
      assert.equal(taken?.id, held!.id);
      assert.equal(taken?.attempts, 2);
      await markDelivered(knex, { id: held!.id, endpointId: all, owner: 'dying', status: 200 });
      assert.equal((await listDeliveries(knex, { endpointId: all, subject: 'stream:d' }))[0]!.state, 'pending', 'the dead sender\'s late word does not count');
      await markDelivered(knex, { id: taken!.id, endpointId: all, owner: 'heir', status: 200 });
      const replay = await replayDelivery(knex, taken!.id);
      assert.equal(replay?.event.id, taken!.event.id);
      assert.equal(replay?.replayOf, taken!.id);
      const [again] = await claim(handle.db, 'heir');
      assert.equal(again?.event.id, taken!.event.id);
      await markDelivered(knex, { id: again!.id, endpointId: all, owner: 'heir', status: 200 });
    });

    it('holds every delivery of an endpoint that does not answer until its backoff passes', async () => {
      const { knex } = handle.db;
      await recordEvent(knex, [stream('e', 1), stream('f', 1)]);
      const [e, f] = await claim(handle.db, 'one');
      await failed(handle.db, e!, 'one', { unreachable: true });
      await failed(handle.db, f!, 'one');
      assert.deepEqual(await claim(handle.db, 'one'), [], 'the endpoint waits (60 s)');
      await updateEndpoint(knex, all, { enabled: true });
      assert.equal((await claim(handle.db, 'one')).length, 2, 're-enabling ends the wait');
    });

    it('writes node.up, stream.published, stream.unpublished and stream.moved with the changes', async () => {
      const { knex } = handle.db;
      const info = { roles: ['origin'], region: 'eu', lat: 0, lon: 0, publicUrl: 'http://o', announcedIp: '127.0.0.1', version: 't', capacity: 10, egressCapacity: 1e9, agentPort: null, rtmpUrl: null };
      for (const id of ['origin-a', 'origin-b']) await upsertNode(knex, { id, ...info }, { viewers: 0, streams: 0, bitrateOut: 0, cpu: 0 });
      assert.deepEqual((await listEvents(knex, { subject: 'node:origin-a' })).map((e) => [e.type, e.data.node]), [['node.up', { id: 'origin-a', region: 'eu', roles: ['origin'] }]]);
      const place = (origin: string) => markStreamLive(knex, { name: 'moving', originNodeId: origin, ingestProtocol: 'rtmp', codecs: ['h264'], publisherSession: `s-${origin}`, region: 'eu' });
      assert.equal(await place('origin-a'), true);
      assert.equal(await place('origin-b'), false, 'live elsewhere: refused, nothing written');
      assert.equal(await markStreamIdle(knex, 'moving', 's-origin-a', 'its origin died'), true);
      assert.equal(await place('origin-b'), true);
      const events = (await listEvents(knex, { subject: 'stream:moving' })).reverse();
      assert.deepEqual(
        events.map((e) => [e.type, e.data.origin ?? `${String(e.data.from)}→${String(e.data.to)}`, e.data.reason ?? null]),
        [
          ['stream.published', { id: 'origin-a', region: 'eu' }, null],
          ['stream.unpublished', 'origin-a', 'its origin died'],
          ['stream.moved', 'origin-a→origin-b', null],
          ['stream.published', { id: 'origin-b', region: 'eu' }, null],
        ],
      );
    });
  });
}

describe('webhook retry backoff', () => {
  it('doubles from 1 s to at most 30 s, each drawn between half and all of it', () => {
    assert.deepEqual([1, 2, 3, 6, 20].map((n) => retryDelayMs(n, () => 1)), [1000, 2000, 4000, 30_000, 30_000]);
    assert.deepEqual([1, 6].map((n) => retryDelayMs(n, () => 0)), [500, 15_000]);
  });
});
