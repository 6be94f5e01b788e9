import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { TestBrowser, firstFrameMs, play, playbackStats, publish, selectedCandidatePair, stopPublishing, stopViewing, type PlaybackStats } from '../kit/browser.ts';
import { createNetns, netnsUnavailable, type NetNs } from '../kit/netns.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * Viewers on networks that block UDP: every WebRTC transport also listens on TCP (ICE-TCP passive
 * candidates, media/WebRtcSession.ts), and a Chromium viewer in a network namespace whose UDP is
 * dropped (kit/netns.ts blockUdp()) must play through it. The same viewer without the block plays
 * over UDP, the baseline. Chromium publishes over WHIP to an origin from the host; the viewers play
 * over WHEP from an edge. Times and rates are printed, not asserted: CI machines are loaded.
 */

const SECRET = 'icetcp-test-secret-0123456789abcd';
const STREAM = 'icetcp';
/**
 * A wait, not a figure: with UDP blocked, Chromium first finds its UDP checks unanswered; the
 * TCP pair is tried beside them, so a picture within a few seconds is expected.
 */
const FIRST_FRAME_TIMEOUT_MS = 30_000;
/** How long each viewer is watched after its first frame, for the printed rates. */
const WATCH_MS = 5_000;

const common = ['--heartbeat-ms', '500', '--node-ttl-ms', '3000'];

/**
 * What a viewer received over `ms`, in one line. Jitter is the video's at the end, printed in
 * whole milliseconds: Chromium's video jitter came in steps of one in every run here.
 */
function describeWatch(before: PlaybackStats, after: PlaybackStats, ms: number): string {
  const seconds = ms / 1000;
  const kbit = ((after.bytesReceived - before.bytesReceived) * 8) / ms;
  const fps = (after.framesDecoded - before.framesDecoded) / seconds;
  return (
    `video ${kbit.toFixed(0)} kbit/s, ${fps.toFixed(1)} frames/s decoded (${after.frameWidth}x${after.frameHeight}), ` +
    `jitter ${(after.jitter * 1000).toFixed(0)} ms, ${after.freezeCount - before.freezeCount} freezes, ` +
    `${after.packetsLost - before.packetsLost} packets lost of ${after.packetsReceived - before.packetsReceived}`
  );
}

describe('ICE-TCP fallback: a viewer on a network that blocks UDP (Chromium in a network namespace)', function () {
  this.timeout(240_000);
  let netns: NetNs | undefined;
  let testDb: TestDatabase | undefined;
  let origin: RelaycastProcess | undefined;
  let edge: RelaycastProcess | undefined;
  let publisherBrowser: TestBrowser | undefined;
  let viewerBrowser: TestBrowser | undefined;
  let publisher: Page | undefined;

  before(async function () {
    const reason = netnsUnavailable({ firewall: true });
    if (reason) {
      console.log(`      SKIPPED: ${reason}`);
      this.skip();
    }
    netns = await createNetns();
    testDb = await createTestDatabase();
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
    // Both nodes on the veth's host address (a loopback-announced origin relaying to a
    // veth-announced edge does not carry media), so the viewer in the namespace reaches the edge.
    [origin, edge] = await Promise.all([
      startRelaycast({ roles: ['origin'], host: netns.hostIp, databaseUrl: testDb.url, env, args: ['--node-id', 'origin-icetcp', ...common] }),
      // The relay outlives the warm-up viewer (below) for the whole test.
      startRelaycast({ roles: ['edge'], host: netns.hostIp, databaseUrl: testDb.url, env, args: ['--node-id', 'edge-icetcp', ...common, '--relay-linger-ms', '600000'] }),
    ]);
    [publisherBrowser, viewerBrowser] = await Promise.all([TestBrowser.launch({ secureOrigins: [origin.url] }), TestBrowser.launch({ netns: netns.name })]);

    publisher = await publisherBrowser.page(origin.url);
    const published = await publish(publisher, `${origin.url}/whip/${STREAM}`, await signStreamToken(SECRET, { stream: STREAM, action: 'publish' }), 'video/VP8');
    assert.equal(published.status, 201, published.body);

    // A warm-up viewer on the host brings the stream to the edge, so that both measured viewers
    // find its relay already up and their times to first frame compare the transports alone.
    const warmUp = await publisherBrowser.page(edge.url);
    const played = await play(warmUp, `${edge.url}/whep/${STREAM}`);
    assert.equal(played.status, 201, played.body);
    await firstFrameMs(warmUp, FIRST_FRAME_TIMEOUT_MS);
    await stopViewing(warmUp);
    await warmUp.close();
  });

  after(async () => {
    if (publisher) await stopPublishing(publisher, await signStreamToken(SECRET, { stream: STREAM, action: 'publish' })).catch(() => undefined);
    await viewerBrowser?.close();
    await publisherBrowser?.close();
    await edge?.stop();
    await origin?.stop();
    await testDb?.drop();
    await netns?.remove();
  });

  /** Plays in the namespace, asserts the picture and the transport, prints the figures. */
  async function playOver(protocol: 'udp' | 'tcp'): Promise<void> {
    const viewer = await viewerBrowser!.page(edge!.url);
    try {
      const played = await play(viewer, `${edge!.url}/whep/${STREAM}`);
      assert.equal(played.status, 201, played.body);
      assert.match(played.body, /^a=candidate:\S+ 1 tcp \d+ \S+ \d+ typ host tcptype passive\r?$/m, 'the answer offers an ICE-TCP candidate');
      const firstFrame = await firstFrameMs(viewer, FIRST_FRAME_TIMEOUT_MS);
      const pair = await selectedCandidatePair(viewer);
      assert.equal(pair?.localProtocol, protocol, `the viewer's selected candidate pair: ${JSON.stringify(pair)}`);
      assert.equal(pair?.remoteProtocol, protocol, `the viewer's selected candidate pair: ${JSON.stringify(pair)}`);

      const before = await playbackStats(viewer);
      await new Promise((r) => setTimeout(r, WATCH_MS));
      const after = await playbackStats(viewer);
      console.log(`      ${protocol}: first frame ${firstFrame} ms after the WHEP POST (pair ${pair!.localCandidateType} → ${pair!.remoteCandidateType} ${pair!.remoteAddress})`);
      console.log(`      ${protocol}: then in ${WATCH_MS / 1000} s: ${describeWatch(before, after, WATCH_MS)}`);
      assert.ok(after.framesDecoded > before.framesDecoded, 'the viewer keeps decoding');
    } finally {
      await stopViewing(viewer);
      await viewer.close();
    }
  }

  it('without a block, the viewer plays over UDP (the baseline)', async () => {
    await playOver('udp');
  });

  it('with all UDP dropped in both directions, the viewer plays over ICE-TCP', async () => {
    netns!.blockUdp(true);
    try {
      await playOver('tcp');
    } finally {
      netns!.blockUdp(false);
    }
  });
});
