import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { getNode } from '../db/repositories/nodes.ts';
import { listRelays } from '../db/repositories/relays.ts';
import { getStream } from '../db/repositories/streams.ts';
import { TestBrowser, connectionState, play, playbackStats, publish } from '../kit/browser.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playClient, publishClient } from '../kit/wrtc.ts';

/**
 * Media end to end on 127.0.0.1: Chromium publishes over WHIP to an origin process, an edge
 * process pulls the stream over a PipeTransport, Chromium (or the Node client) plays over WHEP.
 */

const SECRET = 'webrtc-test-secret-0123456789';
/** A WHEP offer recorded from Chrome (test/fixtures/sdp/README.md). */
const WHEP_OFFER = readFileSync(new URL('./fixtures/sdp/chrome-whep-offer.sdp', import.meta.url), 'utf8');
const LINGER_MS = 1000;
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', String(LINGER_MS)];

async function framesFlowing(viewer: Page, what: string): Promise<void> {
  await waitFor(
    `${what}: frames decoded and audio received`,
    async () => {
      const s = await playbackStats(viewer);
      return s.framesDecoded > 10 && s.videoWidth > 0 && s.audioPacketsReceived > 10;
    },
    20_000,
    250,
  );
}

async function deleteSession(page: Page, which: 'publisherLocation' | 'viewerLocation', token?: string): Promise<number> {
  return page.evaluate(
    async ({ which, token }) => {
      const res = await fetch((window as any)[which], { method: 'DELETE', headers: token ? { authorization: `Bearer ${token}` } : {} });
      return res.status;
    },
    { which, token },
  );
}

describe('WebRTC through an origin and an edge process', function () {
  let testDb: TestDatabase;
  let db: Database;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let browser: TestBrowser;

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
    [origin, edge] = await Promise.all([
      startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-1', ...common] }),
    ]);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    await browser?.close();
    await edge?.stop();
    await origin?.stop();
    await db?.close();
    await testDb?.drop();
  });

  for (const codec of ['video/H264', 'video/VP8']) {
    it(`plays ${codec} from Chromium to Chromium: frames decoded, audio received`, async () => {
      const stream = `show-${codec.split('/')[1]!.toLowerCase()}`;
      const token = await signStreamToken(SECRET, { stream, action: 'publish' });
      const publisher = await browser.page(origin.url);
      const viewer = await browser.page(edge.url);
      try {
        const published = await publish(publisher, `${origin.url}/whip/${stream}`, token, codec);
        assert.equal(published.status, 201, published.body);
        await waitFor('publisher connected', async () => (await connectionState(publisher, 'publisher')) === 'connected', 15_000);
        assert.equal((await getStream(db.knex, stream))?.originNodeId, 'origin-1');

        const played = await play(viewer, `${edge.url}/whep/${stream}`);
        assert.equal(played.status, 201, played.body);
        await framesFlowing(viewer, codec);
        const stats = await playbackStats(viewer);
        assert.equal(stats.videoCodec, codec);
        assert.equal(stats.videoWidth, 640);
        const [relay] = await listRelays(db.knex);
        assert.equal(relay?.edgeNodeId, 'edge-1');
        assert.equal(relay?.upstreamNodeId, 'origin-1');
      } finally {
        await deleteSession(publisher, 'publisherLocation', token).catch(() => undefined);
        await publisher.close();
        await viewer.close();
      }
    });
  }

  it('shares one relay between two viewers, tears it down after the linger, and counts viewers', async () => {
    const stream = 'shared';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await browser.page(origin.url);
    const viewers = [await browser.page(edge.url), await browser.page(edge.url)];
    try {
      assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/VP8')).status, 201);
      for (const [i, viewer] of viewers.entries()) {
        assert.equal((await play(viewer, `${edge.url}/whep/${stream}`)).status, 201);
        await framesFlowing(viewer, `viewer ${i}`);
      }
      const relays = await listRelays(db.knex, { edgeNodeId: 'edge-1' });
      assert.equal(relays.length, 1, 'one relay row for the stream on this edge');
      assert.equal(await metric(origin.url, 'relaycast_relays', { direction: 'out' }), 1, 'one pipe on the origin');
      assert.equal(await metric(edge.url, 'relaycast_relays', { direction: 'in' }), 1);
      assert.equal(await metric(edge.url, 'relaycast_viewers'), 2);
      await waitFor('the heartbeat to report 2 viewers', async () => (await getNode(db.knex, 'edge-1'))?.viewers === 2, 10_000);

      assert.equal(await deleteSession(viewers[0]!, 'viewerLocation'), 200);
      await framesFlowing(viewers[1]!, 'the remaining viewer');
      assert.equal((await listRelays(db.knex)).length, 1, 'the relay stays while a viewer is left');
      assert.equal(await deleteSession(viewers[1]!, 'viewerLocation'), 200);
      await waitFor('the relay row to go after the linger', async () => (await listRelays(db.knex)).length === 0, 10_000);
      await waitFor('the origin pipe to close', async () => (await metric(origin.url, 'relaycast_relays', { direction: 'out' })) === 0, 10_000);
      assert.equal((await getStream(db.knex, stream))?.state, 'live', 'the stream itself goes on');
    } finally {
      await deleteSession(publisher, 'publisherLocation', token).catch(() => undefined);
      for (const page of [publisher, ...viewers]) await page.close();
    }
  });

  it('ends the viewers and the relay when the publisher leaves', async () => {
    const stream = 'ending';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await browser.page(origin.url);
    const viewer = await browser.page(edge.url);
    try {
      assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/VP8')).status, 201);
      assert.equal((await play(viewer, `${edge.url}/whep/${stream}`)).status, 201);
      await framesFlowing(viewer, 'before the publisher leaves');

      assert.equal(await deleteSession(publisher, 'publisherLocation', token), 200);
      await waitFor('the stream row idle', async () => (await getStream(db.knex, stream))?.state === 'idle', 10_000);
      await waitFor('the relay gone', async () => (await listRelays(db.knex)).length === 0, 10_000);
      await waitFor(
        "the viewer's connection ended",
        async () => ['closed', 'failed', 'disconnected'].includes(await connectionState(viewer, 'viewer')),
        15_000,
      );
      assert.equal(await deleteSession(viewer, 'viewerLocation'), 404, 'the WHEP session is gone');
      const replay = await play(viewer, `${edge.url}/whep/${stream}`);
      assert.equal(replay.status, 404, 'a stream that ended is not live');
    } finally {
      await publisher.close();
      await viewer.close();
    }
  });

  it("asks the publisher for a key frame when a cold edge's first viewer connects, not while it connects", async () => {
    const stream = 'key-frames';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await browser.page(origin.url);
    const viewer = await browser.page(edge.url);
    // The key frame requests (PLI) the publisher's browser has received.
    const plis = () =>
      publisher.evaluate(async () => {
        let count = 0;
        (await ((window as any).publisher as RTCPeerConnection).getStats()).forEach((s: any) => {
          if (s.type === 'outbound-rtp' && s.kind === 'video') count += s.pliCount ?? 0;
        });
        return count;
      });
    try {
      assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/VP8')).status, 201);
      await waitFor('the publisher connected', async () => (await connectionState(publisher, 'publisher')) === 'connected', 10_000);
      const before = await plis();
      // A viewer that offers and never connects: the edge opens the relay, paused at the origin.
      const stranger = await fetch(`${edge.url}/whep/${stream}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: WHEP_OFFER });
      assert.equal(stranger.status, 201, await stranger.clone().text());
      assert.equal(await metric(origin.url, 'relaycast_relays', { direction: 'out' }), 1, 'the relay is open');
      // A request would reach the browser within a round trip; a second and a half is ample.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(await plis(), before, 'no key frame asked for a viewer that has not connected');
      assert.equal((await fetch(new URL(stranger.headers.get('location')!, edge.url), { method: 'DELETE' })).status, 200);

      assert.equal((await play(viewer, `${edge.url}/whep/${stream}`)).status, 201);
      await framesFlowing(viewer, 'the viewer that connected');
      assert.ok((await plis()) > before, 'the connected viewer asked for a key frame');
    } finally {
      await deleteSession(publisher, 'publisherLocation', token).catch(() => undefined);
      await publisher.close();
      await viewer.close();
    }
  });

  it('publishes and plays with the Node client (libwebrtc)', async () => {
    const stream = 'node-client';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = publishClient(`${origin.url}/whip/${stream}`, token, 20);
    try {
      assert.equal((await publisher.next('answer')).status, 201);
      await publisher.next('connected');
      const viewer = playClient(`${edge.url}/whep/${stream}`, { viewers: 2, seconds: 6 });
      const [stats] = (await viewer.done).filter((l) => l.event === 'stats') as unknown as Array<{ viewers: Array<{ frames: number; width: number; audioPackets: number }> }>;
      assert.ok(stats, 'the viewer client reported');
      for (const v of stats.viewers) {
        assert.ok(v.frames > 10, `frames decoded: ${JSON.stringify(stats.viewers)}`);
        assert.equal(v.width, 320);
        assert.ok(v.audioPackets > 10, `audio packets: ${v.audioPackets}`);
      }
    } finally {
      publisher.kill();
      await publisher.done;
    }
  });

  it('asks a play token for a private stream, also once its relay is warm on the edge', async () => {
    const stream = 'private-show';
    const publisher = publishClient(`${origin.url}/whip/${stream}`, await signStreamToken(SECRET, { stream, action: 'publish' }), 20);
    try {
      await publisher.next('connected');
      await db.knex('streams').where({ name: stream }).update({ private: true });
      const anonymous = () => fetch(`${edge.url}/whep/${stream}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
      assert.equal((await anonymous()).status, 401, 'cold edge');
      const playToken = await signStreamToken(SECRET, { stream, action: 'play' });
      const viewer = playClient(`${edge.url}/whep/${stream}`, { seconds: 4, token: playToken });
      await viewer.next('first-frame');
      const relayed = await db.knex('relays').join('streams', 'streams.id', 'relays.stream_id').where('streams.name', stream).count('* as n');
      assert.equal(Number(relayed[0]!.n), 1, 'the relay is warm on the edge');
      assert.equal((await anonymous()).status, 401, 'warm edge');
      await viewer.done;
    } finally {
      publisher.kill();
      await publisher.done;
    }
  });
});

describe('WebRTC in one `relaycast all` process', () => {
  it('relays from its origin role to its edge role through the same code path', async () => {
    const node = await startRelaycast({ roles: ['all'], env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: common });
    const token = await signStreamToken(SECRET, { stream: 'solo', action: 'publish' });
    const publisher = publishClient(`${node.url}/whip/solo`, token, 10);
    try {
      await publisher.next('connected');
      const viewer = playClient(`${node.url}/whep/solo`, { seconds: 3 });
      await viewer.next('first-frame');
      assert.equal(await metric(node.url, 'relaycast_relays', { direction: 'in' }), 1, 'the edge role pulled the stream');
      assert.equal(await metric(node.url, 'relaycast_relays', { direction: 'out' }), 1, 'from the origin role');
      const stats = (await viewer.done).find((l) => l.event === 'stats') as { viewers: Array<{ frames: number }> } | undefined;
      assert.ok(stats && stats.viewers[0]!.frames > 10, JSON.stringify(stats));
    } finally {
      publisher.kill();
      await publisher.done;
      await node.stop();
    }
  });
});
