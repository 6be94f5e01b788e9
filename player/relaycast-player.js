// @ts-check
/**
 * Relaycast web player: WHEP playback through the Relaycast balancer, with automatic reconnects,
 * and LL-HLS when WebRTC cannot play.
 *
 *   import { RelaycastPlayer } from 'https://host/player/relaycast-player.js';
 *   const player = new RelaycastPlayer(videoElement, { server: 'https://host', stream: 'show' }); // mode: 'auto'
 *   player.addEventListener('statechange', () => console.log(player.state));
 *   player.addEventListener('stats', () => console.log(player.stats()));
 *   player.addEventListener('layers', () => console.log(player.layers())); // for a quality menu
 *   player.start();
 *   await player.selectQuality('auto'); // or a layer's id
 *
 * How a session starts: the balancer's route API (`GET /v1/route?stream=…&role=edge`) names the
 * best edge for this viewer; the player POSTs a recvonly offer to that edge's `/whep/{stream}`.
 * When the route API cannot answer (or is cross-origin without CORS), the player POSTs to the
 * balancer's own `/whep/{stream}`, whose 307 the browser follows to an edge.
 *
 * How it notices a lost session: the edge closes its viewers' sessions when the publisher stops or
 * the edge shuts down, and says so on the session's event stream. Chromium reports a vanished edge
 * as connectionState 'failed' only after many seconds. So besides the connection state, the player
 * reads the packet counters in getStats four times a second: no RTP packet at all (audio or
 * video) for STALL_MS while playing counts as lost, as do no decoded frame and no audio for
 * FROZEN_MS. Then it tears the session down (DELETE of its Location, best effort) and starts
 * over, forever, until stop(): at once the first time after a session that played, then after a
 * backoff. When the edge went silent, the player names it to the balancer (`lost=` on the route
 * API, or on the balancer's WHEP), which checks that edge and, when it is gone, sends nobody there
 * any more.
 *
 * When media cannot connect at all: a new session whose ICE or DTLS fails, or that gets no media
 * within CONNECT_TIMEOUT_MS of its answer, is a media failure. After MEDIA_ATTEMPTS of them in a
 * row the player stops trying and says why (state 'failed', `player.failure`): the addresses the
 * edge offered (the answer's `a=candidate` lines) and what this browser tried (getStats' candidate
 * pairs), until retry().
 *
 * When WebRTC cannot play, HLS (mode 'auto', the default): at the first media failure instead of
 * retrying towards 'failed', and when the edge answers 422 (this browser cannot decode the stream's codecs over WebRTC), the player
 * plays the edge's LL-HLS (`{edge}/hls/{stream}/index.m3u8`) and stays on it, with `failure`
 * still saying why WebRTC did not work, until retry() tries WebRTC again. hls.js (which the
 * balancer serves beside this module, vendor/hls.mjs) is imported only then; where there is no
 * MediaSource (iOS Safari), the browser's own HLS plays. Mode 'webrtc' never plays HLS, mode 'hls'
 * nothing else.
 *
 * A DVR window (player/dvr.js), when the stream is being recorded: the balancer's `/v1/dvr` names
 * the recording's playlist from up to two hours back (`player.dvr`; asked at start, at each
 * session that plays, and every 30 s while playing). enterDvr() plays it with hls.js (mode 'dvr':
 * the video's currentTime is the position in the window, seekable over all of it), leaveDvr()
 * returns to live playback as before (WebRTC or LL-HLS).
 *
 * Plain modern JavaScript (ES2022, no bundler); types in JSDoc. hls.js is its one dependency,
 * loaded on demand.
 */

import { DVR_HLS_CONFIG, DvrWatch } from './dvr.js';

/**
 * No RTP packet at all, audio or video, for this long while playing means the session is lost:
 * the edge or the path to it is gone. A live stream sends Opus audio every 20 ms (every 400 ms at
 * most with DTX) and video at 15–60 fps, dozens of packets a second in all; a second without one
 * is more than twice the longest gap a healthy stream leaves, yet it leaves most of a 3 s
 * failover for finding another edge and starting there. Packets, not decoded frames: they show
 * the network at once, without the jitter buffer and decoder in between.
 */
const STALL_MS = 1000;

/**
 * Packets that still come but no decoded frame and no audio for this long (a decoder that stopped,
 * video the edge no longer forwards) also mean the session is lost. This is the slower watch it
 * always was: far outside a healthy stream's jitter, and short enough that a viewer sees
 * "reconnecting" instead of a frozen picture.
 */
const FROZEN_MS = 3000;

/**
 * A new session that has not received any media this long after its answer is given up (a media
 * failure, below). ICE with a public-address ICE-lite server plus DTLS takes well under a second on
 * a normal network and a few seconds on a bad one; the edge may also need to pull the stream from
 * its origin first. Counted from the answer: the requests before it have REQUEST_TIMEOUT_MS each.
 */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * New sessions in a row that get an answer but no media (ICE or DTLS failed, or nothing within
 * CONNECT_TIMEOUT_MS) before the player gives up and says why (state 'failed'): the first try and
 * two quick retries, about 30 s. One such failure can be bad luck (an edge that died or drained
 * just after answering, and the next attempt goes elsewhere); three in a row are a path that does
 * not exist: an address this browser cannot reach, ports a firewall blocks. Retrying does not fix
 * those and a viewer left on "reconnecting" never learns of them, so the player stops and waits for
 * retry() (the page's Retry button): each attempt costs the edge a session and ports, and a page
 * that flipped between "failed" and "connecting" would hide the reason half the time.
 */
const MEDIA_ATTEMPTS = 3;

/** Signalling requests (route API, WHEP POST) that take longer than this are aborted and retried. */
const REQUEST_TIMEOUT_MS = 8000;

/**
 * The first HLS request of an attempt (the multivariant playlist) may take this long: an origin
 * holds the request that starts a stream's packaging until the packager has its first media, up
 * to 15 s (media/hls/HlsPackager.ts), and says 503 if none came; the player waits for that answer.
 */
const HLS_START_TIMEOUT_MS = 20_000;

/** First retry delay: quick enough that a brief blip costs half a second. */
const BACKOFF_INITIAL_MS = 500;

/**
 * Retry delays double up to this cap, so that a viewer who opened the page before the show
 * started sees it within about 8 s of going live, while a crowd of waiting viewers polls the
 * balancer at most once per 8 s each. Reset once the player plays again.
 */
const BACKOFF_MAX_MS = 8000;

/**
 * After a session that played is lost, retries do not grow for this long. The stream is most
 * likely moving (its viewers go to another edge, its publisher to another origin, within about
 * 3 s), and every doubled delay would be seconds more of black picture. Past it, the backoff
 * doubles as usual, so that a crowd of viewers of a stream that is really gone backs off.
 */
const RECOVERY_WINDOW_MS = 5000;

/** How often the numbers the overlay shows are worked out (and 'stats' fires): per second. */
const STATS_INTERVAL_MS = 1000;

/**
 * How often getStats is read for the stall watch: four reads per STALL_MS, so that a stall is
 * seen at most a quarter of it late, at the cost of a getStats call every 250 ms (a fraction of a
 * millisecond of the page's time).
 */
const WATCH_INTERVAL_MS = 250;

/**
 * hls.js, as the balancer serves it beside this module (balancer/webPages.ts): imported the first
 * time the player plays over HLS, never before.
 */
const HLS_MODULE = new URL('./vendor/hls.mjs', import.meta.url).href;

/**
 * hls.js's settings for LL-HLS. lowLatencyMode: load parts and use blocking reloads, and sit
 * PART-HOLD-BACK (1 s, three parts) behind the live edge. maxLiveSyncPlaybackRate: play up to 1.5x
 * to catch up when behind (after a stall, or a start on an older part): measured on this cluster,
 * it brings the latency from ~2.0 s to ~1.25 s, and audio at up to 1.5x stays intelligible.
 * liveSyncDuration(Count) is left unset on purpose: set, hls.js takes it instead of the playlist's
 * PART-HOLD-BACK (and three 4 s segments would put the viewer 12 s behind). backBufferLength: a live viewer does not seek back, so 10 s behind the
 * playhead is kept instead of everything (hls.js's default), which would grow for hours.
 * enableWorker: the segments are already fMP4, which hls.js passes through without transmuxing;
 * its worker would only need blob: in the page's script CSP.
 * @type {Partial<import('hls.js').HlsConfig>}
 */
const HLS_CONFIG = {
  lowLatencyMode: true,
  maxLiveSyncPlaybackRate: 1.5,
  backBufferLength: 10,
  enableWorker: false,
};

/**
 * Where DVR plays: the window, and where in it (seconds from its start; null: near its live end).
 * A lost DVR session starts again where it was.
 * @typedef {{ window: DvrWindow, at: number | null }} DvrTarget
 */

/**
 * An HLS session whose playback has not advanced for this long (its picture stopped while the
 * video is not paused, or it never started after its playlist loaded) is lost, and started again.
 * hls.js mends short gaps itself and says when it cannot (a fatal error), so this is only the
 * backstop for what it does not see: longer than the edge holds a blocking reload (three target
 * durations, 12 s), so a stream that merely paused its media is given the server's own time.
 */
const HLS_FROZEN_MS = 15_000;

/** @typedef {import('./dvr.js').DvrWindow} DvrWindow */

/**
 * @typedef {'auto' | 'webrtc' | 'hls'} PlayerMode
 *   auto: WebRTC, and HLS when WebRTC cannot connect or decode the stream (the default);
 *   webrtc: WebRTC only (state 'failed' when it cannot connect); hls: HLS only.
 */

/**
 * @typedef {'idle' | 'connecting' | 'playing' | 'waiting' | 'reconnecting' | 'unauthorized' | 'unsupported' | 'failed' | 'stopped'} PlayerState
 *   idle: not started; connecting: a session is being set up; playing: media arrives;
 *   waiting: the stream is not live (404), retrying; reconnecting: a session failed or was lost,
 *   retrying; unauthorized: the stream is private and the token is missing or refused, retrying
 *   slowly; unsupported: this browser cannot decode the stream's codecs (422; lastError says
 *   which), retrying slowly (the publisher may change them; in mode 'auto' HLS plays instead);
 *   failed: media could not connect MEDIA_ATTEMPTS times in a row (`failure` says why), not
 *   retrying until retry() (mode 'webrtc'; 'auto' plays HLS instead);
 *   stopped: stop() was called.
 */

/**
 * An address the edge offered for media: one `a=candidate` line of its answer.
 * @typedef {object} OfferedCandidate
 * @property {string} address
 * @property {number} port
 * @property {string} protocol   'udp' or 'tcp'
 * @property {string} type   'host', 'srflx' or 'relay'
 */

/**
 * One of this browser's ICE candidates (getStats 'local-candidate').
 * @typedef {object} LocalCandidate
 * @property {string} type   'host', 'srflx', 'prflx' or 'relay'
 * @property {string} protocol   'udp' or 'tcp'
 * @property {string | null} address   null where the browser hides it
 */

/**
 * A candidate pair this browser checked (getStats 'candidate-pair').
 * @typedef {object} TriedPair
 * @property {LocalCandidate} local
 * @property {{ address: string | null, port: number | null, protocol: string }} remote
 * @property {string} state   'frozen', 'waiting', 'in-progress', 'failed' or 'succeeded'
 * @property {number} requestsSent   connectivity checks sent on the pair
 * @property {number} responsesReceived   of them answered
 */

/**
 * Why WebRTC could not play: `player.failure` in state 'failed', and while the player plays over
 * HLS instead (mode 'auto').
 * @typedef {object} MediaFailure
 * @property {'ice' | 'dtls' | 'no-media' | 'unsupported'} kind   ice: no address the edge offered answered;
 *   dtls: one answered but the DTLS handshake did not complete; no-media: connected, but no media
 *   came; unsupported: the edge answered 422, this browser cannot decode the stream's codecs over WebRTC
 * @property {string} reason   the same in words, for a viewer or their support
 * @property {string | null} edge   the node (or host) that answered the last session
 * @property {number} attempts   sessions in a row that got no media
 * @property {OfferedCandidate[]} offered   what the last session's answer offered
 * @property {TriedPair[]} tried   the candidate pairs this browser checked, in the last session
 * @property {LocalCandidate[]} local   this browser's own candidates, in the last session
 */

/**
 * @typedef {object} PlayerStats
 * @property {PlayerState} state
 * @property {string} stateText   what the overlay shows, e.g. "reconnecting in 2 s"
 * @property {number} framesDecoded   video frames decoded in the current session
 * @property {number} framesDropped   video frames dropped in the current session
 * @property {number} width   decoded picture width (0 before the first frame)
 * @property {number} height
 * @property {number} fps   frames decoded per second, over the last second
 * @property {number} bitrateKbps   audio + video received, kbit/s, over the last second
 * @property {number | null} rttMs   ICE round trip of the selected candidate pair
 * @property {number} audioPacketsReceived
 * @property {string | null} videoCodec   e.g. "video/H264"
 * @property {string} connectionState   RTCPeerConnection.connectionState, or "none"
 * @property {string | null} edge   the node serving this session (from the route API), if known
 * @property {string | null} session   the WHEP session URL (Location)
 * @property {number} sessions   sessions set up since start()
 * @property {number} reconnects   times a playing session was lost
 * @property {number | null} retryInMs   delay until the next attempt, while waiting or reconnecting
 * @property {string | null} lastError
 * @property {string | null} layer   the simulcast layer received (its rid or index), when the stream has layers
 * @property {'auto' | 'pinned'} layerMode   whether the edge chooses the layer or the viewer pinned one
 * @property {number | null} downlinkKbps   what the edge knows the viewer's link carries (its estimate, or the bitrate last delivered without loss)
 * @property {boolean | null} estimated   the edge estimates this viewer's bandwidth from transport-cc feedback (a counter-offer
 *   made that possible) and picks its layer by the estimate; false: by its losses; null: not known (no layers, or not yet)
 * @property {number | null} viewers   viewers of the stream on this edge
 * @property {'webrtc' | 'hls' | 'dvr' | null} mode   how the player plays now: live over WebRTC or
 *   HLS, or behind live in the DVR window (null before start() and after stop())
 * @property {number | null} latencyMs   over HLS: how far behind the live edge playback is (hls.js's
 *   estimate; the browser's own HLS: now minus the program date-time of the picture shown); in DVR:
 *   now minus the program date-time of the picture shown; null over WebRTC
 * @property {string | null} playingDate   over HLS and in DVR: when the picture shown was live, its
 *   EXT-X-PROGRAM-DATE-TIME (ISO 8601; hls.js's playingDate), if the playlist says; null over WebRTC
 */

/**
 * @typedef {object} PlayerOptions
 * @property {string} stream   stream name ([A-Za-z0-9_-]{1,64})
 * @property {string} [server]   the balancer's base URL (default: the page's origin)
 * @property {string} [token]   play token for a private stream (sent as Authorization: Bearer)
 * @property {RTCIceServer[]} [iceServers]   STUN/TURN servers; the WHEP answer's Link headers add to them
 * @property {PlayerMode} [mode]   'auto' (default), 'webrtc' or 'hls'
 * @property {boolean} [counterOffer]   ask the edge for a WHEP counter-offer (`Prefer: counter-offer`), so that it can
 *   estimate this viewer's bandwidth from transport-cc and pick its layer by the estimate (default false for now: on a link
 *   that suddenly narrows, the estimate can fall below the lowest layer and the edge then sends no video; see docs/integrating/publish-and-play.md)
 * @property {string} [playbackToken]   playback token for a private stream's DVR window (its
 *   recordings need one; the play token is for live viewing only). Without it, a private stream has no DVR.
 */

/** @param {number} ms */
function jittered(ms) {
  // "Equal jitter": between half and all of the delay, so viewers dropped together by a failed
  // edge do not all come back in the same instant.
  return Math.round(ms / 2 + (Math.random() * ms) / 2);
}

/**
 * `Link: <turn:host>; rel="ice-server"; username="u"; credential="c"` headers → RTCIceServer[].
 * @param {string | null} header
 * @returns {RTCIceServer[]}
 */
export function parseIceServerLinks(header) {
  if (!header) return [];
  /** @type {RTCIceServer[]} */
  const servers = [];
  for (const link of header.split(/,(?=\s*<)/)) {
    const url = /<([^>]+)>/.exec(link)?.[1];
    if (!url || !/;\s*rel="?ice-server"?/i.test(link)) continue;
    const username = /;\s*username="([^"]*)"/i.exec(link)?.[1];
    const credential = /;\s*credential="([^"]*)"/i.exec(link)?.[1];
    servers.push(username !== undefined && credential !== undefined ? { urls: url, username, credential } : { urls: url });
  }
  return servers;
}

/** The mid of the stream a counter-offer adds for the edge's bandwidth probes (media/sdp.ts): no track to play. */
const PROBE_MID = 'probator';

/** An error whose HTTP status decides what the player does next. */
/** The WHEP extensions the player uses (draft-ietf-wish-whep, "Protocol extensions"). */
const WHEP_LAYER = 'urn:ietf:params:whep:ext:core:layer';
const WHEP_EVENTS = 'urn:ietf:params:whep:ext:core:server-sent-events';

/** The events the player asks the edge for: what the quality menu and the stats need, and when to rejoin. */
const EVENTS = ['layers', 'layer', 'viewercount', 'reconnect', 'inactive'];

/**
 * `Link: <url>; rel="urn:…"` headers → { rel: url } for the WHEP extensions they advertise.
 * @param {string | null} header
 * @returns {Record<string, string>}
 */
export function parseExtensionLinks(header) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const link of header?.split(/,(?=\s*<)/) ?? []) {
    const url = /<([^>]+)>/.exec(link)?.[1];
    const rel = /;\s*rel="?(urn:ietf:params:whep:ext:[^";]+)"?/i.exec(link)?.[1];
    if (url && rel) out[rel] = url;
  }
  return out;
}

/**
 * One layer of the stream, as the quality menu offers it.
 * @typedef {object} Layer
 * @property {string} id          the rid the publisher named it by, or its spatial layer index
 * @property {string} label       "High", "Medium", "Low" (or "Layer n" beyond three)
 * @property {number} spatialLayerId
 * @property {string} [rid]
 * @property {number} bitrateKbps what reaches the edge now (0: the publisher does not send it)
 */

/**
 * @param {Array<{ rid?: string, spatialLayerId: number, bitrate?: number }>} list  highest first
 * @returns {Layer[]}
 */
function toLayers(list) {
  const names = list.length === 2 ? ['High', 'Low'] : list.length === 3 ? ['High', 'Medium', 'Low'] : [];
  return list.map((l, i) => ({
    id: l.rid || String(l.spatialLayerId),
    label: names[i] ?? `Layer ${l.spatialLayerId}`,
    spatialLayerId: l.spatialLayerId,
    ...(l.rid ? { rid: l.rid } : {}),
    bitrateKbps: Math.round((l.bitrate ?? 0) / 1000),
  }));
}

class SessionError extends Error {
  /**
   * @param {string} message
   * @param {number} [status]
   * @param {number} [retryAfterMs]
   */
  constructor(message, status, retryAfterMs) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * @param {Response} res
 * @returns {Promise<string>} the problem+json detail, or the status text
 */
async function problemDetail(res) {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    return body.detail || body.title || `${res.status}`;
  } catch {
    return text.slice(0, 200) || `${res.status} ${res.statusText}`;
  }
}

/**
 * The addresses an answer offers for media: its `a=candidate` lines (component 1; BUNDLE repeats
 * them in every m-line, listed once here).
 * @param {string} sdp
 * @returns {OfferedCandidate[]}
 */
function offeredCandidates(sdp) {
  /** @type {Map<string, OfferedCandidate>} */
  const out = new Map();
  for (const m of sdp.matchAll(/^a=candidate:\S+ 1 (\S+) \d+ (\S+) (\d+) typ (\S+)/gim)) {
    const candidate = { address: m[2], port: Number(m[3]), protocol: m[1].toLowerCase(), type: m[4] };
    out.set(`${candidate.protocol} ${candidate.address} ${candidate.port}`, candidate);
  }
  return [...out.values()];
}

/** @param {{ address: string | null, port: number | null, protocol: string }} c  e.g. "127.0.0.1:40012 (udp)" */
function endpoint(c) {
  const host = c.address?.includes(':') ? `[${c.address}]` : (c.address ?? '?');
  return `${host}:${c.port ?? '?'} (${c.protocol})`;
}

/**
 * Why a viewer of this address may not reach it whatever the network does, or null.
 * @param {string} address
 */
function addressNote(address) {
  if (/^127\.|^::1$/.test(address)) return `${address} is a loopback address: only a browser on the server's own machine reaches it, and Firefox never connects to one.`;
  if (/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|f[cd])/i.test(address)) return `${address} is a private address: only browsers on the same network reach it.`;
  return null;
}

/**
 * Why a session got no media, from its answer and the browser's last stats report: which step
 * did not happen (ICE, DTLS, media), what the edge offered and what this browser tried, and the
 * same in words a viewer or their support can act on.
 * @param {RTCPeerConnection} pc
 * @param {OfferedCandidate[]} offered
 * @param {RTCStatsReport} report
 * @returns {Pick<MediaFailure, 'kind' | 'reason' | 'offered' | 'tried' | 'local'>}
 */
function diagnose(pc, offered, report) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((/** @type {any} */ r) => byId.set(r.id, r));
  const stats = [...byId.values()];
  /** @param {any} c @returns {LocalCandidate} */
  const localOf = (c) => ({ type: c?.candidateType ?? 'unknown', protocol: c?.protocol ?? 'unknown', address: c?.address || null });
  /** @type {Map<string, LocalCandidate>} */
  const locals = new Map();
  for (const c of stats.filter((r) => r.type === 'local-candidate').map(localOf)) locals.set(`${c.type} ${c.protocol} ${c.address}`, c);
  const local = [...locals.values()];
  /** @type {TriedPair[]} */
  const tried = stats
    .filter((r) => r.type === 'candidate-pair')
    .map((p) => {
      const remote = byId.get(p.remoteCandidateId);
      return {
        local: localOf(byId.get(p.localCandidateId)),
        remote: { address: remote?.address || null, port: remote?.port ?? null, protocol: remote?.protocol ?? 'unknown' },
        state: p.state,
        requestsSent: p.requestsSent ?? 0,
        responsesReceived: p.responsesReceived ?? 0,
      };
    });
  const connected = tried.find((p) => p.state === 'succeeded');
  const where = connected ? endpoint(connected.remote) : offered.map(endpoint).join(', ');
  if (connected || pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') {
    // ICE is up: connectionState is 'connected' only once DTLS is too.
    if (pc.connectionState !== 'connected') {
      const reason = `Reached the media server at ${where || 'its address'}, but the secure connection (DTLS) was not set up: a device on the way may block or alter its packets.`;
      return { kind: 'dtls', reason, offered, tried, local };
    }
    const reason = `Connected to the media server at ${where || 'its address'}, but no media came within ${CONNECT_TIMEOUT_MS / 1000} s: the server may not be receiving the stream.`;
    return { kind: 'no-media', reason, offered, tried, local };
  }
  const kinds = [...new Set(local.map((c) => `${c.type} ${c.protocol}`))].join(', ');
  const checks = tried.reduce((sum, p) => sum + p.requestsSent, 0);
  const why =
    offered.length === 0
      ? 'its answer offered no address'
      : tried.length === 0
        ? local.length === 0
          ? 'this browser found no network address of its own to connect from'
          : `this browser tried none of these addresses (its own candidates: ${kinds})`
        : tried.every((p) => p.responsesReceived === 0)
          ? `nothing answered this browser's connectivity checks (${tried.length} address pairs${checks ? `, ${checks} checks` : ''})`
          : 'some checks were answered, but no address pair worked';
  const notes = [...new Set(offered.map((c) => addressNote(c.address)).filter((n) => n !== null))];
  const reason =
    `Could not reach the media server${where ? ` at ${where}` : ''}: ${why}. ` +
    `A firewall may block these ports, or the server announces an address this browser cannot reach (it may need --announced-ip).` +
    (notes.length > 0 ? ` ${notes.join(' ')}` : '');
  return { kind: 'ice', reason, offered, tried, local };
}

/**
 * One WHEP session: its peer connection, its resource URL and the stats counters needed for
 * per-second rates. Owned by the player; replaced on every reconnect.
 */
class Session {
  /** @param {RTCPeerConnection} pc */
  constructor(pc) {
    this.pc = pc;
    /** @type {string | null} */
    this.location = null;
    /** @type {string | null} */
    this.edge = null;
    /** The node id the route API named for this session, if it did (what `lost=` names). */
    /** @type {string | null} */
    this.node = null;
    /** When the answer was applied (the media timeout counts from it), or null before. */
    /** @type {number | null} */
    this.answeredAt = null;
    /** The addresses the answer offered for media. */
    /** @type {OfferedCandidate[]} */
    this.offered = [];
    /** When media last progressed (frames decoded or audio packets), or null before the first. */
    /** @type {number | null} */
    this.progressAt = null;
    /** Frames decoded + audio packets received at the last progress. */
    this.lastProgress = 0;
    /** When an RTP packet (audio or video) last arrived, as far as the reads tell, or null before the first. */
    /** @type {number | null} */
    this.packetAt = null;
    /** Audio + video packets received at the last read. */
    this.lastPackets = 0;
    /** @type {{ at: number, bytes: number, frames: number } | null} */
    this.lastSample = null;
    /** The WHEP layer-selection URL, when the edge offers it. */
    /** @type {string | null} */
    this.layerUrl = null;
    /** The video's media id (its m-line index) as the edge's events name it. */
    /** @type {string | null} */
    this.mediaId = null;
    /** @type {EventSource | null} */
    this.events = null;
  }
}

/**
 * One HLS session: hls.js on the video (or the browser's own HLS, `hls` null), and the counters
 * for the stats and the frozen watch. Replaced on every reconnect, like a WHEP Session.
 */
class HlsSession {
  /** @param {string} url  the multivariant playlist's URL */
  constructor(url) {
    this.url = url;
    /** @type {import('hls.js').default | null} */
    this.hls = null;
    /** Whether the browser's own HLS plays it (the video's src). */
    this.native = false;
    /** @type {string | null} */
    this.edge = null;
    /** When the playlist answered (the frozen watch counts from it), or null before. */
    /** @type {number | null} */
    this.loadedAt = null;
    /** When playback last advanced, or null before it first did. */
    /** @type {number | null} */
    this.progressAt = null;
    /** The video's currentTime at the last progress. */
    this.lastTime = 0;
    /** Media bytes loaded (segments and parts), for the bitrate. */
    this.bytes = 0;
    /** @type {{ at: number, bytes: number, frames: number } | null} */
    this.lastSample = null;
  }
}

/**
 * Whether this browser can play HLS at all: hls.js needs MediaSource (ManagedMediaSource on newer
 * iOS), and Safari plays HLS itself.
 * @param {HTMLVideoElement} video
 */
function hlsPlayable(video) {
  return 'MediaSource' in globalThis || 'ManagedMediaSource' in globalThis || video.canPlayType('application/vnd.apple.mpegurl') !== '';
}

/**
 * An HLS codecs string's video codec as getStats names it ("avc1.64001f" → "video/H264").
 * @param {string | undefined} codecs
 */
function hlsVideoCodec(codecs) {
  if (!codecs) return null;
  if (/^avc[13]\./.test(codecs)) return 'video/H264';
  if (/^(hvc1|hev1)\./.test(codecs)) return 'video/H265';
  if (/^av01\./.test(codecs)) return 'video/AV1';
  return `video/${codecs}`;
}

export class RelaycastPlayer extends EventTarget {
  /** @type {HTMLVideoElement} */
  #video;
  /** @type {Required<Pick<PlayerOptions, 'server' | 'stream'>> & PlayerOptions} */
  #options;
  /** @type {PlayerState} */
  #state = 'idle';
  /** @type {Session | null} */
  #session = null;
  /** @type {HlsSession | null} */
  #hlsSession = null;
  /** How the player plays now: WebRTC or HLS live, or the DVR window; null before start() and after stop(). */
  /** @type {'webrtc' | 'hls' | 'dvr' | null} */
  #mode = null;
  /** In mode 'auto': WebRTC could not play, so every attempt plays HLS, until retry() or start(). */
  #fellBack = false;
  /** The mode at the last 'statechange': a change of mode alone fires one too. */
  /** @type {'webrtc' | 'hls' | 'dvr' | null} */
  #announcedMode = null;
  /** The stream's DVR window, as the balancer last said (player/dvr.js). */
  /** @type {DvrWatch} */
  #dvrWatch;
  /** Set while the viewer is in the DVR window (enterDvr() to leaveDvr()): every attempt plays it. */
  /** @type {DvrTarget | null} */
  #dvrTarget = null;
  /** Bumped by every attempt and by stop(): async work of an older attempt sees it and bails out. */
  #generation = 0;
  #backoffMs = BACKOFF_INITIAL_MS;
  /** When a session that played was lost, while recovering from it (RECOVERY_WINDOW_MS); null otherwise. */
  /** @type {number | null} */
  #lostAt = null;
  /** New sessions in a row that got no media (MEDIA_ATTEMPTS); back to 0 once media plays, and by retry(). */
  #mediaFailures = 0;
  /** Why WebRTC could not play: set on 'failed' or on falling back to HLS; cleared when WebRTC is tried again. */
  /** @type {MediaFailure | null} */
  #failure = null;
  /** The edge to name to the balancer at the next attempt: the last session's, which went silent. */
  /** @type {string | null} */
  #lostNode = null;
  /** When the overlay's numbers were last worked out. */
  #statsAt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {number | null} */
  #retryAt = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #statsTimer;
  /** @type {AbortController | null} */
  #requests = null;
  /** @type {RTCIceServer[]} */
  #learnedIceServers = [];
  /** @type {PlayerStats} */
  #stats;
  /** The stream's layers, highest first (empty until the edge says, or for a single-layer stream). */
  /** @type {Layer[]} */
  #layers = [];
  /** The viewer's choice: 'auto' or a Layer id; applied again to every new session. */
  #choice = 'auto';

  /**
   * @param {HTMLVideoElement} video
   * @param {PlayerOptions} options
   */
  constructor(video, options) {
    super();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(options.stream)) throw new TypeError(`invalid stream name: ${options.stream}`);
    this.#video = video;
    if (options.mode !== undefined && !['auto', 'webrtc', 'hls'].includes(options.mode)) throw new TypeError(`invalid mode: ${options.mode}`);
    this.#options = { ...options, server: (options.server || globalThis.location.origin).replace(/\/+$/, '') };
    this.#stats = this.#emptyStats();
    const { server, stream, playbackToken } = this.#options;
    this.#dvrWatch = new DvrWatch({ server, stream, token: playbackToken, onChange: () => this.#emit('dvr') });
  }

  /** @returns {PlayerState} */
  get state() {
    return this.#state;
  }

  get stream() {
    return this.#options.stream;
  }

  /**
   * Why WebRTC could not play: in state 'failed', and while the player plays over HLS instead of
   * it (mode 'auto'); null otherwise.
   */
  get failure() {
    return this.#failure;
  }

  /**
   * How the player plays now: 'webrtc' or 'hls' live, 'dvr' in the DVR window ('statechange' fires
   * when it changes); null before start() and after stop().
   */
  get mode() {
    return this.#mode;
  }

  /**
   * The stream's DVR window, when it is being recorded (and, for a private stream, the player has
   * a playbackToken): the recording, where the window starts, its playlist. null when there is
   * none, or before the balancer has said. 'dvr' fires when one appears or goes.
   * @returns {DvrWindow | null}
   */
  get dvr() {
    return this.#dvrWatch.window;
  }

  /**
   * Plays the DVR window (mode 'dvr') instead of live: from `atSeconds` after the window's start
   * (the video's currentTime counts from there, and the video is seekable over the window), or
   * near its live end. The window is `dvr`, asked for first when not known; rejects when there is
   * none. In DVR already, it moves the playhead there. The state then follows as live playback's
   * does ('connecting', 'playing', 'reconnecting': a lost DVR session starts again where it was);
   * a window that can no longer be played (the recording deleted, the token refused) and the end
   * of one whose recording ended return to live by themselves.
   * @param {number} [atSeconds]
   */
  async enterDvr(atSeconds) {
    if (atSeconds !== undefined && !(Number.isFinite(atSeconds) && atSeconds >= 0)) throw new RangeError(`invalid DVR position: ${atSeconds}`);
    if (this.#state === 'idle' || this.#state === 'stopped') throw new Error('the player is not started');
    const session = this.#hlsSession;
    if (this.#dvrTarget && session?.loadedAt != null) {
      const to = atSeconds ?? session.hls?.liveSyncPosition ?? null;
      if (to !== null) this.#video.currentTime = to;
      return;
    }
    const window = this.#dvrWatch.window ?? (await this.#dvrWatch.check(true));
    if (!window) throw new Error(`${this.#options.stream} has no DVR window: it is not being recorded${this.#options.playbackToken ? '' : ', or it is private (a playbackToken is needed)'}`);
    if (this.#mode === null) return; // stopped meanwhile
    this.#dvrTarget = { window, at: atSeconds ?? null };
    this.#backoffMs = BACKOFF_INITIAL_MS;
    void this.#attempt();
  }

  /** Leaves the DVR window: live playback again, as before (WebRTC, or HLS). Does nothing when not in DVR. */
  leaveDvr() {
    if (!this.#dvrTarget) return;
    this.#dvrTarget = null;
    this.#backoffMs = BACKOFF_INITIAL_MS;
    if (this.#state !== 'idle' && this.#state !== 'stopped') void this.#attempt();
  }

  /** The mode it was asked for: 'auto' (WebRTC, else HLS), 'webrtc' or 'hls'. */
  get requestedMode() {
    return this.#options.mode ?? 'auto';
  }

  /** The stream's layers, highest first, for a quality menu ('layers' events say when they change). */
  layers() {
    return [...this.#layers];
  }

  /** The viewer's quality choice: 'auto' or a layer id. */
  get quality() {
    return this.#choice;
  }

  /**
   * Chooses a layer ('auto': the edge picks from the viewer's link; a Layer id: that one). Kept
   * across reconnects. Resolves once the edge took it (rejects with its reason when it refused).
   * @param {string} choice
   */
  async selectQuality(choice) {
    this.#choice = choice;
    const session = this.#session;
    if (session?.layerUrl) await this.#applyQuality(session);
  }

  /** @param {Session} session */
  async #applyQuality(session) {
    if (!session.layerUrl) return;
    const layer = this.#layers.find((l) => l.id === this.#choice);
    /** @type {Record<string, unknown>} */
    const body = session.mediaId === null ? {} : { mediaId: session.mediaId };
    if (layer) Object.assign(body, layer.rid ? { rid: layer.rid } : { spatialLayerId: layer.spatialLayerId });
    const res = await fetch(session.layerUrl, { method: 'POST', headers: this.#jsonHeaders(), body: JSON.stringify(body), signal: this.#signal() });
    if (!res.ok) throw new SessionError(await problemDetail(res), res.status);
  }

  #jsonHeaders() {
    /** @type {Record<string, string>} */
    const headers = { 'content-type': 'application/json' };
    if (this.#options.token) headers.authorization = `Bearer ${this.#options.token}`;
    return headers;
  }

  /**
   * Opens the session's event stream (the WHEP server-sent-events extension), when the edge offers
   * one: the layers for the quality menu, the layer this viewer gets, the viewer count, and the
   * edge's word to rejoin (it drains) or that the stream ended.
   * @param {Session} session
   * @param {Record<string, string>} links
   * @param {number} generation
   */
  async #openEvents(session, links, generation) {
    const url = links[WHEP_EVENTS];
    if (!url) return;
    const res = await fetch(url, { method: 'POST', headers: this.#jsonHeaders(), body: JSON.stringify(EVENTS), signal: this.#signal() });
    const location = res.headers.get('location');
    if (res.status !== 201 || !location || generation !== this.#generation) return;
    const events = new EventSource(new URL(location, res.url).href);
    session.events = events;
    /** @param {string} name @param {(data: any) => void} handle */
    const on = (name, handle) =>
      events.addEventListener(name, (event) => {
        if (generation === this.#generation) handle(JSON.parse(/** @type {MessageEvent} */ (event).data));
      });
    on('layers', (data) => {
      const [mediaId, list] = Object.entries(data)[0] ?? [];
      session.mediaId = mediaId ?? null;
      const layers = toLayers(Array.isArray(list) ? list : []);
      const changed = JSON.stringify(layers.map((l) => l.id)) !== JSON.stringify(this.#layers.map((l) => l.id));
      this.#layers = layers;
      this.#emit('layers');
      // A choice made in an earlier session applies to this one as soon as its layers are known.
      if (changed && this.#choice !== 'auto') void this.#applyQuality(session).catch(() => undefined);
    });
    on('layer', (data) => {
      /** @type {any} */
      const layer = Object.values(data)[0] ?? {};
      this.#stats.layer = layer.rid ?? (layer.spatialLayerId === undefined ? null : String(layer.spatialLayerId));
      this.#stats.layerMode = layer.mode ?? 'auto';
      this.#stats.downlinkKbps = typeof layer.downlink === 'number' ? Math.round(layer.downlink / 1000) : this.#stats.downlinkKbps;
      if (typeof layer.estimated === 'boolean') this.#stats.estimated = layer.estimated;
      this.#emit('stats');
    });
    on('viewercount', (data) => {
      this.#stats.viewers = typeof data.viewercount === 'number' ? data.viewercount : null;
    });
    on('reconnect', () => this.#lost('the edge asked to rejoin'));
    // A publisher that stopped: no hurry (the usual backoff), it may be a while.
    on('inactive', () => this.#lost('the stream ended', { recovering: false }));
  }

  /** The latest numbers (read each second while a session runs). */
  stats() {
    return { ...this.#stats, state: this.#state, stateText: this.stateText(), retryInMs: this.#retryInMs(), mode: this.#mode };
  }

  /** The state as a viewer reads it: "playing", "reconnecting in 2 s"… */
  stateText() {
    const retry = this.#retryInMs();
    const inS = retry === null ? '' : ` in ${Math.max(1, Math.ceil(retry / 1000))} s`;
    switch (this.#state) {
      case 'waiting':
        return `waiting for stream${inS ? ` (retry${inS})` : ''}`;
      case 'reconnecting':
        return `reconnecting${inS}`;
      case 'unauthorized':
        return this.#options.token ? 'token refused' : 'private stream: token required';
      case 'unsupported':
        return `this browser cannot play this stream: ${this.#stats.lastError}`;
      case 'failed':
        return this.#failure?.reason ?? 'failed';
      default:
        return this.#state;
    }
  }

  /**
   * Starts playing (and keeps trying until stop(), or, in mode 'webrtc', until media fails to
   * connect MEDIA_ATTEMPTS times in a row: state 'failed'). In mode 'auto' it starts with WebRTC
   * again. Calling it while started does nothing; in state 'failed' it is retry().
   */
  start() {
    if (this.#state === 'failed') {
      this.retry();
      return;
    }
    if (this.#state !== 'idle' && this.#state !== 'stopped') return;
    this.#backoffMs = BACKOFF_INITIAL_MS;
    this.#mediaFailures = 0;
    this.#lostAt = null;
    this.#lostNode = null;
    this.#fellBack = false;
    this.#failure = null;
    this.#stats = this.#emptyStats();
    this.#dvrTarget = null;
    this.#statsTimer = setInterval(() => void this.#tick(), WATCH_INTERVAL_MS);
    void this.#attempt();
    this.#dvrWatch.start(() => this.#state === 'playing');
  }

  /**
   * Tries again now, with MEDIA_ATTEMPTS afresh: after 'failed' (the page's Retry button), or to
   * cut a retry delay short. After falling back to HLS (mode 'auto') it tries WebRTC again, even
   * while HLS plays (and falls back again if WebRTC still cannot play). Otherwise it does nothing
   * while connecting or playing; before start() or after stop(), it is start().
   */
  retry() {
    if (this.#state === 'idle' || this.#state === 'stopped') {
      this.start();
      return;
    }
    if (!this.#fellBack && (this.#state === 'connecting' || this.#state === 'playing')) return;
    this.#fellBack = false;
    this.#backoffMs = BACKOFF_INITIAL_MS;
    this.#mediaFailures = 0;
    void this.#attempt();
  }

  /** Stops playing, ends the session on the edge, and cancels every timer. */
  stop() {
    this.#generation++;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#statsTimer);
    this.#retryAt = null;
    this.#teardown();
    this.#mode = null;
    this.#dvrTarget = null;
    this.#dvrWatch.stop();
    this.#setState('stopped');
  }

  // --- session lifecycle ---

  async #attempt() {
    const generation = ++this.#generation;
    this.#retryAt = null;
    this.#teardown();
    const dvr = this.#dvrTarget;
    const hls = !dvr && (this.#options.mode === 'hls' || this.#fellBack);
    if (!dvr && !hls) this.#failure = null; // WebRTC is tried (again): what stopped it last time no longer holds
    this.#mode = dvr ? 'dvr' : hls ? 'hls' : 'webrtc';
    this.#setState('connecting');
    try {
      await (dvr ? this.#connectDvr(generation, dvr) : hls ? this.#connectHls(generation) : this.#connect(generation));
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#failed(/** @type {Error} */ (error));
    }
  }

  /**
   * Sets up one session: route, offer, POST, answer. Resolves once the answer is applied; media
   * progress is then watched by #tick.
   * @param {number} generation
   */
  async #connect(generation) {
    const { stream, token } = this.#options;
    const session = new Session(this.#peerConnection(generation));
    this.#session = session;
    this.#requests = new AbortController();
    session.pc.addTransceiver('audio', { direction: 'recvonly' });
    session.pc.addTransceiver('video', { direction: 'recvonly' });
    await session.pc.setLocalDescription(await session.pc.createOffer());

    const target = await this.#edgeUrl(generation);
    if (generation !== this.#generation) return;
    session.edge = target.node;
    session.node = target.node;
    /** @type {Record<string, string>} */
    const headers = { 'content-type': 'application/sdp' };
    if (this.#options.counterOffer) headers.prefer = 'counter-offer';
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${target.url}/whep/${stream}${target.query}`, {
      method: 'POST',
      headers,
      body: session.pc.localDescription?.sdp,
      signal: this.#signal(),
    });
    if (generation !== this.#generation) return;
    // 406 with an SDP body: the edge's counter-offer (see #answerCounterOffer).
    const counterOffer = res.status === 406 && /^application\/sdp/i.test(res.headers.get('content-type') ?? '');
    if (res.status !== 201 && !counterOffer) {
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new SessionError(await problemDetail(res), res.status, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
    }
    const sdp = await res.text();
    const location = res.headers.get('location');
    // Location may be relative to the URL that answered (after a 307, the edge's).
    session.location = location ? new URL(location, res.url).href : null;
    session.edge ??= new URL(res.url).host;
    const ice = parseIceServerLinks(res.headers.get('link'));
    if (ice.length > 0) this.#learnedIceServers = ice; // used from the next session on
    // Relative targets too (a node behind the balancer's /n/{node} path names its session so).
    const links = Object.fromEntries(Object.entries(parseExtensionLinks(res.headers.get('link'))).map(([rel, url]) => [rel, new URL(url, res.url).href]));
    session.layerUrl = links[WHEP_LAYER] ?? null;
    if (generation !== this.#generation) return;
    if (counterOffer) await this.#answerCounterOffer(session, sdp, res.headers.get('etag'), generation);
    else await session.pc.setRemoteDescription({ type: 'answer', sdp });
    if (generation !== this.#generation) return;
    session.offered = offeredCandidates(sdp);
    session.answeredAt = performance.now();
    // Best effort: a player without the quality menu still plays.
    void this.#openEvents(session, links, generation).catch(() => undefined);
    this.#stats.sessions++;
    this.#stats.session = session.location;
    this.#stats.edge = session.edge;
    this.#emit('stats');
  }

  /**
   * A new peer connection for a session of this generation: its tracks go to the video element
   * (but the stream of bandwidth probes a counter-offer adds, mid "probator"), and a connection
   * that fails while playing is a lost session.
   * @param {number} generation
   */
  #peerConnection(generation) {
    const pc = new RTCPeerConnection({ iceServers: [...(this.#options.iceServers ?? []), ...this.#learnedIceServers] });
    const media = new MediaStream();
    pc.ontrack = (event) => {
      if (event.transceiver.mid === PROBE_MID) return;
      media.addTrack(event.track);
      if (this.#video.srcObject !== media) this.#video.srcObject = media;
      this.#video.play().catch(() => undefined); // refused without a user gesture unless muted: the page's Unmute button plays
    };
    pc.onconnectionstatechange = () => {
      // Before media, #tick decides (it reads the stats that say why); 'disconnected' may heal by
      // itself, and the stall watchdog decides if it does not.
      if (generation !== this.#generation || this.#state !== 'playing') return;
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        this.#lost(`connection ${pc.connectionState}`, { hint: true });
      }
    };
    return pc;
  }

  /**
   * The edge answered our offer with one of its own (WHEP counter-offer: it numbers the RTP header
   * extensions as its media server writes them, so that it can estimate this viewer's bandwidth
   * from transport-cc feedback). Chromium refuses extension ids that change within one
   * connection, so the offer is answered by a fresh RTCPeerConnection, and the answer PATCHed to
   * the session.
   * @param {Session} session
   * @param {string} offer
   * @param {string | null} etag
   * @param {number} generation
   */
  async #answerCounterOffer(session, offer, etag, generation) {
    if (!session.location) throw new SessionError('the counter-offer came without a session URL', 502);
    const first = session.pc;
    first.onconnectionstatechange = null;
    first.close();
    session.pc = this.#peerConnection(generation);
    await session.pc.setRemoteDescription({ type: 'offer', sdp: offer });
    await session.pc.setLocalDescription(await session.pc.createAnswer());
    /** @type {Record<string, string>} */
    const headers = { 'content-type': 'application/sdp', 'if-match': etag ?? '*' };
    if (this.#options.token) headers.authorization = `Bearer ${this.#options.token}`;
    const res = await fetch(session.location, { method: 'PATCH', headers, body: session.pc.localDescription?.sdp, signal: this.#signal() });
    if (!res.ok) throw new SessionError(await problemDetail(res), res.status === 409 ? 502 : res.status);
  }

  /**
   * Sets up one HLS session: route, the multivariant playlist, then hls.js on the video (or the
   * browser's own HLS where there is no MediaSource). Resolves once playback is set up; #tickHls
   * watches it.
   * @param {number} generation
   */
  async #connectHls(generation) {
    const { stream, token } = this.#options;
    const video = this.#video;
    this.#requests = new AbortController();
    const mse = 'MediaSource' in globalThis || 'ManagedMediaSource' in globalThis;
    /** @type {[{ url: string, node: string | null }, typeof import('hls.js').default | null]} */
    const [target, Hls] = await Promise.all([this.#edgeUrl(generation), mse ? import(HLS_MODULE).then((module) => module.default) : null]);
    if (generation !== this.#generation) return;
    const native = video.canPlayType('application/vnd.apple.mpegurl') !== '';
    if (!Hls?.isSupported() && !native) throw new SessionError('this browser plays neither this stream over WebRTC nor HLS', 422);
    // The edge's own URL, or the balancer's, which redirects to one (the token goes in the query,
    // so it survives the redirect; the edge adds it to every URI in the playlists it returns).
    const url = `${target.url}/hls/${stream}/index.m3u8${token ? `?token=${encodeURIComponent(token)}` : ''}`;
    const session = new HlsSession(url);
    session.edge = target.node;
    this.#hlsSession = session;
    // The multivariant playlist first, once: its status says what to do (404 the stream is not
    // live, 401/403 the token, 503 the origin is still starting to package it), more plainly than
    // hls.js's errors, and the browser's own HLS says nothing of it.
    const res = await fetch(url, { signal: this.#signal(HLS_START_TIMEOUT_MS), cache: 'no-store' });
    if (generation !== this.#generation) return;
    if (!res.ok) {
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new SessionError(await problemDetail(res), res.status, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
    }
    await res.arrayBuffer();
    if (generation !== this.#generation) return;
    session.edge ??= new URL(res.url).host;
    this.#playHls(session, res.url, Hls, HLS_CONFIG);
  }

  /**
   * Sets up the DVR session: the window's playlist, fetched once for its status as live HLS's is
   * (the balancer's URL: the fetch follows its 307 to an edge, whose URL hls.js then reloads), then
   * hls.js on it (DVR_HLS_CONFIG) from `target.at` or near its live end, or the browser's own HLS.
   * The same HlsSession and #tickHls as live HLS; a recording that ended and was played to its
   * end returns to live.
   * @param {number} generation
   * @param {DvrTarget} target
   */
  async #connectDvr(generation, target) {
    const video = this.#video;
    const requests = (this.#requests = new AbortController());
    const mse = 'MediaSource' in globalThis || 'ManagedMediaSource' in globalThis;
    /** @type {typeof import('hls.js').default | null} */
    const Hls = mse ? await import(HLS_MODULE).then((module) => module.default) : null;
    if (generation !== this.#generation) return;
    if (!Hls?.isSupported() && video.canPlayType('application/vnd.apple.mpegurl') === '') throw new SessionError('this browser cannot play HLS, which the DVR window is', 422);
    const session = new HlsSession(target.window.playlistUrl);
    this.#hlsSession = session;
    const res = await fetch(session.url, { signal: this.#signal(), cache: 'no-store' });
    if (generation !== this.#generation) return;
    if (!res.ok) {
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new SessionError(await problemDetail(res), res.status, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
    }
    await res.arrayBuffer();
    if (generation !== this.#generation) return;
    session.edge = new URL(res.url).host;
    video.addEventListener('ended', () => session === this.#hlsSession && this.leaveDvr(), { signal: requests.signal });
    this.#playHls(session, res.url, Hls, { ...DVR_HLS_CONFIG, startPosition: target.at ?? -1 }, target.at);
  }

  /**
   * Plays the playlist at `url` (it answered) on the video, for `session`: with hls.js and
   * `config` where it is supported, else with the browser's own HLS (from `startAt` s, when given).
   * @param {HlsSession} session
   * @param {string} url
   * @param {typeof import('hls.js').default | null} Hls
   * @param {Partial<import('hls.js').HlsConfig>} config
   * @param {number | null} [startAt]
   */
  #playHls(session, url, Hls, config, startAt = null) {
    const video = this.#video;
    session.loadedAt = performance.now();
    video.srcObject = null; // WebRTC's stream, if it played before: a srcObject hides src
    if (Hls?.isSupported()) {
      const hls = new Hls(config);
      session.hls = hls;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal && session === this.#hlsSession) this.#hlsFailed(data);
      });
      hls.on(Hls.Events.FRAG_LOADED, (_event, data) => {
        session.bytes += (data.part ?? data.frag).stats.loaded;
      });
      hls.loadSource(url); // after the balancer's 307, the edge's URL: its reloads go there directly
      hls.attachMedia(video);
    } else {
      session.native = true;
      // The browser's player says little: an error is a lost session (the frozen watch covers the rest).
      const signal = this.#requests?.signal;
      video.addEventListener('error', () => this.#lost(`HLS: the browser's player failed (${video.error?.message || video.error?.code})`), { once: true, signal });
      if (startAt !== null) {
        video.addEventListener(
          'loadedmetadata',
          () => {
            video.currentTime = startAt;
          },
          { once: true, signal },
        );
      }
      video.src = url;
    }
    video.play().catch(() => undefined); // refused without a user gesture unless muted: the page's Unmute button plays
    this.#stats.sessions++;
    this.#stats.edge = session.edge;
    this.#emit('stats');
  }

  /**
   * Where to POST: the route API's first choice, or the balancer itself (which redirects) when the
   * route API fails or has no edge to offer. Either is told which edge the last session lost
   * (`lost=`), once: the balancer checks it and leaves it out if it is gone.
   * @param {number} generation
   * @returns {Promise<{ url: string, node: string | null, query: string }>}
   */
  async #edgeUrl(generation) {
    const { server, stream } = this.#options;
    const lost = this.#lostNode ? `lost=${encodeURIComponent(this.#lostNode)}` : '';
    this.#lostNode = null;
    try {
      const res = await fetch(`${server}/v1/route?stream=${encodeURIComponent(stream)}&role=edge${lost ? `&${lost}` : ''}`, { signal: this.#signal(), cache: 'no-store' });
      if (res.ok) {
        const body = await res.json();
        const choice = body?.choices?.[0];
        if (choice && typeof choice.url === 'string' && /^https?:\/\//.test(choice.url)) {
          return { url: choice.url.replace(/\/+$/, ''), node: typeof choice.node === 'string' ? choice.node : null, query: '' };
        }
      }
    } catch (error) {
      if (generation !== this.#generation) throw error;
      // Unreachable or cross-origin without CORS: the balancer's 307 below still works.
    }
    return { url: server, node: null, query: lost ? `?${lost}` : '' };
  }

  /**
   * A session could not be set up: decide the state and when to try again.
   * @param {Error} error
   */
  #failed(error) {
    const status = error instanceof SessionError ? error.status : undefined;
    this.#stats.lastError = error.name === 'AbortError' || error.name === 'TimeoutError' ? 'request timed out' : error.message;
    const edge = this.#session?.edge ?? null;
    this.#teardown();
    if (this.#mode === 'dvr' && (status === 401 || status === 403 || status === 404 || status === 422)) {
      // The window cannot be played (any more): the recording was deleted, the token is refused,
      // it reached a playlist's limit (a day). Live again; the balancer is asked afresh.
      this.#dvrTarget = null;
      void this.#dvrWatch.check(true);
      void this.#attempt();
      return;
    }
    if (status === 422 && this.#mode === 'webrtc' && this.#canFallBack()) {
      const reason = `This browser cannot decode the stream over WebRTC: ${this.#stats.lastError}`;
      this.#fallBack({ kind: 'unsupported', reason, edge, attempts: 1, offered: [], tried: [], local: [] });
    } else if (status === 404) this.#retry('waiting');
    else if (status === 401 || status === 403) this.#retry('unauthorized', BACKOFF_MAX_MS);
    else if (status === 422) this.#retry('unsupported', BACKOFF_MAX_MS);
    else this.#retry('reconnecting', error instanceof SessionError ? error.retryAfterMs : undefined);
  }

  /**
   * A session that was set up is gone (connection failed, media stalled, or never came). After a
   * session that played, the next attempt starts at once and retries stay quick for
   * RECOVERY_WINDOW_MS (unless `recovering` is false: the stream ended); `hint`: the edge itself
   * seems gone, so the next attempt names it to the balancer.
   * @param {string} why
   * @param {{ hint?: boolean, recovering?: boolean }} [options]
   */
  #lost(why, { hint = false, recovering = true } = {}) {
    const wasPlaying = this.#state === 'playing';
    if (hint && this.#session?.node) this.#lostNode = this.#session.node;
    // A DVR session starts again where it was.
    if (this.#dvrTarget && this.#hlsSession?.loadedAt != null && this.#video.currentTime > 0) this.#dvrTarget.at = this.#video.currentTime;
    if (wasPlaying) {
      this.#stats.reconnects++;
      this.#lostAt = recovering ? performance.now() : null;
    }
    this.#stats.lastError = why;
    this.#teardown();
    this.#retry('reconnecting', 0, wasPlaying && recovering);
  }

  /**
   * A new session got no media: its ICE or DTLS failed, or CONNECT_TIMEOUT_MS passed since its
   * answer. Retried like a lost session (the edge is not named to the balancer: it answered a
   * moment ago) until MEDIA_ATTEMPTS in a row have failed; then the player stops trying and says
   * why (state 'failed', `failure`) until retry().
   * @param {Session} session
   * @param {RTCStatsReport} report  the session's latest stats: what was tried
   */
  #mediaFailed(session, report) {
    const attempts = ++this.#mediaFailures;
    const failure = { ...diagnose(session.pc, session.offered, report), edge: session.edge, attempts };
    this.#stats.lastError = failure.reason;
    this.#teardown();
    // With HLS to fall back on, one failure is enough: the viewer watches within seconds (HLS plays
    // wherever the page loaded) rather than after three attempts, half a minute; retry() comes back.
    if (this.#canFallBack()) {
      this.#fallBack(failure);
      return;
    }
    if (attempts < MEDIA_ATTEMPTS) {
      this.#retry('reconnecting');
      return;
    }
    this.#generation++;
    clearTimeout(this.#retryTimer);
    this.#retryAt = null;
    this.#failure = failure;
    this.#setState('failed');
  }

  /** Whether WebRTC's failure may make the player play HLS instead: in mode 'auto', where this browser plays HLS. */
  #canFallBack() {
    return this.requestedMode === 'auto' && hlsPlayable(this.#video);
  }

  /**
   * WebRTC cannot play here (mode 'auto'): HLS from now on, starting at once, with `failure` kept
   * for the page and support, until retry() or start() tries WebRTC again.
   * @param {MediaFailure} failure
   */
  #fallBack(failure) {
    this.#failure = failure;
    this.#fellBack = true;
    this.#mediaFailures = 0;
    this.#backoffMs = BACKOFF_INITIAL_MS;
    void this.#attempt();
  }

  /**
   * hls.js gave up (a fatal error): like a WHEP session that could not be set up or was lost. When
   * an HTTP request failed, its status says which: 404 the stream is not live (any more), 401/403
   * the token; anything else (network, media) reconnects.
   * @param {import('hls.js').ErrorData} data
   */
  #hlsFailed(data) {
    const status = data.response?.code;
    const why = `HLS ${data.details}${status ? ` (HTTP ${status})` : ''}: ${data.error?.message ?? data.type}`;
    if (status === 404 || status === 401 || status === 403) this.#failed(new SessionError(why, status));
    else this.#lost(why);
  }

  /**
   * Schedules the next attempt after the backoff (at least `minMs`; none when `now`), and doubles
   * the backoff unless the player is recovering from a lost session (RECOVERY_WINDOW_MS).
   * @param {PlayerState} state
   * @param {number} [minMs]
   * @param {boolean} [now]
   */
  #retry(state, minMs = 0, now = false) {
    const generation = ++this.#generation;
    const delay = now ? 0 : Math.max(jittered(this.#backoffMs), Math.min(minMs, 60_000));
    const recovering = this.#lostAt !== null && performance.now() - this.#lostAt < RECOVERY_WINDOW_MS;
    if (!now && !recovering) this.#backoffMs = Math.min(this.#backoffMs * 2, BACKOFF_MAX_MS);
    clearTimeout(this.#retryTimer);
    this.#retryAt = performance.now() + delay;
    this.#retryTimer = setTimeout(() => {
      if (generation === this.#generation) void this.#attempt();
    }, delay);
    this.#setState(state);
  }

  /**
   * Ends the current session: closes the peer connection and DELETEs the session (best effort), or
   * stops hls.js (or the browser's own HLS).
   */
  #teardown() {
    this.#requests?.abort();
    this.#requests = null;
    const hlsSession = this.#hlsSession;
    this.#hlsSession = null;
    if (hlsSession) {
      if (hlsSession.hls) hlsSession.hls.destroy(); // detaches the video, ends its MediaSource
      else if (hlsSession.native) {
        this.#video.removeAttribute('src');
        this.#video.load();
      }
    }
    const session = this.#session;
    this.#session = null;
    if (session) this.#closeWhep(session);
    if (!session && !hlsSession) return;
    const stats = this.#stats;
    Object.assign(stats, { framesDecoded: 0, framesDropped: 0, width: 0, height: 0, fps: 0, bitrateKbps: 0, rttMs: null, audioPacketsReceived: 0, connectionState: 'none', session: null, layer: null, downlinkKbps: null, estimated: null, viewers: null, latencyMs: null, playingDate: null });
  }

  /** @param {Session} session */
  #closeWhep(session) {
    session.pc.ontrack = null;
    session.pc.onconnectionstatechange = null;
    session.pc.close();
    session.events?.close();
    if (session.location) {
      /** @type {Record<string, string>} */
      const headers = {};
      if (this.#options.token) headers.authorization = `Bearer ${this.#options.token}`;
      // keepalive: the DELETE goes out even when the page is being closed.
      fetch(session.location, { method: 'DELETE', headers, keepalive: true, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch(() => undefined);
    }
  }

  /** The signal for a signalling request: aborted by teardown/stop, or after REQUEST_TIMEOUT_MS (or `timeoutMs`). */
  #signal(timeoutMs = REQUEST_TIMEOUT_MS) {
    const timeout = AbortSignal.timeout(timeoutMs);
    const own = this.#requests?.signal;
    return own && 'any' in AbortSignal ? AbortSignal.any([own, timeout]) : timeout;
  }

  // --- stats (once a second) and the stall watchdog (every WATCH_INTERVAL_MS) ---

  async #tick() {
    if (this.#hlsSession) {
      this.#tickHls(this.#hlsSession);
      return;
    }
    const session = this.#session;
    const generation = this.#generation;
    if (!session || session.pc.signalingState === 'closed') {
      if (performance.now() - this.#statsAt >= STATS_INTERVAL_MS - WATCH_INTERVAL_MS / 2) {
        this.#statsAt = performance.now();
        this.#emit('stats'); // the countdown in stateText moves on
      }
      return;
    }
    /** @type {RTCStatsReport} */
    let report;
    try {
      report = await session.pc.getStats();
    } catch {
      return;
    }
    if (session !== this.#session || generation !== this.#generation) return;
    const now = performance.now();
    const packets = this.#read(session, report, now - this.#statsAt >= STATS_INTERVAL_MS - WATCH_INTERVAL_MS / 2);
    if (packets > session.lastPackets) {
      session.lastPackets = packets;
      session.packetAt = now;
    }
    const progress = this.#stats.framesDecoded + this.#stats.audioPacketsReceived;
    if (progress > session.lastProgress && session.pc.remoteDescription) {
      session.lastProgress = progress;
      session.progressAt = now;
      if (this.#state !== 'playing') this.#playing();
    } else if (this.#state === 'playing' && session.packetAt !== null && now - session.packetAt >= STALL_MS) {
      // Nothing at all from the edge: it (or the way to it) is gone. Name it to the balancer.
      this.#lost(`no packets for ${(now - session.packetAt) / 1000} s`, { hint: true });
      return;
    } else if (session.progressAt !== null && now - session.progressAt >= FROZEN_MS) {
      this.#lost(`no media for ${Math.round((now - session.progressAt) / 1000)} s`);
      return;
    } else if (session.progressAt === null && session.answeredAt !== null) {
      const pc = session.pc;
      if (pc.connectionState === 'failed' || pc.iceConnectionState === 'failed' || now - session.answeredAt > CONNECT_TIMEOUT_MS) {
        this.#mediaFailed(session, report);
        return;
      }
    }
    if (now - this.#statsAt >= STATS_INTERVAL_MS - WATCH_INTERVAL_MS / 2) {
      this.#statsAt = now;
      this.#emit('stats');
    }
  }

  /**
   * The HLS session's numbers (from the video and hls.js) and its frozen watch: playback that
   * moves on is playing (so is a paused video with a picture: autoplay was refused, the page's
   * Unmute button plays it); playback that has not moved for HLS_FROZEN_MS is lost.
   * @param {HlsSession} session
   */
  #tickHls(session) {
    const video = this.#video;
    const s = this.#stats;
    const now = performance.now();
    const rates = now - this.#statsAt >= STATS_INTERVAL_MS - WATCH_INTERVAL_MS / 2;
    if (session.loadedAt !== null) {
      const quality = video.getVideoPlaybackQuality();
      s.framesDecoded = quality.totalVideoFrames;
      s.framesDropped = quality.droppedVideoFrames;
      s.width = video.videoWidth;
      s.height = video.videoHeight;
      const hls = session.hls;
      /** When the picture shown was live (its program date-time), ms. @type {number | null} */
      let shownAt;
      if (hls) {
        shownAt = hls.playingDate?.getTime() ?? null;
        // Live: hls.js's estimate (from the playlist's end); DVR: from the wall clock, the figure a viewer behind live wants.
        s.latencyMs = this.#mode === 'dvr' ? (shownAt === null ? null : Math.max(0, Date.now() - shownAt)) : hls.latency > 0 ? Math.round(hls.latency * 1000) : null;
        s.videoCodec = hlsVideoCodec(hls.levels[hls.currentLevel]?.videoCodec) ?? s.videoCodec;
      } else {
        // Safari: the program date-time of the playlist's start (NaN without one), plus the position.
        const start = /** @type {any} */ (video).getStartDate?.()?.getTime();
        shownAt = Number.isFinite(start) ? start + Math.round(video.currentTime * 1000) : null;
        s.latencyMs = shownAt === null ? null : Math.max(0, Date.now() - shownAt);
      }
      s.playingDate = shownAt === null ? null : new Date(shownAt).toISOString();
      const picture = video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA;
      if (picture && (video.currentTime !== session.lastTime || video.paused)) {
        session.lastTime = video.currentTime;
        session.progressAt = now;
        if (this.#state !== 'playing') this.#playing();
      } else if (!video.paused && now - (session.progressAt ?? session.loadedAt) >= HLS_FROZEN_MS) {
        this.#lost(`HLS: playback stalled for ${Math.round((now - (session.progressAt ?? session.loadedAt)) / 1000)} s`);
        return;
      }
    }
    if (!rates) return;
    const last = session.lastSample;
    if (last && now > last.at) {
      const dt = (now - last.at) / 1000;
      s.bitrateKbps = Math.round(((session.bytes - last.bytes) * 8) / dt / 1000);
      s.fps = Math.round((s.framesDecoded - last.frames) / dt);
    }
    session.lastSample = { at: now, bytes: session.bytes, frames: s.framesDecoded };
    this.#statsAt = now;
    this.#emit('stats');
  }

  /** Media plays (again): the backoff and the media failure count start afresh. */
  #playing() {
    this.#backoffMs = BACKOFF_INITIAL_MS;
    this.#mediaFailures = 0;
    this.#lostAt = null;
    this.#stats.lastError = null;
    if (this.#state !== 'playing') void this.#dvrWatch.check(); // a session that plays: is it being recorded (now)?
    this.#setState('playing');
  }

  /**
   * Reads the counters into the stats; with `rates`, also the per-second numbers (bitrate, fps)
   * since the last time. Returns the audio and video packets received in all.
   * @param {Session} session
   * @param {RTCStatsReport} report
   * @param {boolean} rates
   * @returns {number}
   */
  #read(session, report, rates) {
    const s = this.#stats;
    let bytes = 0;
    let packets = 0;
    /** @type {Map<string, string>} */
    const codecs = new Map();
    /** @type {string | undefined} */
    let codecId;
    /** @type {string | undefined} */
    let pairId;
    /** @type {Map<string, any>} */
    const pairs = new Map();
    report.forEach((/** @type {any} */ r) => {
      if (r.type === 'inbound-rtp' && r.mid !== PROBE_MID) {
        bytes += r.bytesReceived ?? 0;
        packets += r.packetsReceived ?? 0;
        if (r.kind === 'video') {
          s.framesDecoded = r.framesDecoded ?? 0;
          s.framesDropped = r.framesDropped ?? 0;
          s.width = r.frameWidth ?? s.width;
          s.height = r.frameHeight ?? s.height;
          codecId = r.codecId;
        } else if (r.kind === 'audio') {
          s.audioPacketsReceived = r.packetsReceived ?? 0;
        }
      } else if (r.type === 'codec') {
        codecs.set(r.id, r.mimeType);
      } else if (r.type === 'transport') {
        pairId = r.selectedCandidatePairId;
      } else if (r.type === 'candidate-pair') {
        pairs.set(r.id, r);
      }
    });
    const pair = (pairId && pairs.get(pairId)) || [...pairs.values()].find((p) => p.nominated && p.state === 'succeeded');
    s.rttMs = typeof pair?.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : null;
    s.videoCodec = (codecId && codecs.get(codecId)) || s.videoCodec;
    s.connectionState = session.pc.connectionState;
    if (!rates) return packets;
    const now = performance.now();
    const last = session.lastSample;
    if (last && now > last.at) {
      const dt = (now - last.at) / 1000;
      s.bitrateKbps = Math.round(((bytes - last.bytes) * 8) / dt / 1000);
      s.fps = Math.round((s.framesDecoded - last.frames) / dt);
    }
    session.lastSample = { at: now, bytes, frames: s.framesDecoded };
    return packets;
  }

  // --- helpers ---

  /** 'statechange' when the state or the mode changed. @param {PlayerState} state */
  #setState(state) {
    const changed = state !== this.#state || this.#mode !== this.#announcedMode;
    this.#state = state;
    this.#announcedMode = this.#mode;
    if (changed) this.#emit('statechange');
    this.#emit('stats');
  }

  /** @param {'statechange' | 'stats' | 'layers' | 'dvr'} type */
  #emit(type) {
    this.dispatchEvent(new CustomEvent(type, { detail: this.stats() }));
  }

  #retryInMs() {
    return this.#retryAt === null ? null : Math.max(0, Math.round(this.#retryAt - performance.now()));
  }

  /** @returns {PlayerStats} */
  #emptyStats() {
    return {
      state: 'idle',
      stateText: 'idle',
      framesDecoded: 0,
      framesDropped: 0,
      width: 0,
      height: 0,
      fps: 0,
      bitrateKbps: 0,
      rttMs: null,
      audioPacketsReceived: 0,
      videoCodec: null,
      connectionState: 'none',
      edge: null,
      session: null,
      sessions: 0,
      reconnects: 0,
      retryInMs: null,
      lastError: null,
      layer: null,
      layerMode: 'auto',
      downlinkKbps: null,
      estimated: null,
      viewers: null,
      mode: null,
      latencyMs: null,
      playingDate: null,
    };
  }
}
