import assert from 'node:assert/strict';
import { signStreamToken } from '../core/tokens.ts';
import { TestBrowser, framesSentByRid, play, playbackStats, publishSimulcast, stopPublishing } from '../kit/browser.ts';
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

    // Chromium sends a layer only once its bandwidth estimate has room: a wait, not a figure.
    let sent: Record<string, number> = {};
    await waitFor('Chromium sending more than one layer', async () => {
      sent = await framesSentByRid(publisher);
      return Object.values(sent).filter((n) => n > 0).length >= 2;
    }, 60_000, 500).catch((error: Error) => {
      throw new Error(`${error.message}; frames sent by layer: ${JSON.stringify(sent)}`, { cause: error });
    });
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
});
