import type { Request } from 'express';
import { Problem } from './errors.ts';
import { bearerToken, secretsEqual } from './tokens.ts';

/**
 * The internal API between nodes of one cluster: every path under `/internal/v1`, every call
 * authenticated with the cluster secret as a bearer token (nodes are trusted peers: no rate limit,
 * no per-stream tokens). The request and answer bodies of the relay calls are media/relayProtocol.ts.
 */

/** `POST` (edge → origin): pull a stream; an application/x-ndjson answer lasts as long as the relay. */
export const RELAY_PATH = '/internal/v1/relays';

/**
 * `POST` (edge → upstream): the edge of relay `relayId` has a viewer that decodes nothing the
 * stream is sent as; the origin adds the stream's rendition in the codec asked for to that
 * relay's pipe (a parent edge passes the request up).
 */
export const renditionPath = (relayId: string) => `${RELAY_PATH}/${relayId}/rendition`;

/**
 * `POST` (edge → upstream): the relay `relayId`, asked for paused, has its first viewer (or child
 * edge) connected; the upstream resumes the pipe's consumers, which asks the publisher for a key
 * frame (a parent edge resumes its own relay in turn). 204, or 404 for a relay it does not have.
 */
export const resumePath = (relayId: string) => `${RELAY_PATH}/${relayId}/resume`;

/** `DELETE {STREAMS_PATH}/{name}` (balancer → origin): end a stream live there. 204, or 404. */
export const STREAMS_PATH = '/internal/v1/streams';

/**
 * `POST` (a preStop hook, docker/prestop.mjs → its own node): drain ahead of a shutdown. The hook
 * is plain JavaScript in the image and spells the path out.
 */
export const DRAIN_PATH = '/internal/v1/drain';

/**
 * How often an upstream (origin or parent edge) writes a `ping` line on a relay. An edge that
 * hears nothing for three intervals takes the upstream for gone even when TCP has not noticed (a
 * host that vanished) and re-attaches: 1.5 s, well inside the 3 s a viewer may wait. A line is
 * a dozen bytes; two a second per relay cost nothing next to the media.
 */
export const RELAY_PING_MS = 500;

/** Throws 401 unless the request carries the cluster secret. */
export function authorizeInternal(req: Request, clusterSecret: string): void {
  const token = bearerToken(req.get('authorization'));
  if (!token || !secretsEqual(token, clusterSecret)) {
    throw new Problem('unauthorized', 'the internal API needs the cluster secret', {
      headers: { 'WWW-Authenticate': 'Bearer realm="relaycast-internal"' },
    });
  }
}

/** A call to another node's internal API: `fetch` with the cluster secret. */
export function internalFetch(baseUrl: string, path: string, clusterSecret: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${clusterSecret}`);
  return fetch(`${baseUrl}${path}`, { ...init, headers });
}

/**
 * `GET {RECORDINGS_PATH}/{key}?length=N` (balancer → the node that recorded it): a recorded file
 * from the node's own store, its first N bytes (a segment as far as its row says it was flushed).
 */
export const RECORDINGS_PATH = '/internal/v1/recordings';
