/**
 * Every problem (RFC 9457) Relaycast answers, by name. The name is the last segment of the
 * problem's `type` URI, which clients may match on: a name, once published, keeps its meaning;
 * a new kind of failure gets a new name. `title` is the same for every occurrence of a type; the
 * `detail` says what happened this time.
 */

export const PROBLEM_TYPE_BASE = 'https://relaycast.dev/problems/';

export const PROBLEMS = {
  /** The request could not be read (broken JSON, bad bytes in the request line). */
  'bad-request': { status: 400, title: 'Bad Request' },
  /** Plain HTTP sent to a port that speaks only HTTPS (--tls-cert). */
  'https-required': { status: 400, title: 'HTTPS Required' },
  /** A readable request whose fields break the schema; `errors` lists each. */
  'invalid-request': { status: 400, title: 'Invalid Request' },
  'invalid-stream-name': { status: 400, title: 'Invalid Stream Name' },
  'empty-body': { status: 400, title: 'Empty Body' },
  'malformed-sdp': { status: 400, title: 'Malformed SDP' },
  /** No token, or one that is forged, expired or revoked; WWW-Authenticate says which realm. */
  unauthorized: { status: 401, title: 'Unauthorized' },
  /** A valid token that does not allow this (another stream, another action, a missing scope). */
  forbidden: { status: 403, title: 'Forbidden' },
  /** The operator's admission endpoint (core/Admission.ts) said no to this publish or play; the detail is its reason. */
  'admission-refused': { status: 403, title: 'Admission Refused' },
  'not-found': { status: 404, title: 'Not Found' },
  'stream-not-live': { status: 404, title: 'Stream Not Live' },
  /** Internal API: the stream (or relay) is not on the node asked. */
  'stream-not-here': { status: 404, title: 'Stream Not Here' },
  /** Internal API, relay tiers: the upstream feeds as many edges as it may (--origin-max-relays, --edge-max-children). */
  'relay-full': { status: 503, title: 'Relay Full' },
  /** Internal API, relay tiers: attaching there would put a relay below itself (edge/RelayTree.ts). */
  'relay-order': { status: 409, title: 'Relay Order' },
  'method-not-allowed': { status: 405, title: 'Method Not Allowed' },
  /** A second publisher on a live stream key. */
  'stream-already-live': { status: 409, title: 'Stream Already Live' },
  'stream-exists': { status: 409, title: 'Stream Exists' },
  'no-haproxy': { status: 409, title: 'No HAProxy' },
  'no-layers': { status: 409, title: 'No Layers' },
  'precondition-failed': { status: 412, title: 'Precondition Failed' },
  'payload-too-large': { status: 413, title: 'Payload Too Large' },
  /** A recording's playlist or export over more than a day of segments: ask for a shorter range. */
  'range-too-long': { status: 422, title: 'Range Too Long' },
  'unsupported-media-type': { status: 415, title: 'Unsupported Media Type' },
  /** A well-formed offer with nothing the stream can be sent as; the body names both sides' codecs. */
  'unsupported-media': { status: 422, title: 'Unsupported Media' },
  'precondition-required': { status: 428, title: 'Precondition Required' },
  'too-many-requests': { status: 429, title: 'Too Many Requests' },
  'request-header-fields-too-large': { status: 431, title: 'Request Header Fields Too Large' },
  'internal-server-error': { status: 500, title: 'Internal Server Error' },
  /** The node asked another (an origin) and got no usable answer. */
  'bad-gateway': { status: 502, title: 'Bad Gateway' },
  'haproxy-reload-failed': { status: 502, title: 'HAProxy Reload Failed' },
  /** Starting, shutting down, the database unreachable, a relay that just closed: Retry-After says when. */
  'service-unavailable': { status: 503, title: 'Service Unavailable' },
  /** The admission endpoint did not answer in time, was down or answered nonsense, and --admission-on-failure is refuse: Retry-After says when. */
  'admission-unavailable': { status: 503, title: 'Admission Unavailable' },
  /** Every node that could take it is at its threshold. */
  'no-capacity': { status: 503, title: 'No Capacity' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemName = keyof typeof PROBLEMS;
