import type { Request, Response } from 'express';
import type { Producer } from 'mediasoup/types';
import { z } from 'zod';
import { Problem } from '../core/errors.ts';
import { EventStream } from '../media/EventStream.ts';
import { recentProducerStats } from '../media/producerBitrate.ts';
import { readJson, type SessionExtension } from '../media/signalling.ts';
import type { WebRtcSession } from '../media/WebRtcSession.ts';
import type { LayerSelector } from './LayerSelector.ts';
import type { Relay } from './Relay.ts';

/**
 * One WHEP viewer on an edge: its session, the simulcast layer it receives (LayerSelector, when
 * the stream has layers), and the event streams it opened. Its two WHEP extensions
 * (draft-ietf-wish-whep, "Protocol extensions"): layer selection, where the viewer pins a layer or
 * goes back to automatic; server-sent events, where it learns the layers there are, the one it
 * gets, the viewer count, and when to reconnect.
 */

export const WHEP_LAYER_EXTENSION = 'urn:ietf:params:whep:ext:core:layer';
export const WHEP_EVENTS_EXTENSION = 'urn:ietf:params:whep:ext:core:server-sent-events';

/**
 * The events a viewer may ask for: the draft's `active`, `inactive`, `layers` (the stream's video
 * layers, highest first), `reconnect` (rejoin through the WHEP endpoint: the edge drains, or the
 * relay was lost) and `viewercount`; and Relaycast's `layer` (the layer this viewer receives, the
 * selection mode, and its link's estimated bitrate), which the draft leaves out.
 */
export const VIEWER_EVENTS = ['active', 'inactive', 'layers', 'layer', 'reconnect', 'viewercount'] as const;

/**
 * How often open event streams get the stream's layers (their bitrates move) and viewer count,
 * when they changed: often enough for a quality menu, rare enough to cost nothing per viewer.
 */
const STATE_EVERY_MS = 5000;

const layerRequest = z
  .object({
    mediaId: z.string().optional(),
    rid: z.string().optional(),
    spatialLayerId: z.number().int().min(0).optional(),
    temporalLayerId: z.number().int().min(0).optional(),
    maxSpatialLayerId: z.number().int().min(0).optional(),
    maxTemporalLayerId: z.number().int().min(0).optional(),
    maxWidth: z.number().optional(),
    maxHeight: z.number().optional(),
  })
  .refine((r) => r.maxWidth === undefined && r.maxHeight === undefined, {
    message: 'maxWidth and maxHeight are not supported: an edge does not know its layers\' picture sizes; use rid, spatialLayerId or maxSpatialLayerId',
  })
  .refine((r) => !(r.rid !== undefined && r.spatialLayerId !== undefined), { message: 'give rid or spatialLayerId, not both' });

const eventsRequest = z.array(z.string()).max(16);

function invalid(error: z.ZodError): Problem {
  return new Problem('invalid-request', error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
}

/** One layer as the `layers` event lists it. */
export interface LayerInfo {
  rid?: string;
  spatialLayerId: number;
  temporalLayerId: number;
  /** Bits per second arriving on this edge; 0 when the publisher does not send the layer now. */
  bitrate: number;
}

export class Viewer {
  readonly session: WebRtcSession;
  readonly relay: Relay;
  readonly layers: LayerSelector | undefined;
  /** mediasoup estimates the viewer's link (its consumers have transport-cc feedback: a counter-offer). */
  readonly estimated: boolean;
  /** The video m-line's index in the viewer's offer: how WHEP extensions name it. */
  readonly mediaId: string | undefined;
  readonly #video: Producer | undefined;
  readonly #streams = new Map<string, EventStream>();
  #state: NodeJS.Timeout | undefined;
  #lastLayers = '';
  #lastLayer = '';
  #lastCount = -1;

  constructor(options: { session: WebRtcSession; relay: Relay; video?: Producer; mediaId?: string; layers?: LayerSelector; estimated: boolean }) {
    this.session = options.session;
    this.relay = options.relay;
    this.layers = options.layers;
    this.estimated = options.estimated;
    this.mediaId = options.mediaId;
    this.#video = options.video;
    this.layers?.on('change', () => this.#send('layer', this.currentLayer()));
    this.session.once('closed', (reason) => this.#end(reason));
  }

  /** The `layer` event's data: what this viewer receives now. */
  currentLayer(): Record<string, unknown> {
    const selector = this.layers;
    const layers = selector?.layers;
    return {
      [this.mediaId ?? '0']: {
        ...(layers ? { spatialLayerId: layers.spatialLayer, temporalLayerId: layers.temporalLayer ?? 0 } : {}),
        ...(layers && this.relay.videoRids[layers.spatialLayer] ? { rid: this.relay.videoRids[layers.spatialLayer] } : {}),
        mode: selector?.mode ?? 'auto',
        estimated: this.estimated,
        ...(selector?.downlink ? { downlink: Math.round(selector.downlink) } : {}),
      },
    };
  }

  /** The `layers` event's data: the stream's video layers, highest first (the draft's order). */
  async availableLayers(): Promise<Record<string, LayerInfo[]>> {
    const producer = this.#video;
    if (!producer || producer.closed) return { [this.mediaId ?? '0']: [] };
    const stats = await recentProducerStats(producer, STATE_EVERY_MS);
    const encodings = producer.rtpParameters.encodings ?? [];
    const temporalLayerId = (this.layers?.temporalLayers ?? 1) - 1;
    const list = encodings.map((encoding, index): LayerInfo => {
      const rid = this.relay.videoRids[index];
      const bitrate = stats.find((s) => s.ssrc === encoding.ssrc)?.bitrate ?? 0;
      return { ...(rid ? { rid } : {}), spatialLayerId: index, temporalLayerId, bitrate };
    });
    return { [this.mediaId ?? '0']: list.reverse() };
  }

  /** The WHEP extensions, served by media/signalling.ts under the session's URL; `viewerOf` finds the Viewer of a session. */
  static extensions(viewerOf: (session: WebRtcSession) => Viewer): SessionExtension[] {
    return [
      {
        rel: WHEP_LAYER_EXTENSION,
        path: 'layer',
        handle: async (session, req, res) => {
          if (req.method !== 'POST') throw new Problem('method-not-allowed', 'POST a layer choice (JSON)', { headers: { Allow: 'POST' } });
          await viewerOf(session).selectLayer(await readJson(req, res));
          res.status(200).end();
        },
      },
      {
        rel: WHEP_EVENTS_EXTENSION,
        path: 'sse',
        linkParams: `events="${VIEWER_EVENTS.join(',')}"`,
        handle: async (session, req, res) => {
          if (req.method !== 'POST') throw new Problem('method-not-allowed', 'POST the list of events (JSON)', { headers: { Allow: 'POST' } });
          const body = (await readJson(req, res)) ?? [...VIEWER_EVENTS];
          const parsed = eventsRequest.safeParse(body);
          if (!parsed.success) throw invalid(parsed.error);
          const stream = await viewerOf(session).openEvents(parsed.data);
          res.status(201).set('Location', `${req.originalUrl.replace(/\/$/, '')}/${stream.id}`).end();
        },
        handleItem: async (session, item, req: Request, res: Response) => {
          const viewer = viewerOf(session);
          const stream = viewer.#streams.get(item);
          if (!stream) throw new Problem('not-found', 'no such event stream (it may have ended)');
          if (req.method === 'GET') return stream.attach(res);
          if (req.method !== 'DELETE') throw new Problem('method-not-allowed', 'GET the event stream or DELETE it', { headers: { Allow: 'GET, DELETE' } });
          stream.close();
          viewer.#streams.delete(item);
          res.status(200).end();
        },
      },
    ];
  }

  /** Applies a layer-selection request (the WHEP layer extension's JSON). */
  async selectLayer(body: unknown): Promise<void> {
    const parsed = layerRequest.safeParse(body ?? {});
    if (!parsed.success) throw invalid(parsed.error);
    const request = parsed.data;
    if (request.mediaId !== undefined && request.mediaId !== this.mediaId) throw new Problem('invalid-request', `mediaId ${request.mediaId} is not this session's video (${this.mediaId ?? 'none'})`);
    const selector = this.layers;
    if (!selector) throw new Problem('no-layers', `stream ${this.relay.stream} is sent in one layer: there is none to choose`);
    let spatialLayer = request.spatialLayerId;
    if (request.rid !== undefined) {
      spatialLayer = this.relay.videoRids.indexOf(request.rid);
      if (spatialLayer < 0) throw new Problem('invalid-request', `no layer has rid "${request.rid}" (the stream's: ${this.relay.videoRids.join(', ') || 'none'})`);
    }
    try {
      if (spatialLayer !== undefined) await selector.pin({ spatialLayer, temporalLayer: request.temporalLayerId });
      else await selector.auto({ spatialLayer: request.maxSpatialLayerId, temporalLayer: request.maxTemporalLayerId });
    } catch (error) {
      if (error instanceof RangeError) throw new Problem('invalid-request', error.message);
      throw error;
    }
    this.#send('layer', this.currentLayer());
  }

  /** A new event stream for these events (unknown names are ignored, as the draft says). */
  async openEvents(events: string[]): Promise<EventStream> {
    const stream = new EventStream(events.filter((e) => (VIEWER_EVENTS as readonly string[]).includes(e)));
    this.#streams.set(stream.id, stream);
    stream.send('active', {});
    stream.send('layer', this.currentLayer());
    stream.send('layers', await this.availableLayers());
    stream.send('viewercount', { viewercount: this.relay.viewers });
    this.#state ??= setInterval(() => void this.#refresh(), STATE_EVERY_MS);
    return stream;
  }

  /** Sends the layers, this viewer's layer (its link's estimate moves) and the viewer count again when they changed. */
  async #refresh(): Promise<void> {
    const layer = JSON.stringify(this.currentLayer());
    if (layer !== this.#lastLayer) {
      this.#lastLayer = layer;
      this.#send('layer', JSON.parse(layer));
    }
    const layers = JSON.stringify(await this.availableLayers());
    if (layers !== this.#lastLayers) {
      this.#lastLayers = layers;
      this.#send('layers', JSON.parse(layers));
    }
    if (this.relay.viewers !== this.#lastCount) {
      this.#lastCount = this.relay.viewers;
      this.#send('viewercount', { viewercount: this.#lastCount });
    }
  }

  #send(event: string, data: unknown): void {
    for (const stream of this.#streams.values()) stream.send(event, data);
  }

  /** The session ended: say why to whoever listens (the stream ended, or rejoin elsewhere), then end the streams. */
  #end(reason: string): void {
    clearInterval(this.#state);
    if (/stream ended upstream/.test(reason)) this.#send('inactive', {});
    else if (!/deleted by client/.test(reason)) this.#send('reconnect', {});
    for (const stream of this.#streams.values()) stream.close();
    this.#streams.clear();
    this.layers?.close();
  }
}
