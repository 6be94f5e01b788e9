import type { RtpParameters, SrtpParameters } from 'mediasoup/types';

/**
 * The internal relay API between an edge and the node it pulls a stream from (its origin, or an
 * upstream edge). The edge POSTs a RelayRequest to `/internal/v1/relays` with the cluster secret;
 * the answer is application/x-ndjson that lasts as long as the relay: one `ready` line (a
 * RelayOffer), `ping` lines, and an `end` line when the stream ends upstream. Closing the request
 * ends the relay.
 */

export const RELAY_PATH = '/internal/v1/relays';

/**
 * `POST {RELAY_PATH}/{relayId}/rendition` (cluster secret): the edge of relay `relayId` has a
 * viewer that decodes nothing the stream is sent as. The upstream adds the stream's Constrained
 * Baseline rendition to that relay's pipe and answers 200 with it (a RelayProducer); 422 when it
 * cannot make one (a WHIP stream), 404 for a relay it does not have.
 */
export const renditionPath = (relayId: string) => `${RELAY_PATH}/${relayId}/rendition`;

/**
 * `DELETE {STREAMS_PATH}/{name}` (cluster secret) ends a stream live on that origin: the balancer
 * asks it when an operator deletes the stream. 204 once ended, 404 when it is not live there.
 */
export const STREAMS_PATH = '/internal/v1/streams';

/**
 * How often the upstream writes a `ping` line. An edge that hears nothing for three intervals
 * takes the upstream for gone even when TCP has not noticed (a host that vanished).
 */
export const RELAY_PING_MS = 5000;

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
