import assert from 'node:assert/strict';
import { signStreamToken } from '../core/tokens.ts';
import { TestBrowser, layersSending, openEvents, play, playbackStats, publishSimulcast, receivedEvents, selectLayer, stopPublishing, viewerExtensions } from '../kit/browser.ts';
import { orderBySize, spsPictureSize, vp8PictureSize } from '../media/layerOrder.ts';
import { waitFor } from '../kit/processes.ts';
import { startOriginEdge, type OriginEdge } from './helpers/originEdge.ts';

/**
 * Simulcast ingest over WHIP (issue 16, first step): Chromium publishes three layers; the origin's
 * answer takes every one (a=rid … recv, a=simulcast:recv), so the browser sends them all; the
 * relay carries them to the edge, whose viewer gets more than the lowest layer.
 */

const SECRET = 'simulcast-test-secret-0123456789';
const ADMIN = 'simulcast-test-admin-token-0123456789';
/** The lowest layer's width (960 / 4): a viewer wider than this got a higher layer through the relay. */
const LOWEST_WIDTH = 240;

describe('simulcast over WHIP (Chromium, origin + edge)', function () {
  let cluster: OriginEdge;
  let browser: TestBrowser;

  before(async () => {
    [cluster, browser] = await Promise.all([startOriginEdge({ secret: SECRET, admin: ADMIN }), TestBrowser.launch()]);
  });
  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  it('takes all three layers a Chromium publisher offers, and the edge\'s viewer plays above the lowest', async () => {
    const stream = 'simulcast-3';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await browser.page(cluster.origin.url);
    const published = await publishSimulcast(publisher, `${cluster.origin.url}/whip/${stream}`, token);
    assert.equal(published.status, 201, published.body);
    assert.match(published.offer, /^a=simulcast:send q;h;f\r?$/m, 'Chromium offers three layers');
    for (const rid of ['q', 'h', 'f']) assert.match(published.body, new RegExp(`^a=rid:${rid} recv\\r?$`, 'm'), `the answer takes layer ${rid}`);
    assert.match(published.body, /^a=simulcast:recv q;h;f\r?$/m);

    const sent = await layersSending(publisher, 2);
    console.log(`      frames sent by layer: ${JSON.stringify(sent)}`);

    const viewer = await browser.page(cluster.edge.url);
    const played = await play(viewer, `${cluster.edge.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    let width = 0;
    await waitFor(`the viewer decoding frames wider than ${LOWEST_WIDTH}`, async () => {
      const stats = await playbackStats(viewer);
      width = stats.frameWidth;
      return stats.framesDecoded > 0 && stats.frameWidth > LOWEST_WIDTH;
    }, 60_000, 500).catch((error: Error) => {
      throw new Error(`${error.message}; last width ${width}`, { cause: error });
    });
    console.log(`      the edge's viewer decodes ${width}-wide frames`);
    assert.equal(await stopPublishing(publisher, token), 200);
  });

  it('orders an OBS-style offer (rids 0;1;2, the largest first) by the size of each layer\'s pictures, so a viewer\'s "higher" is a larger picture', async () => {
    const stream = 'simulcast-obs-order';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await browser.page(cluster.origin.url);
    // OBS 32 names its layers by encoder index, the main (full-size) encoder first.
    const layers = [
      { rid: '0', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
      { rid: '1', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: '2', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
    ];
    const published = await publishSimulcast(publisher, `${cluster.origin.url}/whip/${stream}`, token, { layers });
    assert.equal(published.status, 201, published.body);
    assert.match(published.offer, /^a=simulcast:send 0;1;2\r?$/m);
    await layersSending(publisher, 3);

    const viewer = await browser.page(cluster.edge.url);
    const played = await play(viewer, `${cluster.edge.url}/whep/${stream}`);
    assert.equal(played.status, 201, played.body);
    await waitFor('the viewer on the largest layer (540 high)', async () => (await playbackStats(viewer)).frameHeight === 540, 60_000, 250);
    const links = await viewerExtensions(viewer);
    await openEvents(viewer, links['urn:ietf:params:whep:ext:core:server-sent-events']!, ['layers']);
    await waitFor('a layers event', async () => (await receivedEvents(viewer)).some((e) => e.event === 'layers'), 10_000);
    const list = Object.values((await receivedEvents(viewer)).find((e) => e.event === 'layers')!.data as Record<string, Array<{ rid: string }>>)[0]!;
    assert.deepEqual(list.map((l) => l.rid), ['0', '1', '2'], 'highest first: the largest is rid 0');
    assert.equal((await selectLayer(viewer, links['urn:ietf:params:whep:ext:core:layer']!, { rid: '2' })).status, 200);
    await waitFor('the smallest layer once pinned', async () => (await playbackStats(viewer)).frameHeight === 135, 30_000, 250);
    assert.equal(await stopPublishing(publisher, token), 200);
  });
});

describe('simulcast layer sizes (media/layerOrder.ts)', () => {
  it('reads an H.264 SPS\'s picture size (x264: High, Main, Baseline; emulation prevention and cropping)', () => {
    // SPS NAL units written by ffmpeg 5.1's libx264 for one frame of testsrc at each size and profile.
    const sps = {
      '6764001facd9405005bbff0003000410000003001000000303c0f1831960': { width: 1280, height: 720 },
      '67640028acd940780227e5ffc000c00104000003000400000300f03c60c658': { width: 1920, height: 1080 },
      '674d401feca06c1ef37ff80a000d5880000003008000001e078c18cb': { width: 854, height: 480 },
      '6742c01ed900a02ff97ff0003000410000030001000003003c0f162e48': { width: 640, height: 360 },
    };
    for (const [hex, size] of Object.entries(sps)) assert.deepEqual(spsPictureSize(Buffer.from(hex, 'hex')), size, hex);
  });

  it('reads a VP8 key frame\'s picture size through the payload descriptor, and nothing from an inter frame', () => {
    const keyFrame = Buffer.from([0x90, 0xe0, 0x80, 0x01, 0x00, 0x20, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xc0, 0x03, 0x1c, 0x02]);
    assert.deepEqual(vp8PictureSize(keyFrame), { width: 960, height: 540 });
    const interFrame = Buffer.from(keyFrame);
    interFrame[6] = 0x11;
    assert.equal(vp8PictureSize(interFrame), undefined);
  });

  it('orders layers by picture size, or by the direction the known sizes show', () => {
    const hd = { width: 1280, height: 720 };
    const sd = { width: 640, height: 360 };
    const ld = { width: 320, height: 180 };
    assert.deepEqual(orderBySize([hd, sd, ld]), [2, 1, 0], 'largest first (OBS)');
    assert.deepEqual(orderBySize([ld, sd, hd]), [0, 1, 2], 'smallest first (Chromium apps)');
    assert.deepEqual(orderBySize([undefined, sd, ld]), [2, 1, 0], 'two known, falling along the list: largest listed first');
    assert.deepEqual(orderBySize([ld, sd, undefined]), [0, 1, 2], 'two known, rising: as listed (Chromium before its top layer starts)');
    assert.deepEqual(orderBySize([hd, undefined, undefined]), [0, 1, 2], 'one known says nothing');
  });
});
