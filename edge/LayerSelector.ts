import { EventEmitter } from 'node:events';
import { parseScalabilityMode } from 'mediasoup';
import type { Consumer, ConsumerLayers, Producer, WebRtcTransport } from 'mediasoup/types';
import type { Logger } from '../core/logger.ts';
import { recentProducerStats } from '../media/producerBitrate.ts';
import { CLEAN_LOSS, ESTIMATE_TRY_HEADROOM, ESTIMATE_TRY_MS, EstimatePolicy, HEAVY_LOSS, LayerPolicy, estimateCarrying, layerStep, stepLayers } from './LayerPolicy.ts';

/**
 * The simulcast layer one viewer receives. Automatic by default; the viewer may pin a layer (the
 * WHEP layer extension) and go back to automatic.
 *
 * Automatic means one of two things, by what the viewer's transport can do:
 * - **estimated**: the consumer writes transport-cc (the viewer took the edge's counter-offer, or
 *   its offer put the extension at mediasoup's id), so mediasoup estimates the link and picks the
 *   layer by the estimate, below a ceiling that follows the estimate's trace events
 *   (EstimatePolicy: it keeps a short leap of the estimate from switching the viewer up, and
 *   tries the layer above when the estimate has sat below it, see ESTIMATE_TRY_AFTER_MS).
 * - **loss-driven** (viewers that answered nothing of ours: browsers number their extensions
 *   otherwise, and mediasoup cannot write them under the viewer's ids; Firefox's abs-send-time
 *   does line up, but mediasoup drops the REMB it would bring, see consumerCapabilities in
 *   media/sdp.ts): the receiver's reports of lost packets move a ceiling (LayerPolicy), applied
 *   as the consumer's preferred layers.
 */

export type LayerMode = 'auto' | 'pinned';

export interface LayerChoice {
  spatialLayer: number;
  temporalLayer?: number;
}

export interface LayerSelectorEvents {
  /** The layers the viewer receives changed (undefined: none, while the publisher sends none it may get). */
  change: [layers: ConsumerLayers | undefined, previous: ConsumerLayers | undefined];
}

/**
 * How often the consumer's send statistics are read. Browsers send a receiver report about once a
 * second for video; reading faster reads the same report again. One channel request per simulcast
 * viewer per second.
 */
const POLL_MS = 1000;

/**
 * A reading counts once this many packets were sent since the last one (a second of the lowest
 * layer at ~15 packets/s plus margin is less; readings then merge until there are enough): loss
 * over a few packets is noise.
 */
const MIN_PACKETS = 30;

/**
 * A viewer below the layer it should get is nudged at most this often (see #nudge): a publisher
 * that never sends its top layer would otherwise cost a request per viewer per second for nothing.
 */
const NUDGE_EVERY_MS = 3000;

/**
 * How old the stream's layer bitrates may be when an estimate is weighed against them: they move
 * slowly (the publisher's encoder), estimates come every second or so per viewer, and one read a
 * second serves every viewer of the producer.
 */
const LAYER_BITRATES_MAX_AGE_MS = 1000;

/**
 * What an estimated viewer's estimate may not fall below, on top of the stream's cheapest video
 * (its lowest layer at its lowest frame rate): Opus's ~40 kbit/s with some room. mediasoup 3.32
 * gives a simulcast consumer "send nothing" as its cheapest choice, so an estimate below the
 * cheapest video leaves the viewer audio only, and with nothing more to measure the estimate does
 * not climb back (seen after a cut from 1.4 Mbit/s to 250 kbit/s by tc: 59 kbit/s and no picture
 * for a minute). The floor is set on the transport (setMinOutgoingBitrate) and follows the
 * cheapest video when it moves by more than a fifth. A floor at the lowest layer's full rate
 * instead froze it: Chromium pads that layer while probing, and the floor reached the link.
 */
const ESTIMATE_FLOOR_AUDIO_BPS = 50_000;

/**
 * How often an estimated viewer below its cap looks at its last estimate again (#tick): mediasoup
 * sends a bwe trace only when the estimate or its state changes, and an estimate that rose and
 * then stays put sends none, so the hold before a climb (ESTIMATE_UP_HOLD_MS) and the wait before
 * a try (ESTIMATE_TRY_AFTER_MS) would otherwise never end. A viewer on its top layer is not looked at.
 */
const ESTIMATE_TICK_MS = 1000;

export class LayerSelector extends EventEmitter<LayerSelectorEvents> {
  readonly consumer: Consumer;
  /** mediasoup estimates this viewer's bandwidth (see the class comment). */
  readonly estimated: boolean;
  /** Spatial and temporal layers the stream has (indices 0..n-1). */
  readonly spatialLayers: number;
  readonly temporalLayers: number;
  readonly #logger: Logger;
  readonly #policy: LayerPolicy;
  readonly #estimatePolicy: EstimatePolicy;
  readonly #transport: WebRtcTransport;
  /** The floor set on the transport's estimate (see ESTIMATE_FLOOR_AUDIO_BPS), bits/s; 0 before one is. */
  #floor = 0;
  #mode: LayerMode = 'auto';
  /** The highest layers automatic selection may choose (the viewer's limit; the top by default). */
  #cap: Required<LayerChoice>;
  #layers: ConsumerLayers | undefined;
  /** The last bandwidth estimate (estimated viewers) or clean delivered bitrate (the others), bits/s. */
  #downlink: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #nudgedAt = 0;
  /** The send and loss counts at the last reading (see #poll). */
  #counted = { sent: 0, lost: 0 };
  #closed = false;
  /** The last bandwidth estimate of an estimated viewer (bits/s), as mediasoup gave it. */
  #estimate: number | undefined;
  /** Until when (ms) a try of the layer above holds the transport's floor there (see EstimatePolicy.tryUp); 0: none. */
  #tryUntil = 0;
  #tryTimer: NodeJS.Timeout | undefined;

  /** The stream's video producer on the viewer's router: its layers' bitrates (see LayerPolicy.report). */
  readonly #producer: Producer | undefined;

  constructor(consumer: Consumer, transport: WebRtcTransport, logger: Logger, producer?: Producer) {
    super();
    if (consumer.type !== 'simulcast') throw new TypeError(`a ${consumer.type} consumer has no layers to select`);
    this.consumer = consumer;
    this.#producer = producer;
    // mediasoup names a simulcast consumer's layers in its one encoding's scalability mode (L3T3).
    const mode = parseScalabilityMode(consumer.rtpParameters.encodings?.[0]?.scalabilityMode);
    this.spatialLayers = mode.spatialLayers;
    this.temporalLayers = mode.temporalLayers;
    this.#logger = logger;
    this.#policy = new LayerPolicy(this.spatialLayers - 1 + this.temporalLayers - 1);
    this.#estimatePolicy = new EstimatePolicy(this.spatialLayers - 1);
    this.#transport = transport;
    this.#cap = { spatialLayer: this.spatialLayers - 1, temporalLayer: this.temporalLayers - 1 };
    const feedback = new Set(consumer.rtpParameters.codecs.flatMap((c) => c.rtcpFeedback ?? []).map((fb) => fb.type));
    this.estimated = feedback.has('transport-cc');
    this.#layers = consumer.currentLayers;
    consumer.on('layerschange', (layers) => {
      const previous = this.#layers;
      this.#logger.debug({ layers, previous, mode: this.#mode }, 'viewer layer changed');
      this.#layers = layers;
      this.emit('change', layers, previous);
    });
    if (this.estimated) {
      void transport.enableTraceEvent(['bwe']).catch(() => undefined);
      transport.on('trace', (trace) => {
        const estimate = trace.type === 'bwe' ? (trace.info as { availableBitrate?: number }).availableBitrate : undefined;
        if (estimate === undefined) return;
        this.#downlink = estimate;
        this.#estimate = estimate;
        void this.#onEstimate(estimate).catch(() => undefined);
      });
    }
    // What mediasoup makes of the viewer's link and of each layer the stream arrives in: a layer
    // whose producer stream scores 0 is not usable, and a viewer with none gets no video.
    consumer.on('score', (score) => this.#logger.debug({ score: score.score, producerScores: score.producerScores }, 'viewer score'));
    consumer.observer.once('close', () => this.close());
    // An estimated viewer's layers move on mediasoup's events (the bwe trace; mediasoup
    // reconsiders its layers at each new estimate, newly sent layers included), no statistics
    // read per viewer; a timer weighs the last estimate again each ESTIMATE_TICK_MS, and does
    // nothing while the viewer is on its cap.
    if (!this.estimated) this.#schedule();
    else this.#scheduleTick();
  }

  get mode(): LayerMode {
    return this.#mode;
  }

  /** The layers the viewer receives now. */
  get layers(): ConsumerLayers | undefined {
    return this.#layers;
  }

  /** Bits per second the viewer's link is known to carry, when known (see #downlink). */
  get downlink(): number | undefined {
    return this.#downlink;
  }

  /** Sends the viewer this layer (or the best below it the publisher sends) until auto() or close. */
  async pin(choice: LayerChoice): Promise<void> {
    const { spatialLayer, temporalLayer } = choice;
    if (!Number.isInteger(spatialLayer) || spatialLayer < 0 || spatialLayer >= this.spatialLayers) {
      throw new RangeError(`spatialLayer must be 0–${this.spatialLayers - 1}, not ${spatialLayer}`);
    }
    if (temporalLayer !== undefined && (!Number.isInteger(temporalLayer) || temporalLayer < 0 || temporalLayer >= this.temporalLayers)) {
      throw new RangeError(`temporalLayer must be 0–${this.temporalLayers - 1}, not ${temporalLayer}`);
    }
    this.#mode = 'pinned';
    await this.consumer.setPreferredLayers({ spatialLayer, temporalLayer: temporalLayer ?? this.temporalLayers - 1 });
  }

  /**
   * Back to automatic selection, at most up to `cap` (the viewer's maxSpatialLayerId and
   * maxTemporalLayerId; none: the top layer).
   */
  async auto(cap: Partial<LayerChoice> = {}): Promise<void> {
    const { spatialLayer = this.spatialLayers - 1, temporalLayer = this.temporalLayers - 1 } = cap;
    if (!Number.isInteger(spatialLayer) || spatialLayer < 0) throw new RangeError(`maxSpatialLayerId must be a layer index, not ${spatialLayer}`);
    if (!Number.isInteger(temporalLayer) || temporalLayer < 0) throw new RangeError(`maxTemporalLayerId must be a layer index, not ${temporalLayer}`);
    this.#mode = 'auto';
    this.#cap = { spatialLayer: Math.min(spatialLayer, this.spatialLayers - 1), temporalLayer: Math.min(temporalLayer, this.temporalLayers - 1) };
    if (this.estimated) await this.#preferSpatial(this.#estimatePolicy.ceiling);
    else await this.#prefer(this.#policy.ceiling);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#tryTimer);
    this.removeAllListeners();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#poll().finally(() => this.#schedule()), POLL_MS);
  }

  /**
   * mediasoup reconsiders a consumer's layers only on events (a score change, new preferred
   * layers), and passes over a layer that has been on for under two seconds: a layer the
   * publisher turns on later (Chromium adds its upper layers as its estimate grows) would not be
   * taken until something else happened. Setting the same preferred layers again makes it look.
   */
  async #nudge(): Promise<void> {
    const wanted = this.consumer.preferredLayers;
    const now = this.#layers;
    if (!wanted || (now && layerStep(now, this.temporalLayers) >= layerStep(wanted, this.temporalLayers))) return;
    if (Date.now() - this.#nudgedAt < NUDGE_EVERY_MS) return;
    this.#nudgedAt = Date.now();
    await this.consumer.setPreferredLayers(wanted).catch(() => undefined);
  }

  /** Applies an automatic choice (a LayerPolicy step), within the viewer's cap. */
  async #prefer(step: number): Promise<void> {
    if (this.consumer.closed) return;
    const { spatialLayer, temporalLayer } = stepLayers(step, this.temporalLayers);
    await this.consumer.setPreferredLayers({ spatialLayer: Math.min(spatialLayer, this.#cap.spatialLayer), temporalLayer: Math.min(temporalLayer, this.#cap.temporalLayer) });
  }

  /** Applies an estimated viewer's ceiling (a spatial layer), within its cap. */
  async #preferSpatial(spatialLayer: number): Promise<void> {
    if (this.consumer.closed) return;
    await this.consumer.setPreferredLayers({ spatialLayer: Math.min(spatialLayer, this.#cap.spatialLayer), temporalLayer: this.#cap.temporalLayer });
  }

  /** A new bandwidth estimate (the transport's bwe trace): the ceiling follows it (EstimatePolicy). */
  async #onEstimate(estimate: number): Promise<void> {
    if (this.#closed || !this.#producer || this.#producer.closed) return;
    const { bitrates, cheapest } = await this.#layerBitrates(this.#producer);
    await this.#keepFloor(cheapest);
    const before = this.#estimatePolicy.ceiling;
    const ceiling = this.#estimatePolicy.report(Date.now(), estimate, bitrates);
    if (ceiling === before || this.#mode !== 'auto') return;
    this.#logger.debug({ estimate, from: before, to: ceiling }, 'viewer layer ceiling moved by the estimate');
    await this.#preferSpatial(ceiling);
  }

  /** The stream's spatial layers' bitrates (lowest first) and its cheapest video (the lowest layer at its lowest frame rate), bits/s. */
  async #layerBitrates(producer: Producer): Promise<{ bitrates: number[]; cheapest: number }> {
    const stats = await recentProducerStats(producer, LAYER_BITRATES_MAX_AGE_MS);
    const streams = (producer.rtpParameters.encodings ?? []).map((e) => stats.find((s) => s.ssrc === e.ssrc));
    return { bitrates: streams.map((s) => s?.bitrate ?? 0), cheapest: streams[0]?.bitrateByLayer?.['0.0'] ?? 0 };
  }

  #scheduleTick(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#tick().catch(() => undefined).finally(() => this.#scheduleTick()), ESTIMATE_TICK_MS);
  }

  /**
   * An estimated viewer below its cap: its last estimate weighed again (see ESTIMATE_TICK_MS), and
   * a try of the layer above when the estimate has sat below it (EstimatePolicy.tryUp).
   */
  async #tick(): Promise<void> {
    const estimate = this.#estimate;
    const producer = this.#producer;
    if (this.#mode !== 'auto' || estimate === undefined || !producer || producer.closed || this.#transport.closed) return;
    if (this.#estimatePolicy.ceiling >= this.#cap.spatialLayer || Date.now() < this.#tryUntil) return;
    const { bitrates } = await this.#layerBitrates(producer);
    const before = this.#estimatePolicy.ceiling;
    let ceiling = this.#estimatePolicy.report(Date.now(), estimate, bitrates);
    const tried = ceiling < this.#cap.spatialLayer ? this.#estimatePolicy.tryUp(Date.now()) : undefined;
    if (tried !== undefined) {
      ceiling = tried;
      await this.#tryLayer(tried, bitrates[tried] ?? 0);
    }
    if (ceiling === before) return;
    this.#logger.debug({ estimate, from: before, to: ceiling, tried: tried !== undefined }, 'viewer layer ceiling moved by the estimate');
    await this.#preferSpatial(ceiling);
  }

  /**
   * Holds the transport's estimate at what carries `layer`, with ESTIMATE_TRY_HEADROOM, for
   * ESTIMATE_TRY_MS (its floor), so that mediasoup sends that layer and measures the link with
   * it; then the usual floor again, and the estimates decide (see EstimatePolicy.tryUp).
   */
  async #tryLayer(layer: number, bitrate: number): Promise<void> {
    if (bitrate <= 0) return;
    const floor = Math.max(this.#floor, Math.round(estimateCarrying(bitrate) * ESTIMATE_TRY_HEADROOM));
    this.#tryUntil = Date.now() + ESTIMATE_TRY_MS;
    this.#logger.debug({ layer, floor, estimate: this.#estimate }, 'viewer tries the layer above its estimate');
    clearTimeout(this.#tryTimer);
    this.#tryTimer = setTimeout(() => {
      this.#tryUntil = 0;
      if (!this.#transport.closed && this.#floor > 0) void this.#transport.setMinOutgoingBitrate(this.#floor).catch(() => undefined);
    }, ESTIMATE_TRY_MS);
    await this.#transport.setMinOutgoingBitrate(floor);
  }

  /** Keeps the transport's estimate above the stream's cheapest video (see ESTIMATE_FLOOR_AUDIO_BPS). */
  async #keepFloor(cheapestVideo: number): Promise<void> {
    if (cheapestVideo <= 0 || this.#transport.closed) return;
    const floor = cheapestVideo + ESTIMATE_FLOOR_AUDIO_BPS;
    if (Math.abs(floor - this.#floor) <= this.#floor / 5) return;
    this.#floor = floor;
    this.#logger.debug({ floor }, 'viewer estimate floor set');
    // During a try the floor is the tried layer's; the usual one comes back when it ends.
    if (Date.now() < this.#tryUntil) return;
    await this.#transport.setMinOutgoingBitrate(floor);
  }

  /**
   * Bits per second of each step arriving now, lowest first (empty when unknown): the spatial
   * layers' bitrates, and below the lowest its temporal layers' share of it, by frame count (each
   * temporal layer halves the frame rate; key frames aside, bits follow frames).
   */
  async #stepBitrates(): Promise<number[]> {
    const producer = this.#producer;
    if (!producer || producer.closed) return [];
    const stats = await producer.getStats().catch(() => []);
    const spatial = (producer.rtpParameters.encodings ?? []).map((e) => stats.find((s) => s.ssrc === e.ssrc)?.bitrate ?? 0);
    const temporal = Array.from({ length: this.temporalLayers - 1 }, (_, t) => (spatial[0] ?? 0) / 2 ** (this.temporalLayers - 1 - t));
    return [...temporal, ...spatial];
  }

  async #poll(): Promise<void> {
    if (this.consumer.closed) return;
    await this.#nudge();
    const stats = await this.consumer.getStats().catch(() => []);
    const sent = stats.find((s) => s.type === 'outbound-rtp');
    if (!sent) return;
    // Loss over the packets sent since the last reading, from the receiver's cumulative count. Not
    // RTCP's fraction lost: Chromium sends a receiver report with each NACK, and one covering a
    // handful of packets can read 20 % on a link losing 2 %; and the cumulative count leaves out
    // what NACK repaired, which costs the viewer nothing.
    const sentPackets = sent.packetCount - this.#counted.sent;
    if (sentPackets < MIN_PACKETS) return;
    const loss = Math.min(1, Math.max(0, sent.packetsLost - this.#counted.lost) / sentPackets);
    this.#counted = { sent: sent.packetCount, lost: sent.packetsLost };
    if (loss < CLEAN_LOSS && sent.bitrate > 0) this.#downlink = sent.bitrate;
    if (this.#mode !== 'auto') return;
    const before = this.#policy.ceiling;
    // The steps' bitrates only matter for a step down on heavy loss: read them only then.
    const stepBitrates = loss >= HEAVY_LOSS ? await this.#stepBitrates() : [];
    const current = this.#layers ? layerStep(this.#layers, this.temporalLayers) : undefined;
    const ceiling = this.#policy.report({ at: Date.now(), loss, sent: sent.bitrate }, current, stepBitrates);
    if (ceiling === before) return;
    this.#logger.debug({ loss, from: before, to: ceiling }, 'viewer layer ceiling moved');
    await this.#prefer(ceiling).catch(() => undefined);
  }
}
