import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import type { RtpCodecParameters } from 'mediasoup/types';
import { LayerSelector } from '../edge/LayerSelector.ts';
import { consumerCapabilities, isSupported, parseOffer, receivableCodecs, type OfferSection } from '../media/sdp.ts';
import { WorkerPool } from '../media/WorkerPool.ts';

/**
 * Which viewers mediasoup can estimate bandwidth toward, from the WHEP offers browsers really
 * send (recorded fixtures): a consumer keeps a header extension only where the offer uses
 * mediasoup's own id for it, and a bandwidth estimate needs transport-cc there (Firefox's
 * abs-send-time lines up, but REMB is not taken: mediasoup drops it, see consumerCapabilities).
 * Answering their offers, none; making them a counter-offer, every one. The consumers are real (a
 * worker, a router made from the offer as the edge makes it, a simulcast producer of three VP8
 * layers).
 */

const VP8: RtpCodecParameters = { mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }] };
const logger = pino({ level: 'silent' });

describe('LayerSelector on real mediasoup consumers of recorded browser offers', () => {
  let pool: WorkerPool;
  before(async () => {
    pool = await WorkerPool.create({ count: 1, workerBin: WorkerPool.resolveWorkerBin(process.env.MEDIASOUP_WORKER_BIN), logger });
  });
  after(async () => {
    await pool?.close();
  });

  async function selectorFor(fixture: string, counterOffer = false): Promise<LayerSelector> {
    const offer = parseOffer(readFileSync(new URL(`./fixtures/sdp/${fixture}`, import.meta.url), 'utf8'));
    const section = offer.sections.filter(isSupported).find((s) => s.kind === 'video') as OfferSection;
    const router = await pool.next().createRouter({ mediaCodecs: receivableCodecs(section, [VP8]) });
    const source = await router.createDirectTransport();
    const producer = await source.produce({
      kind: 'video',
      rtpParameters: { codecs: [VP8], encodings: [{ ssrc: 1001, scalabilityMode: 'L1T3' }, { ssrc: 1002, scalabilityMode: 'L1T3' }, { ssrc: 1003, scalabilityMode: 'L1T3' }] },
    });
    const transport = await router.createWebRtcTransport({ listenInfos: [{ protocol: 'udp', ip: '127.0.0.1' }] });
    const routerExtensions = counterOffer ? router.rtpCapabilities.headerExtensions : undefined;
    const consumer = await transport.consume({ producerId: producer.id, rtpCapabilities: consumerCapabilities(section, [VP8], routerExtensions), enableRtx: true });
    return new LayerSelector(consumer, transport, logger);
  }

  for (const fixture of ['firefox-whep-offer.sdp', 'firefox-esr153-whep-offer.sdp', 'chrome-whep-offer.sdp', 'safari-whep-offer.sdp']) {
    it(`${fixture}: three spatial and three temporal layers, NACK kept, no REMB, no bandwidth estimate (loss-driven)`, async () => {
      const selector = await selectorFor(fixture);
      assert.equal(selector.spatialLayers, 3);
      assert.equal(selector.temporalLayers, 3);
      assert.equal(selector.estimated, false);
      const feedback = selector.consumer.rtpParameters.codecs[0]!.rtcpFeedback!.map((fb) => `${fb.type}${fb.parameter ? ` ${fb.parameter}` : ''}`);
      assert.ok(feedback.includes('nack'), `generic NACK kept: ${feedback.join(', ')}`);
      assert.ok(!feedback.includes('goog-remb'), `no REMB (mediasoup would drop it): ${feedback.join(', ')}`);
      assert.ok(!selector.consumer.rtpParameters.codecs.some((c) => /rtx/i.test(c.mimeType)), 'no RTX: its payload type would be the router\'s');
      selector.close();
    });
  }

  for (const fixture of ['firefox-esr153-whep-offer.sdp', 'chrome-whep-offer.sdp', 'safari-whep-offer.sdp']) {
    it(`${fixture}, made a counter-offer: transport-cc at mediasoup's id and as feedback, so a bandwidth estimate; NACK kept, no REMB`, async () => {
      const selector = await selectorFor(fixture, true);
      assert.equal(selector.estimated, true);
      const extensions = selector.consumer.rtpParameters.headerExtensions ?? [];
      const twcc = extensions.find((e) => e.uri === 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01');
      assert.ok(twcc, `transport-wide-cc kept: ${JSON.stringify(extensions)}`);
      assert.ok(extensions.some((e) => e.uri === 'urn:ietf:params:rtp-hdrext:sdes:mid'), 'the MID extension kept (the bundle demuxes by it)');
      const feedback = selector.consumer.rtpParameters.codecs[0]!.rtcpFeedback!.map((fb) => fb.type);
      assert.ok(feedback.includes('transport-cc') && feedback.includes('nack'), `transport-cc and NACK: ${feedback.join(', ')}`);
      assert.ok(!feedback.includes('goog-remb'), 'no REMB beside transport-cc');
      selector.close();
    });
  }

  it('pins within the stream\'s layers and refuses others', async () => {
    const selector = await selectorFor('chrome-whep-offer.sdp');
    await selector.pin({ spatialLayer: 0 });
    assert.equal(selector.mode, 'pinned');
    assert.deepEqual(selector.consumer.preferredLayers, { spatialLayer: 0, temporalLayer: 2 });
    await assert.rejects(selector.pin({ spatialLayer: 3 }), RangeError);
    await selector.auto({ spatialLayer: 1 });
    assert.equal(selector.mode, 'auto');
    assert.deepEqual(selector.consumer.preferredLayers, { spatialLayer: 1, temporalLayer: 2 });
    selector.close();
  });
});
