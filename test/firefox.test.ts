import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { signStreamToken } from '../core/tokens.ts';
import {
  TestBrowser,
  framesSentByRid,
  layersSending,
  openEvents,
  play,
  playbackStats,
  publish,
  publishSimulcast,
  receivedEvents,
  selectLayer,
  stopPublishing,
  stopViewing,
  viewerExtensions,
  type PlaybackStats,
  type ScriptPage,
} from '../kit/browser.ts';
import { TestFirefox } from '../kit/firefox.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playerStats, playing, type PageStats } from './helpers/player.ts';

/**
 * A real Firefox (Debian's ESR, kit/firefox.ts) against an origin and an edge, with a Chromium at
 * the other end: Firefox plays what Chromium publishes over WHIP, in one layer and in simulcast,
 * and publishes, in its own codec and in its own simulcast, what Chromium plays from the edge.
 * Every picture is proven by frames the receiving browser decoded. Then the README's quick start
 * as a newcomer runs it (`relaycast all` on the embedded database, no flags for addresses): its
 * player page plays in Firefox, an RTMP publish with x264's defaults plays there through the VP8
 * rendition (this Firefox has no H.264), and a node that announces loopback alone, which Firefox
 * cannot reach, makes the player say so.
 *
 * Firefox's bandwidth estimate (REMB) is not used: mediasoup 3.27 drops REMB (see
 * consumerCapabilities in media/sdp.ts), so the edge does not negotiate it and chooses Firefox's
 * layer by its losses, as for Chromium; the simulcast viewer's test shows what the edge reports.
 */

const SECRET = 'firefox-test-secret-0123456789abcdef';

/**
 * No address flags: a node without --announced-ip offers every interface address besides loopback
 * (core/announcedAddresses.ts), which is what Firefox pairs.
 */
const common = ['--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

/** A wait, not a figure: a first frame comes within seconds; two busy cores may slow it down. */
const PICTURE_TIMEOUT_MS = 60_000;

/**
 * Layer widths of publishSimulcast()'s 960x540 capture scaled by 4, 2 and 1: Chromium's layers as
 * kit/browser.ts gives them, and Firefox 153's own scales for three layers.
 */
const WIDTH = { q: 240, h: 480, f: 960 } as const;

const publishToken = (stream: string) => signStreamToken(SECRET, { stream, action: 'publish' });

/** Waits (bounded) until the viewer has decoded frames `wide` enough; returns its stats. */
async function decoding(page: ScriptPage, what: string, wide: (width: number) => boolean = (w) => w > 0): Promise<PlaybackStats> {
  let stats = await playbackStats(page);
  await waitFor(what, async () => {
    stats = await playbackStats(page);
    return stats.framesDecoded > 0 && wide(stats.frameWidth);
  }, PICTURE_TIMEOUT_MS, 250).catch((error: Error) => {
    throw new Error(`${error.message}; last stats ${JSON.stringify(stats)}`, { cause: error });
  });
  return stats;
}

const describeStats = (s: PlaybackStats) => `${s.videoCodec} ${s.frameWidth}x${s.frameHeight}, ${s.framesDecoded} frames decoded`;

describe('Firefox ESR (puppeteer over WebDriver BiDi) and Chromium, origin + edge', function () {
  this.timeout(180_000);
  let testDb: TestDatabase | undefined;
  let origin: RelaycastProcess | undefined;
  let edge: RelaycastProcess | undefined;
  let chromium: TestBrowser | undefined;
  let firefox: TestFirefox | undefined;

  before(async () => {
    testDb = await createTestDatabase();
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
    [origin, edge, chromium, firefox] = await Promise.all([
      startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-firefox', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-firefox', ...common] }),
      TestBrowser.launch(),
      TestFirefox.launch(),
    ]);
    console.log(`      ${await firefox.version()}`);
  });

  after(async () => {
    await firefox?.close();
    await chromium?.close();
    await edge?.stop();
    await origin?.stop();
    await testDb?.drop();
  });

  it('plays a Chromium WHIP stream from the edge: VP8 in one layer', async () => {
    const stream = 'chromium-vp8';
    const publisher = await chromium!.page(origin!.url);
    const published = await publish(publisher, `${origin!.url}/whip/${stream}`, await publishToken(stream), 'video/VP8');
    assert.equal(published.status, 201, published.body);

    const viewer = await firefox!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    const stats = await decoding(viewer, 'Firefox decoding the stream');
    console.log(`      Firefox: ${describeStats(stats)}`);
    assert.equal(stats.videoCodec, 'video/VP8');

    await stopViewing(viewer);
    await viewer.close();
    assert.equal(await stopPublishing(publisher, await publishToken(stream)), 200);
    await publisher.close();
  });

  it('plays a Chromium simulcast stream from the edge up to its top layer, the layer chosen by its losses (REMB is not negotiated)', async () => {
    const stream = 'chromium-simulcast';
    const publisher = await chromium!.page(origin!.url);
    const published = await publishSimulcast(publisher, `${origin!.url}/whip/${stream}`, await publishToken(stream));
    assert.equal(published.status, 201, published.body);
    await layersSending(publisher, 3);

    const viewer = await firefox!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    // Firefox offers goog-remb and puts abs-send-time at mediasoup's id. When the answer took REMB,
    // Firefox sent it every 250 ms or so, mediasoup dropped each ("Received REMB for packet feedback
    // only GoogCC", on the edge's stderr with DEBUG=mediasoup:ERROR*), and the layer event below
    // said estimated: true, downlink: 1000000 for good (the estimator's start value).
    assert.doesNotMatch(played.body, /goog-remb/, 'the answer takes no REMB');
    const stats = await decoding(viewer, `Firefox decoding the top layer (${WIDTH.f} wide)`, (w) => w === WIDTH.f);
    console.log(`      Firefox: ${describeStats(stats)}`);
    assert.equal(stats.videoCodec, 'video/VP8');

    // What the edge says of the viewer's link (the WHEP events extension's `layer` event, sent on
    // opening the stream, on every change and on every layer request; `{}` asks for automatic,
    // which it already is): loss-driven, with the bitrate it delivered without loss (once it has
    // read a receiver report over enough packets).
    const links = await viewerExtensions(viewer);
    assert.equal((await openEvents(viewer, links['urn:ietf:params:whep:ext:core:server-sent-events']!, ['layer'])).status, 201);
    let layer: Record<string, any> | undefined;
    await waitFor('a layer event with the downlink the edge measured', async () => {
      const events = await receivedEvents(viewer);
      layer = Object.values(events.filter((e) => e.event === 'layer').at(-1)?.data ?? {})[0] as Record<string, any> | undefined;
      if (layer?.downlink > 0) return true;
      assert.equal((await selectLayer(viewer, links['urn:ietf:params:whep:ext:core:layer']!, {})).status, 200);
      return false;
    }, 20_000, 1000);
    console.log(`      the edge's layer event: ${JSON.stringify(layer)}`);
    assert.equal(layer!.rid, 'f');
    assert.equal(layer!.mode, 'auto');
    assert.equal(layer!.estimated, false, 'no bandwidth estimate: the layer follows losses');

    await stopViewing(viewer);
    await viewer.close();
    assert.equal(await stopPublishing(publisher, await publishToken(stream)), 200);
    await publisher.close();
  });

  it('publishes over WHIP in the codec it prefers; Chromium plays it from the edge', async () => {
    const stream = 'firefox-own-codec';
    const publisher = await firefox!.page(origin!.url);
    const published = await publish(publisher, `${origin!.url}/whip/${stream}`, await publishToken(stream));
    assert.equal(published.status, 201, published.body);
    // Firefox's first video codec, and (offline, without its OpenH264 plugin) one every browser plays.
    assert.match(published.body, /^m=video \d+ \S+ 120\b/m, 'the origin takes its first codec');
    assert.match(published.body, /^a=rtpmap:120 VP8\/90000\r?$/m);

    const viewer = await chromium!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    // Firefox starts small (320 wide here) and sends the whole picture (640) once its estimate
    // allows, some 20 s later here: any width will do.
    const stats = await decoding(viewer, 'Chromium decoding the stream');
    console.log(`      Chromium: ${describeStats(stats)}`);
    assert.equal(stats.videoCodec, 'video/VP8');
    assert.ok(stats.audioPacketsReceived > 0, 'and its audio arrives');

    await stopViewing(viewer);
    await viewer.close();
    assert.equal(await stopPublishing(publisher, await publishToken(stream)), 200);
    await publisher.close();
  });

  it('publishes its own simulcast (rids only, its own sizes and bitrates): the origin receives every layer, Chromium plays it from the edge', async () => {
    const stream = 'firefox-simulcast';
    const publisher = await firefox!.page(origin!.url);
    const published = await publishSimulcast(publisher, `${origin!.url}/whip/${stream}`, await publishToken(stream), { layers: [{ rid: 'q' }, { rid: 'h' }, { rid: 'f' }] });
    assert.equal(published.status, 201, published.body);
    assert.match(published.offer, /^a=simulcast:send q;h;f\r?$/m);
    assert.match(published.body, /^a=simulcast:recv q;h;f\r?$/m, 'the answer takes every layer');

    // The origin's own account of what arrives, layer by layer (its /metrics).
    const bitrates: Record<string, number | undefined> = {};
    await waitFor('the origin receiving all three layers', async () => {
      for (const rid of ['q', 'h', 'f']) bitrates[rid] = await metric(origin!.url, 'relaycast_ingest_layer_bitrate_bps', { stream, layer: rid });
      return Object.values(bitrates).every((b) => (b ?? 0) > 0);
    }, PICTURE_TIMEOUT_MS, 500).catch(async (error: Error) => {
      throw new Error(`${error.message}; bits/s by layer ${JSON.stringify(bitrates)}; Firefox's frames sent by layer ${JSON.stringify(await framesSentByRid(publisher))}`, { cause: error });
    });
    console.log(`      the origin receives (bit/s): ${JSON.stringify(bitrates)}; Firefox sent frames: ${JSON.stringify(await framesSentByRid(publisher))}`);

    const viewer = await chromium!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    const stats = await decoding(viewer, `Chromium decoding the top layer (${WIDTH.f} wide)`, (w) => w === WIDTH.f);
    console.log(`      Chromium: ${describeStats(stats)}`);
    assert.equal(stats.videoCodec, 'video/VP8');
    assert.equal((await selectLayer(viewer, (await viewerExtensions(viewer))['urn:ietf:params:whep:ext:core:layer']!, { rid: 'q' })).status, 200);
    await decoding(viewer, `Chromium decoding the q layer (${WIDTH.q} wide) once pinned`, (w) => w === WIDTH.q);

    await stopViewing(viewer);
    await viewer.close();
    assert.equal(await stopPublishing(publisher, await publishToken(stream)), 200);
    await publisher.close();
  });

  describe('the quick start: `relaycast all` on the embedded database, no address flags', () => {
    const ADMIN = 'firefox-quickstart-admin-0123456789';
    let node: RelaycastProcess | undefined;
    let rtmp: ChildProcess | undefined;
    const createStream = async (name: string) => {
      const res = await fetch(`${node!.url}/api/v1/streams`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()) as { publishToken: string; rtmpUrl: string };
    };

    before(async () => {
      // As `npm start` runs it: every role, PGlite, the default listen and announced addresses.
      node = await startRelaycast({ roles: ['all'], env: { RELAYCAST_ADMIN_TOKEN: ADMIN } });
      const announced = node.output().split('\n').find((l) => l.includes('"msg":"media addresses announced"'));
      assert.ok(announced, 'the node logs the media addresses it announces');
      const { candidates } = JSON.parse(announced) as { candidates: string[] };
      console.log(`      quick-start node announces ${candidates.join(', ')}`);
      assert.ok(candidates.some((c) => !c.startsWith('127.')), `an interface address besides loopback: ${announced}`);
    });
    after(async () => {
      rtmp?.kill('SIGKILL');
      await node?.stop();
    });

    it("the player page (/play) plays a Chromium WHIP stream in Firefox, through the edge's counter-offer (transport-cc estimated)", async () => {
      const stream = 'quickstart-whip';
      const { publishToken } = await createStream(stream);
      const publisher = await chromium!.page(node!.url);
      assert.equal((await publish(publisher, `${node!.url}/whip/${stream}`, publishToken, 'video/VP8')).status, 201);
      const page = await firefox!.page(node!.url);
      await page.goto(`${node!.url}/play/${stream}?counterOffer=1`);
      const stats = await playing(page, 'the /play page playing in Firefox', { timeoutMs: PICTURE_TIMEOUT_MS });
      console.log(`      Firefox /play: ${stats.state}, ${stats.width}x${stats.videoHeight}, ${stats.framesDecoded} frames decoded`);
      // The edge says so in the layer event once the player's event stream is open.
      await waitFor('the player\'s stats saying the edge estimates the link', async () => (await page.evaluate(() => (window as any).relaycastPlayer.stats().estimated)) === true, 10_000);
      await page.close();
      await stopPublishing(publisher, publishToken);
      await publisher.close();
    });

    it("an RTMP publish with x264's defaults (High, B-frames, 2 s key frames) plays in Firefox through the origin's VP8 rendition", async () => {
      const stream = 'quickstart-rtmp';
      const { rtmpUrl } = await createStream(stream); // the key included
      rtmp = spawn(
        'ffmpeg',
        ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
          // What a user leaves at x264's defaults, with the 2 s key frames streaming services ask for.
          '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '120', '-f', 'flv', rtmpUrl],
        { stdio: 'ignore' },
      );
      const viewer = await firefox!.page(node!.url);
      let played = { status: 0, body: '' };
      // The stream is live once the bridge has probed the publish (a second or two): until then 404.
      await waitFor('a WHEP answer for the RTMP stream', async () => {
        played = await play(viewer, `${node!.url}/whep/${stream}`);
        if (played.status !== 201) await stopViewing(viewer);
        return played.status === 201;
      }, 30_000, 1000).catch((error: Error) => {
        throw new Error(`${error.message}; last answer ${played.status} ${played.body.slice(0, 300)}`, { cause: error });
      });
      const stats = await decoding(viewer, 'Firefox decoding the RTMP stream', (w) => w === 640);
      console.log(`      Firefox, RTMP x264 defaults: ${describeStats(stats)}`);
      assert.equal(stats.videoCodec, 'video/VP8', 'the VP8 rendition: this Firefox has no H.264');
      assert.ok(stats.audioPacketsReceived > 0, 'audio too');
      assert.match(node!.output(), /"component":"rtmp-rendition".*"rendition":"vp8"/);
      await stopViewing(viewer);
      await viewer.close();
      rtmp.kill('SIGKILL');
    });

    it('a node that announces loopback alone: Firefox cannot reach its media, and the player plays its HLS instead, keeping why WebRTC failed', async function () {
      // A session of 10 s without media (player/relaycast-player.js CONNECT_TIMEOUT_MS), then HLS.
      this.timeout(150_000);
      const stream = 'quickstart-loopback';
      const loopback = await startRelaycast({ roles: ['all'], env: { RELAYCAST_ADMIN_TOKEN: ADMIN }, args: ['--rtc-listen-ip', '127.0.0.1'] });
      try {
        const res = await fetch(`${loopback.url}/api/v1/streams`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: stream }),
        });
        const { publishToken } = (await res.json()) as { publishToken: string };
        const publisher = await chromium!.page(loopback.url);
        assert.equal((await publish(publisher, `${loopback.url}/whip/${stream}`, publishToken, 'video/VP8')).status, 201, 'Chromium pairs loopback (--allow-loopback-in-peer-connection)');
        const page = await firefox!.page(loopback.url);
        await page.goto(`${loopback.url}/play/${stream}`);
        let last: PageStats | undefined;
        await waitFor('the player playing over HLS', async () => (last = await playerStats(page)).state === 'playing' && last.mode === 'hls' && last.framesDecoded > 10 && last.videoWidth > 0, 120_000, 500).catch(
          (error: Error) => {
            throw new Error(`${error.message}; last ${JSON.stringify(last)}`, { cause: error });
          },
        );
        console.log(`      Firefox, loopback-only node: plays over HLS, ${last!.videoWidth} wide, ${last!.latencyMs} ms behind live`);
        const failure = await page.evaluate(() => (window as any).relaycastPlayer.failure as { kind: string; offered: Array<{ address: string }>; reason: string });
        console.log(`      and keeps why WebRTC did not: ${failure.kind}: ${failure.reason}`);
        assert.equal(failure.kind, 'ice');
        assert.deepEqual([...new Set(failure.offered.map((c) => c.address))], ['127.0.0.1']);
        assert.match(failure.reason, /127\.0\.0\.1:\d+ \(udp\)/);
        assert.match(failure.reason, /--announced-ip/);
        await page.close();
        await stopPublishing(publisher, publishToken);
        await publisher.close();
      } finally {
        await loopback.stop();
      }
    });
  });
});
