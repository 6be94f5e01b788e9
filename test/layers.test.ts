import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { Database } from '../db/Database.ts';
import { signStreamToken } from '../core/tokens.ts';
import { TestBrowser, layersSending, openEvents, play, playbackStats, publishSimulcast, receivedEvents, selectLayer, stopPublishing, viewerExtensions, type PlaybackStats } from '../kit/browser.ts';
import { metric } from '../kit/metrics.ts';
import { createNetns, delayUnavailable, netnsUnavailable, type NetNs } from '../kit/netns.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playerStats, playing } from './helpers/player.ts';

/**
 * Viewers on real networks (issue 16): Chromium publishes three simulcast layers over WHIP to an
 * origin; a Chromium viewer in a network namespace plays from the edge, and `tc` shapes the link
 * toward it. The viewer's layer follows its link (the edge's loss-driven selection: Chromium's
 * header-extension ids do not line up with mediasoup's, so there is no bandwidth estimate), lost
 * packets are repaired by NACK through the relay, and the viewer can pin a layer through the WHEP
 * layer extension and hear about it over server-sent events.
 *
 * Layers (kit/browser.ts publishSimulcast): q 240x135 at ≤150 kbit/s, h 480x270 at ≤500,
 * f 960x540 at ≤1,200. Heights are what the assertions read, from the viewer's own stats.
 */

const SECRET = 'layers-test-secret-0123456789abc';
const ADMIN = 'layers-test-admin-token-0123456789abc';
const HEIGHT = { q: 135, h: 270, f: 540 } as const;
/**
 * Below h plus audio, above q plus audio with room. The figure is 400 kbit/s for a
 * 1080p ladder; this test's h layer (480x270 of Chromium's fake camera) runs at ~330 kbit/s and
 * Opus at ~40, so 400 would carry it: 250 makes the same point for this ladder.
 */
const NARROW_KBIT = 250;
/** The RTMP ladder's 180p layer runs at ≤200 kbit/s and its 360p at ≤700 (origin/ladder.ts), AAC→Opus at ~40. */
const LADDER_NARROW_KBIT = 400;

const common = ['--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

/** Samples the viewer for `ms` (every 500 ms) and returns the first and last sample. */
async function watch(page: Page, ms: number): Promise<[PlaybackStats, PlaybackStats]> {
  const first = await playbackStats(page);
  await new Promise((r) => setTimeout(r, ms));
  return [first, await playbackStats(page)];
}

async function waitForHeight(page: Page, what: string, wanted: (height: number) => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last: PlaybackStats | undefined;
  await waitFor(what, async () => {
    last = await playbackStats(page);
    return last.framesDecoded > 0 && wanted(last.frameHeight);
  }, timeoutMs, 250).catch((error: Error) => {
    throw new Error(`${error.message}; last stats ${JSON.stringify(last)}`, { cause: error });
  });
  return Date.now() - started;
}

describe('simulcast layers toward viewers on shaped links (Chromium in a network namespace)', function () {
  /** The edge's last layer decisions and scores (its debug log), for a failure's message. */
  const edgeLog = () =>
    (edge?.output() ?? '')
      .split('\n')
      .filter((l) => /viewer (layer|score|estimate)|ceiling/.test(l))
      .slice(-25)
      .map((l) => l.replace(/"(level|time|pid|hostname|node|role)":[^,]*,/g, ''))
      .join('\n');
  this.timeout(240_000);
  let netns: NetNs | undefined;
  let testDb: TestDatabase | undefined;
  let db: Database | undefined;
  let origin: RelaycastProcess | undefined;
  let edge: RelaycastProcess | undefined;
  let publisherBrowser: TestBrowser | undefined;
  let viewerBrowser: TestBrowser | undefined;
  let publisher: Page;
  const stream = 'layers';

  before(async function () {
    const reason = netnsUnavailable({ shaping: true });
    if (reason) {
      console.log(`    skipped: ${reason}`);
      this.skip();
    }
    netns = await createNetns();
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    // Both nodes on the veth's host address (a loopback-announced origin relaying to a
    // veth-announced edge does not carry media); only what goes into the namespace is shaped.
    [origin, edge] = await Promise.all([
      startRelaycast({ roles: ['origin', 'balancer'], host: netns.hostIp, databaseUrl: testDb.url, env, args: ['--node-id', 'origin-layers', ...common] }),
      // Debug: the edge's layer decisions and mediasoup's scores, for a failure's message (edgeLog).
      startRelaycast({ roles: ['edge'], host: netns.hostIp, databaseUrl: testDb.url, env, args: ['--node-id', 'edge-layers', '--log-level', 'debug', ...common] }),
    ]);
    [publisherBrowser, viewerBrowser] = await Promise.all([TestBrowser.launch({ secureOrigins: [origin.url] }), TestBrowser.launch({ netns: netns.name })]);

    publisher = await publisherBrowser.page(origin.url);
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const published = await publishSimulcast(publisher, `${origin.url}/whip/${stream}`, token);
    assert.equal(published.status, 201, published.body);
    await layersSending(publisher, 3);
  });

  after(async () => {
    netns?.shape(undefined);
    if (publisher) await stopPublishing(publisher, await signStreamToken(SECRET, { stream, action: 'publish' })).catch(() => undefined);
    await viewerBrowser?.close();
    await publisherBrowser?.close();
    await edge?.stop();
    await origin?.stop();
    await db?.close();
    await testDb?.drop();
    await netns?.remove();
  });

  it(`a viewer settles on the top layer, drops to the lowest on a narrow link (${NARROW_KBIT} kbit/s) and keeps decoding, and climbs back when the link recovers`, async () => {
    netns!.shape(undefined);
    const viewer = await viewerBrowser!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    await waitForHeight(viewer, `the top layer (${HEIGHT.f} high)`, (h) => h === HEIGHT.f, 60_000);

    netns!.shape({ rateKbit: NARROW_KBIT });
    const down = await waitForHeight(viewer, `the lowest layer (${HEIGHT.q} high) on ${NARROW_KBIT} kbit/s`, (h) => h === HEIGHT.q, 60_000);
    const [before, after] = await watch(viewer, 10_000);
    console.log(`      ${NARROW_KBIT} kbit/s: down to ${HEIGHT.q}p after ${down} ms; then in 10 s: ${after.framesDecoded - before.framesDecoded} frames decoded, ${after.freezeCount - before.freezeCount} freezes, height ${after.frameHeight}`);
    assert.ok(after.framesDecoded > before.framesDecoded, `the viewer keeps decoding on the narrow link; ${JSON.stringify(after)}; the edge: ${edgeLog()}`);
    assert.notEqual(after.frameHeight, HEIGHT.f, 'the narrow link does not carry the top layer');

    netns!.shape(undefined);
    const up = await waitForHeight(viewer, `the top layer again once the link recovers`, (h) => h === HEIGHT.f, 120_000);
    console.log(`      link restored: back to ${HEIGHT.f}p after ${up} ms`);
    const switchesDown = await metric(edge!.url, 'relaycast_layer_switches_total', { direction: 'down', mode: 'auto', control: 'loss' });
    assert.ok((switchesDown ?? 0) > 0, `the edge counted the switch down (relaycast_layer_switches_total: ${switchesDown})`);
    await viewer.close();
  });

  it('2 % loss and 100 ms delay: the viewer keeps playing, its losses repaired by NACK through the relay', async () => {
    const noDelay = delayUnavailable();
    if (noDelay) console.log(`      no added delay (${noDelay}): 2 % loss alone`);
    netns!.shape({ delayMs: noDelay ? undefined : 100, lossPercent: 2 });
    const viewer = await viewerBrowser!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    assert.match(played.body, /^a=rtcp-fb:\d+ nack\r?$/m, 'the answer lets the viewer NACK');
    await waitForHeight(viewer, 'the first frames', () => true, 60_000);
    const [before, after] = await watch(viewer, 15_000);
    netns!.shape(undefined);
    const frames = after.framesDecoded - before.framesDecoded;
    const nacks = after.nackCount - before.nackCount;
    console.log(`      2 % loss, 100 ms: ${frames} frames decoded in 15 s, ${nacks} NACKs, ${after.packetsLost - before.packetsLost} packets lost for good of ${after.packetsReceived - before.packetsReceived}, ${after.freezeCount - before.freezeCount} freezes, height ${after.frameHeight}`);
    assert.ok(nacks > 0, 'the viewer sent NACKs');
    assert.ok(frames > 0, 'the viewer keeps decoding');
    await viewer.close();
  });

  it('a viewer pins a layer through the WHEP layer extension, hears of it over server-sent events, and goes back to automatic', async () => {
    netns!.shape(undefined);
    const viewer = await viewerBrowser!.page(edge!.url);
    const played = await play(viewer, `${edge!.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    const links = await viewerExtensions(viewer);
    const layerUrl = links['urn:ietf:params:whep:ext:core:layer'];
    const eventsUrl = links['urn:ietf:params:whep:ext:core:server-sent-events'];
    assert.ok(layerUrl && eventsUrl, `the 201 advertises both extensions: ${JSON.stringify(links)}`);

    const opened = await openEvents(viewer, eventsUrl, ['layers', 'layer', 'viewercount']);
    assert.equal(opened.status, 201);
    await waitFor('a layers event', async () => (await receivedEvents(viewer)).some((e) => e.event === 'layers'), 10_000);
    const layers = (await receivedEvents(viewer)).find((e) => e.event === 'layers')!.data as Record<string, Array<{ rid: string }>>;
    const [mediaId, list] = Object.entries(layers)[0]!;
    assert.deepEqual(list.map((l) => l.rid), ['f', 'h', 'q'], 'the layers, highest first, by the publisher\'s rids');

    assert.equal((await selectLayer(viewer, layerUrl, { mediaId, rid: 'q' })).status, 200);
    await waitForHeight(viewer, 'the pinned lowest layer', (h) => h === HEIGHT.q, 30_000);
    await waitFor('a layer event saying pinned', async () => (await receivedEvents(viewer)).some((e) => e.event === 'layer' && e.data[mediaId]?.mode === 'pinned'), 10_000);

    assert.equal((await selectLayer(viewer, layerUrl, { spatialLayerId: 1 })).status, 200);
    await waitForHeight(viewer, 'the pinned middle layer', (h) => h === HEIGHT.h, 30_000);

    const bad = await selectLayer(viewer, layerUrl, { rid: 'nope' });
    assert.equal(bad.status, 400, bad.body);
    assert.match(bad.body, /no layer has rid/);

    assert.equal((await selectLayer(viewer, layerUrl, { mediaId })).status, 200);
    await waitForHeight(viewer, 'the top layer again (automatic)', (h) => h === HEIGHT.f, 60_000);
    await waitFor('a layer event with the top layer', async () => (await receivedEvents(viewer)).some((e) => e.event === 'layer' && e.data[mediaId]?.mode === 'auto' && e.data[mediaId]?.rid === 'f'), 10_000);
    await viewer.close();
  });

  it('the web player offers the layers in its quality menu, plays the one chosen, and shows the layer in its stats', async () => {
    netns!.shape(undefined);
    const page = await viewerBrowser!.page(origin!.url);
    await page.goto(`${origin!.url}/play/${stream}`);
    await playing(page, 'the player page playing');
    await waitFor('the quality menu with Auto and three layers', async () => (await page.locator('#quality option').count()) === 4, 15_000);
    assert.equal(await page.locator('#quality-box').isVisible(), true);
    const options = await page.locator('#quality option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.deepEqual(options, ['auto', 'f', 'h', 'q']);

    await page.selectOption('#quality', 'q');
    await waitFor('the lowest layer on the page', async () => (await playerStats(page)).videoHeight === HEIGHT.q, 30_000);
    await waitFor('the stats panel naming the pinned layer', async () => (await page.locator('dd[data-stat="layer"]').textContent()) === 'Low (pinned)', 10_000);

    await page.selectOption('#quality', 'auto');
    await waitFor('the top layer again', async () => (await playerStats(page)).videoHeight === HEIGHT.f, 60_000);
    await waitFor('the stats panel naming the automatic layer', async () => (await page.locator('dd[data-stat="layer"]').textContent()) === 'High (auto)', 10_000);
    await page.close();
  });

  it(`the web player asked for a counter-offer takes it: the edge estimates its link from transport-cc, and on ${NARROW_KBIT} kbit/s the estimate, not loss, takes it below the top layer (frames decoded there: printed, see the README)`, async () => {
    netns!.shape(undefined);
    const page = await viewerBrowser!.page(origin!.url);
    await page.goto(`${origin!.url}/play/${stream}?counterOffer=1`);
    await playing(page, 'the player page playing');
    const player = () => page.evaluate(() => (window as any).relaycastPlayer.stats() as { estimated: boolean | null; downlinkKbps: number | null; layer: string | null });
    let stats = await player();
    await waitFor('the edge\'s estimate of the link in the player\'s stats', async () => {
      stats = await player();
      return stats.estimated === true && (stats.downlinkKbps ?? 0) > 0;
    }, 30_000, 500).catch((error: Error) => {
      throw new Error(`${error.message}; stats ${JSON.stringify(stats)}`, { cause: error });
    });
    await waitFor('the top layer', async () => (await playerStats(page)).videoHeight === HEIGHT.f, 60_000);

    // The narrow link, sampled for 15 s. How fast and how smoothly is the benchmark's to measure
    // (bench:layers --only paths); what must hold is the way down: by the estimate, none by loss.
    // Frames decoded down there are printed, not asserted: on a loaded machine the estimate has
    // sat near its floor with a few frames in 15 s (open in issue 33, see the README).
    const byLoss = () => metric(edge!.url, 'relaycast_layer_switches_total', { direction: 'down', mode: 'auto', control: 'loss' });
    const lossBefore = (await byLoss()) ?? 0;
    netns!.shape({ rateKbit: NARROW_KBIT });
    const started = Date.now();
    const before = await playerStats(page);
    let belowTopAt: number | undefined;
    let topSamples = 0;
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const now = await playerStats(page);
      if (now.videoHeight < HEIGHT.f) belowTopAt ??= Date.now() - started;
      else if (belowTopAt !== undefined) topSamples++;
    }
    const after = await playerStats(page);
    const byEstimate = await metric(edge!.url, 'relaycast_layer_switches_total', { direction: 'down', mode: 'auto', control: 'estimate' });
    const summary = `below ${HEIGHT.f}p after ${belowTopAt ?? 'never'} ms; in 15 s ${after.framesDecoded - before.framesDecoded} frames decoded, ${topSamples} later samples at ${HEIGHT.f}p, the edge's layer ${(await player()).layer}, estimate ${(await player()).downlinkKbps} kbit/s, switches down by estimate ${byEstimate ?? 0}`;
    console.log(`      estimate path, ${NARROW_KBIT} kbit/s: ${summary}`);
    netns!.shape(undefined);
    assert.ok(belowTopAt !== undefined, `the narrow link takes the viewer below the top layer: ${summary}; the edge: ${edgeLog()}`);
    assert.ok((byEstimate ?? 0) > 0, `the edge switched down by the estimate: ${summary}`);
    assert.equal((await byLoss()) ?? 0, lossBefore, 'no switch by loss for a viewer the edge estimates');
    await page.close();
  });

  it('the same with an RTMP ladder: ffmpeg publishes 640x360, the origin makes 360p and 180p, the viewer drops to 180p on a narrow link and climbs back', async () => {
    // One publisher at a time on this 2-core machine: the WHIP one is done.
    await stopPublishing(publisher, await signStreamToken(SECRET, { stream, action: 'publish' }));
    netns!.shape(undefined);
    const name = 'layers-rtmp';
    const created = await fetch(`${origin!.url}/api/v1/streams`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name, rtmpLadder: [360, 180] }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const { rtmpUrl } = (await created.json()) as { rtmpUrl: string };
    const ffmpeg = spawnTracked('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440',
      '-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '170', '-f', 'flv', rtmpUrl], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    ffmpeg.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const viewer = await viewerBrowser!.page(edge!.url);
      let status = 0;
      // The stream is live once the origin has probed the publish and started its bridge.
      await waitFor('the ladder stream playable at the edge', async () => {
        status = (await play(viewer, `${edge!.url}/whep/${name}`)).status;
        if (status !== 201) await viewer.reload();
        return status === 201;
      }, 30_000, 1000).catch((error: Error) => {
        const log = origin!.output().split('\n').filter((l) => /rtmp|bridge|publish/i.test(l)).slice(-8).join('\n');
        throw new Error(`${error.message}; last status ${status}; ${rtmpUrl}; ffmpeg: ${stderr.slice(-300)}; origin: ${log}`, { cause: error });
      });
      await waitForHeight(viewer, 'the ladder\'s top layer (360 high)', (h) => h === 360, 60_000);
      netns!.shape({ rateKbit: LADDER_NARROW_KBIT });
      const down = await waitForHeight(viewer, `the ladder's lowest layer (180 high) on ${LADDER_NARROW_KBIT} kbit/s`, (h) => h === 180, 60_000);
      const [before, after] = await watch(viewer, 10_000);
      console.log(`      ladder, ${LADDER_NARROW_KBIT} kbit/s: down to 180p after ${down} ms; then in 10 s: ${after.framesDecoded - before.framesDecoded} frames decoded, ${after.freezeCount - before.freezeCount} freezes`);
      assert.ok(after.framesDecoded > before.framesDecoded, `the viewer keeps decoding on the narrow link; ${JSON.stringify(after)}; the edge: ${edgeLog()}`);
      netns!.shape(undefined);
      const up = await waitForHeight(viewer, 'the ladder\'s top layer again', (h) => h === 360, 120_000);
      console.log(`      ladder, link restored: back to 360p after ${up} ms`);
      await viewer.close();
    } finally {
      netns!.shape(undefined);
      await stopProcess(ffmpeg, 3000);
    }
  });
});
