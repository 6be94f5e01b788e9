import type { RtpParameters, SrtpParameters } from 'mediasoup/types';

/**
 * The bodies of the internal relay calls (paths and authentication: core/internalApi.ts). The
 * edge POSTs a RelayRequest to RELAY_PATH; the answer is application/x-ndjson that lasts as long
 * as the relay: one `ready` line (a RelayOffer), `ping` lines, and an `end` line when the stream
 * ends upstream. Closing the request ends the relay. POST renditionPath(relayId) answers 200 with
 * a RelayProducer (the rendition added to that relay's pipe), 422 when the origin cannot make one
 * (a WHIP stream), 404 for a relay it does not have.
 */

/** The edge's side of the pipe. */
export interface RelayRequest {
  stream: string;
  edgeNodeId: string;
  ip: string;
  port: number;
  srtpParameters?: SrtpParameters;
}

/** A producer the pipe carries, as the edge re-creates it on its side. */
export interface RelayProducer {
  id: string;
  kind: 'audio' | 'video';
  rtpParameters: RtpParameters;
  paused: boolean;
  /**
   * The publisher's name (RFC 8851 rid) of each encoding, in order, for a simulcast producer: a
   * pipe's parameters drop them, and WHEP viewers may ask for a layer by rid.
   */
  rids?: string[];
}

/** The upstream's side of the pipe and the producers it carries. */
export interface RelayOffer {
  /** Names this relay in later requests (renditionPath). */
  relayId: string;
  ip: string;
  port: number;
  srtpParameters?: SrtpParameters;
  producers: RelayProducer[];
}

export type RelayLine = ({ type: 'ready' } & RelayOffer) | { type: 'ping' } | { type: 'end'; reason: string };
