import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import type { WebhookEnvelope } from '../core/webhookEvents.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { adminClient, publishTestRtmp, type ApiAnswer } from '../kit/testPublish.ts';
import { startWebhookReceiver, type ReceivedCall, type WebhookReceiver } from '../kit/webhookReceiver.ts';
import { playClient } from '../kit/wrtc.ts';

/**
 * Event webhooks for real: an origin+edge and two balancers on Postgres, a receiver process that
 * checks every signature (kit/webhookReceiver.ts). A scripted session (an RTMP publish recorded,
 * a WHEP viewer, a drain, the end) arrives once per event, in order per subject, signed; with the
 * receiver down for a minute and the balancer delivering killed with SIGKILL meanwhile, every
 * event still arrives afterwards, from the other balancer.
 */

const SECRET = 'webhooks-test-secret-0123456789';
const ADMIN = 'webhooks-test-admin-token-0123456789';
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '2000', '--webhook-viewer-thresholds', '1,2'];
/** What the issue asks of the outage: the receiver away for a whole minute. */
const OUTAGE_MS = 60_000;

type Api = (method: string, path: string, body?: unknown) => Promise<ApiAnswer>;

describe('event webhooks: a scripted session, a receiver down for a minute, a balancer killed (Postgres, real receiver)', function () {
  this.timeout(300_000);
  let testDb: TestDatabase;
  let media: RelaycastProcess;
  const balancers = new Map<string, RelaycastProcess>();
  let receiver: WebhookReceiver;
  let endpointId: string;
  const secret = newWebhookSecret();
  const apiOf = (id: string): Api => adminClient(balancers.get(id)!.url, ADMIN);
  let api: Api;

  /** Every event the cluster recorded since the endpoint was made, oldest first. */
  const outbox = async (): Promise<WebhookEnvelope[]> => {
    const { status, body } = await api('GET', '/events?limit=500');
    assert.equal(status, 200);
    return (body.items as WebhookEnvelope[]).reverse();
  };
  const received = async (): Promise<ReceivedCall[]> => receiver.calls({ path: '/events' });
  /** Waits until the receiver has every event of the outbox from `since` on (by sequence); returns them. */
  const allArrived = async (since: number, what: string, timeoutMs: number) => {
    let events: WebhookEnvelope[] = [];
    await waitFor(
      what,
      async () => {
        events = (await outbox()).filter((e) => e.sequence >= since);
        const ids = new Set((await received()).map((c) => c.body.id as string));
        return events.length > 0 && events.every((e) => ids.has(e.id));
      },
      timeoutMs,
      500,
    );
    return events;
  };
  /** The receiver's calls in arrival order, each event's first arrival only, grouped by subject. */
  const firstArrivals = (calls: ReceivedCall[]) => {
    const seen = new Set<string>();
    const bySubject = new Map<string, WebhookEnvelope[]>();
    for (const call of calls) {
      const event = call.body as WebhookEnvelope;
      if (seen.has(event.id)) continue;
      seen.add(event.id);
      bySubject.set(event.subject, [...(bySubject.get(event.subject) ?? []), event]);
    }
    return bySubject;
  };
  const assertInOrder = (calls: ReceivedCall[]) => {
    for (const [subject, events] of firstArrivals(calls)) {
      const sequences = events.map((e) => e.sequence);
      assert.deepEqual(sequences, [...sequences].sort((a, b) => a - b), `events of ${subject} arrived in order: ${events.map((e) => `${e.sequence} ${e.type}`).join(', ')}`);
    }
  };
  const publish = async (name: string, seconds: number): Promise<ChildProcess> => {
    const made = await api('POST', '/streams', { name });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const ffmpeg = publishTestRtmp(made.body.rtmpUrl, { seconds });
    await waitFor(`${name} to go live`, async () => (await api('GET', `/streams/${name}`)).body.state === 'live', 30_000);
    return ffmpeg;
  };
  const ended = async (ffmpeg: ChildProcess, name: string) => {
    if (ffmpeg.exitCode === null) await once(ffmpeg, 'exit');
    await waitFor(`${name} to end`, async () => (await api('GET', `/streams/${name}`)).body.state === 'idle', 30_000);
  };

  before(async () => {
    testDb = await createTestDatabase();
    receiver = await startWebhookReceiver(secret, { quiet: true });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const balancer = (id: string) => startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url, env, args: ['--node-id', id, ...common] });
    const [b1, b2] = await Promise.all([balancer('balancer-1'), balancer('balancer-2')]);
    balancers.set('balancer-1', b1).set('balancer-2', b2);
    media = await startRelaycast({ roles: ['origin', 'edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'media-1', '--record', 'on', ...common] });
    api = apiOf('balancer-1');
  });
  after(async () => {
    await Promise.all([media, ...balancers.values()].map((n) => n?.stop()));
    await receiver?.stop();
    await testDb?.drop();
  });

  it('an endpoint is made, shown without its secret, and refused when malformed', async () => {
    const made = await api('POST', '/webhooks', { url: `${receiver.url}/events`, secret, description: 'the test receiver' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.secret, secret);
    assert.deepEqual(made.body.events, ['*']);
    endpointId = made.body.id;
    const listed = await api('GET', '/webhooks');
    assert.equal(listed.body.items.length, 1);
    assert.equal(listed.body.items[0].secret, undefined, 'a listed endpoint shows no secret');
    const bad = await api('POST', '/webhooks', { url: 'ftp://example.com/x', events: ['stream.nonsense'] });
    assert.equal(bad.status, 400);
    const audit = await api('GET', '/audit?action=webhook.create');
    assert.equal(audit.body.items[0]?.target, endpointId, 'the change is audited');
  });

  it('a scripted session arrives at the receiver once per event, in order per subject, every call signed', async () => {
    const since = ((await outbox()).at(-1)?.sequence ?? 0) + 1;
    const ffmpeg = await publish('show', 14);
    // One WHEP viewer for a few seconds: its count crosses 1 up, then down.
    const viewer = playClient(`${media.url}/whep/show`, { seconds: 5 });
    await viewer.next('first-frame');
    await viewer.done;
    await waitFor('the viewer count to fall back', async () => (await outbox()).some((e) => e.type === 'stream.viewers' && e.data.crossed === 'down'), 30_000);
    for (const action of ['drain', 'undrain']) assert.equal((await api('POST', `/nodes/media-1/${action}`)).status, 200);
    ffmpeg.kill('SIGINT');
    await ended(ffmpeg, 'show');
    // The recording ends a couple of seconds after its stream (the packager's grace).
    await waitFor('recording.finished', async () => (await outbox()).some((e) => e.type === 'recording.finished' && e.data.stream === 'show'), 30_000);
    const events = await allArrived(since, 'every event of the session at the receiver', 30_000);

    const calls = (await received()).filter((c) => (c.body as WebhookEnvelope).sequence >= since);
    assert.ok(calls.every((c) => c.verified), 'every call verifies with the endpoint secret (Standard Webhooks)');
    assert.ok(calls.every((c) => c.headers['webhook-id'] === c.body.id), 'webhook-id is the event id');
    const ids = calls.map((c) => c.body.id as string);
    assert.equal(new Set(ids).size, ids.length, 'each event arrived once');
    assertInOrder(calls);
    const show = events.filter((e) => e.subject === 'stream:show').map((e) => (e.type === 'stream.viewers' ? `${e.type} ${e.data.crossed}` : e.type));
    console.log(`      stream:show: ${show.join(', ')}`);
    const order = ['stream.published', 'recording.started', 'stream.viewers up', 'stream.viewers down', 'stream.unpublished', 'recording.finished'];
    assert.deepEqual(show.filter((t) => order.includes(t)), order.filter((t) => show.includes(t)), 'the session in order');
    for (const t of order) assert.ok(show.includes(t), `${t} was sent: ${show.join(', ')}`);
    const node = events.filter((e) => e.subject === 'node:media-1' && e.type === 'node.draining').map((e) => e.data.draining);
    assert.deepEqual(node, [true, false]);
    const published = events.find((e) => e.type === 'stream.published')!;
    assert.deepEqual(published.data.origin, { id: 'media-1', region: 'default' });
    assert.equal(published.data.protocol, 'rtmp');

    const deliveries = await api('GET', `/webhooks/${endpointId}/deliveries?limit=500`);
    assert.equal(deliveries.status, 200);
    const mine = deliveries.body.items.filter((d: { event: WebhookEnvelope }) => d.event.sequence >= since);
    assert.ok(mine.length >= events.length && mine.every((d: { state: string; lastStatus: number }) => d.state === 'delivered' && d.lastStatus === 200));
    const lags = calls.map((c) => c.at - Date.parse(c.body.timestamp));
    console.log(`      ${calls.length} events; lag from change to receiver: median ${lags.sort((a, b) => a - b)[Math.floor(lags.length / 2)]} ms, max ${lags.at(-1)} ms`);

    // A replay sends the same event (same id) again, after what is queued.
    const first = mine.at(-1);
    const replay = await api('POST', `/webhooks/${endpointId}/deliveries/${first.id}/replay`);
    assert.equal(replay.status, 202, JSON.stringify(replay.body));
    await waitFor('the replayed event', async () => (await received()).filter((c) => c.body.id === first.event.id).length === 2, 15_000);
    assert.equal((await api('POST', `/webhooks/${endpointId}/deliveries/999999/replay`)).status, 404);
  });

  it('with the receiver down for a minute and the delivering balancer killed (SIGKILL), every event arrives afterwards, in order', async () => {
    const since = ((await outbox()).at(-1)?.sequence ?? 0) + 1;
    await receiver.close();
    const down = Date.now();
    const ffmpeg = await publish('outage', 6);
    await api('POST', '/nodes/media-1/drain');
    await api('POST', '/nodes/media-1/undrain');
    await ended(ffmpeg, 'outage');
    // A balancer tries, fails, and is killed; the other goes on, after its lease and backoff.
    let attempted: { lastNode: string } | undefined;
    await waitFor('a failed attempt', async () => {
      const pending = await api('GET', `/webhooks/${endpointId}/deliveries?state=pending`);
      attempted = pending.body.items.find((d: { attempts: number; lastNode: string | null }) => d.attempts > 0 && d.lastNode);
      return attempted !== undefined;
    });
    const killed = attempted!.lastNode;
    const survivor = [...balancers.keys()].find((id) => id !== killed)!;
    await balancers.get(killed)!.kill();
    balancers.delete(killed);
    api = apiOf(survivor);
    // The survivor declares the killed balancer dead: its node.down is an event too.
    await waitFor(`node.down of ${killed}`, async () => (await outbox()).some((e) => e.type === 'node.down' && e.subject === `node:${killed}`), 30_000);
    const pendingBefore = (await api('GET', `/webhooks/${endpointId}/deliveries?state=pending&limit=500`)).body.items.length;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - down))));
    await receiver.listen();
    const back = Date.now();
    const events = await allArrived(since, 'every event after the outage', 90_000);
    console.log(`      ${events.length} events (${pendingBefore} pending at the end of the outage) delivered ${Date.now() - back} ms after the receiver came back; ${killed} killed, ${survivor} delivered`);

    const calls = (await received()).filter((c) => (c.body as WebhookEnvelope).sequence >= since);
    assert.ok(calls.every((c) => c.verified), 'every call verifies');
    assertInOrder(calls);
    const types: string[] = events.filter((e) => e.subject === 'stream:outage').map((e) => e.type);
    for (const t of ['stream.published', 'stream.unpublished', 'recording.started', 'recording.finished']) assert.ok(types.includes(t), `${t}: ${types.join(', ')}`);
    const delivered = (await api('GET', `/webhooks/${endpointId}/deliveries?limit=500`)).body.items.filter((d: { event: WebhookEnvelope }) => d.event.sequence >= since);
    assert.ok(delivered.every((d: { state: string }) => d.state === 'delivered'), 'none given up');
    assert.ok(delivered.every((d: { lastNode: string }) => d.lastNode === survivor), `the survivor delivered them all: ${delivered.map((d: { lastNode: string }) => d.lastNode).join(', ')}`);
  });
});
