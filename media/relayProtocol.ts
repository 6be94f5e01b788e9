import type { RtpParameters, SrtpParameters } from 'mediasoup/types';
import type { RenditionCodec } from './codecs.ts';

/**
 * The bodies of the internal relay calls (paths and authentication: core/internalApi.ts). An
 * edge POSTs a RelayRequest to RELAY_PATH of its upstream: the stream's origin, or another edge
 * that relays the stream (relay tiers: a parent). The answer is application/x-ndjson that lasts
 * as long as the relay: one `ready` line (a RelayOffer), `ping` lines, then an `end` line when the
 * stream ends upstream, or a `detach` line when the upstream stops feeding it while the stream
 * goes on (a parent shutting down: the edge re-attaches elsewhere). A `move` line (a parent
 * draining) asks the edge to find another upstream while this one keeps feeding it; with a `to`,
 * to move below that node (the origin making room for a relay nearer it). Closing the
 * request ends the relay. POST renditionPath(relayId) with a RenditionRequest answers 200 with a
 * RelayProducer (the rendition added to that relay's pipe), 422 when the origin cannot make one
 * (the stream is sent in that codec already, or ffmpeg cannot read it), 404 for a relay it does
 * not have. POST resumePath(relayId) resumes a relay asked for `paused` (204).
 */

/** The edge's side of the pipe. */
export interface RelayRequest {
  stream: string;
  edgeNodeId: string;
  ip: string;
  port: number;
  srtpParameters?: SrtpParameters;
  /**
   * The asking relay's tree key when it already feeds other edges (it is re-attaching): the
   * upstream refuses unless its own key is smaller, so a relay never attaches below itself
   * (edge/RelayTree.ts). Absent for a relay that feeds no one yet.
   */
  treeKey?: number;
  /**
   * The edge has no viewer connected yet: the upstream opens the pipe's consumers paused, and the
   * edge resumes them (resumePath) once its first viewer's DTLS is up. A consumer asks the
   * publisher for a key frame when it starts, and the origin lets one request a publisher through
   * per 350 ms (origin/PublishedStream.ts): one asked for while the viewer is still connecting
   * arrives before the viewer can take it, and the viewer's own request then waits out that
   * delay. Absent (an edge of an earlier release): the consumers start at once.
   */
  paused?: boolean;
  /**
   * Where the asking edge is (its --lat/--lon) and the URL other nodes reach it at: sent by an edge
   * of a tiered cluster (it has --origin-max-relays), whose relays fed by the origin can move to
   * a parent without their viewers noticing (edge/RelayFeed.ts). An origin at its limit may ask
   * such a relay to move below a newcomer (media/treePaths.ts chooseDemotion).
   */
  position?: { lat: number; lon: number };
  publicUrl?: string;
  /**
   * The asking edge has no bounded parent left after the origin in its order (edge/RelayTree.ts):
   * the origin, at its limit, makes room for it if it can rather than refuse (needs position).
   */
  makeRoom?: boolean;
}

/** Which rendition an edge asks for (media/codecs.ts RENDITION_CODECS); without a body, 'h264', as edges before VP8 renditions asked. */
export interface RenditionRequest {
  codec: RenditionCodec;
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
  /** The upstream's tree key (the origin's is 0); a relay that attaches takes a larger one. */
  treeKey: number;
  /** The nodes the media comes through, origin first, the upstream itself last. */
  path: string[];
  /** The publish this is (its placement's publisher session): a relay re-attaches only to the same one. */
  publisherSession: string;
  /**
   * The tree key the asking relay takes, when it feeds no one yet (it sent no treeKey): larger
   * than the upstream's, or, when the origin made room for it, smaller than the key of the relay
   * it asked to move below it. Absent (an upstream of an earlier release): the edge takes
   * media/treePaths.ts childKey(treeKey).
   */
  childTreeKey?: number;
}

/** Where an upstream asks a relay to move to (a `move` line's `to`): the node, and the relay's path through it (km). */
export interface RelayMoveTarget {
  nodeId: string;
  url: string;
  pathKm: number;
}

export type RelayLine = ({ type: 'ready' } & RelayOffer) | { type: 'ping' } | { type: 'end'; reason: string } | { type: 'detach'; reason: string } | { type: 'move'; reason: string; to?: RelayMoveTarget };
