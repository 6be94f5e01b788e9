/**
 * WHIP and WHEP signalling of the libwebrtc client: one offer POSTed, one answer set (or a WHEP
 * counter-offer answered), and the connection's state reported.
 */
import { sleep } from '../stats.ts';
import { elapsed, emit } from './lines.ts';
import { counterOfferAnswerShown, h264Offer, receiveOnlyAnswer, receiveOnlyCounterOffer, receiveOnlyOffer, withoutHeaderExtensions } from './sdp.ts';

/**
 * How long a publisher or a viewer may take to connect (ICE and DTLS) after its answer. On a
 * machine starved by other work a join can miss it; a viewer then tries again (view.ts JOIN_TRIES).
 */
export const CONNECT_TIMEOUT_MS = 20_000;

export interface Answer {
  status: number;
  /** The session's URL (Location), resolved against the URL that answered (after any 307); null if none. */
  location: string | null;
  body: string;
  /**
   * performance.now() when the offer was POSTed and when the answer came back (after a
   * counter-offer: when the PATCH of our answer came back, signalling done).
   */
  postedAt: number;
  answeredAt: number;
  /**
   * The POST answered 406 with the server's offer (WHEP counter-offer) and we answered it: the
   * PATCH's status and body, and the PeerConnection that answered, which replaces the one that
   * offered (closed).
   */
  counterOffer?: { status: number; body: string; pc: any };
}

/** The session is set up: the offer answered (201), or the server's counter-offer answered and the answer taken (204). */
export function accepted(answer: Answer): boolean {
  return answer.counterOffer ? answer.counterOffer.status === 204 : answer.status === 201;
}

export interface NegotiateOptions {
  /** A viewer (WHEP): it offers no header extensions (sdp.ts withoutHeaderExtensions). */
  receiving: boolean;
  token?: string;
  /** A viewer that receives but does not decode (sdp.ts receiveOnlyOffer). */
  receiveOnly?: boolean;
  /** A receive-only viewer that offers the server H.264 rather than VP8 (sdp.ts h264Offer). */
  h264?: boolean;
  /**
   * A viewer that takes a WHEP counter-offer: it asks for one (`Prefer: counter-offer`) and shows
   * the server its header extensions (transport-cc among them: the edge counter-offers only then,
   * with the extensions at its media server's ids, and estimates the viewer's link). A 406 with
   * an offer is answered by the PeerConnection this makes, not by the one that offered: like
   * Chromium, libwebrtc keeps the extension ids of a connection's first description (see
   * withoutHeaderExtensions), and the edge's differ.
   */
  counterOffer?: () => any;
}

/**
 * POSTs `pc`'s offer to `url` and, when it answers 201, sets the answer; when it answers 406 with
 * an offer of its own and `counterOffer` was asked for, answers that (answerCounterOffer). Any
 * other status is returned as it is, with the answer unset. No waiting for ICE gathering:
 * mediasoup is ICE-lite and learns our address from our checks.
 */
export async function negotiate(pc: any, url: string, options: NegotiateOptions): Promise<Answer> {
  const offer = (await pc.createOffer()).sdp as string;
  const sent = options.receiving ? withoutHeaderExtensions(offer) : offer;
  await pc.setLocalDescription({ type: 'offer', sdp: options.receiveOnly ? receiveOnlyOffer(sent) : sent });
  const headers: Record<string, string> = { 'content-type': 'application/sdp' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.counterOffer) headers.prefer = 'counter-offer';
  if (options.h264 && !options.receiveOnly) throw new Error('an H.264 offer is for a receive-only viewer: this libwebrtc decodes no H.264');
  // A receive-only viewer shows the server the offer with VP8 in it (or H.264 in its place); one
  // that takes a counter-offer shows it with its header extensions.
  const described = options.counterOffer ? offer : options.receiveOnly ? sent : pc.localDescription.sdp;
  const shown = options.receiveOnly && options.h264 ? h264Offer(described) : described;
  const postedAt = performance.now();
  const res = await fetch(url, { method: 'POST', headers, body: shown });
  const body = await res.text();
  const header = res.headers.get('location');
  const answer: Answer = { status: res.status, location: header === null ? null : new URL(header, res.url).toString(), body, postedAt, answeredAt: performance.now() };
  const codec = options.h264 ? 'H264' : 'VP8';
  if (options.counterOffer && res.status === 406 && /^application\/sdp/i.test(res.headers.get('content-type') ?? '')) {
    answer.counterOffer = await answerCounterOffer(options.counterOffer(), answer, res.headers.get('etag'), { ...options, codec });
    answer.answeredAt = performance.now();
    pc.close();
  } else if (res.status === 201) {
    // Our local offer has no header extensions (withoutHeaderExtensions): the answer may not either.
    const taken = options.counterOffer ? withoutHeaderExtensions(body) : body;
    await pc.setRemoteDescription({ type: 'answer', sdp: options.receiveOnly ? receiveOnlyAnswer(taken, sent, codec) : taken });
  }
  return answer;
}

/**
 * Answers the server's counter-offer (`answer.body`) in `fresh`, a new PeerConnection, and PATCHes
 * the answer to the session (`If-Match`: its ETag), as the web player does
 * (player/relaycast-player.js #answerCounterOffer). A receive-only viewer answers it as
 * receiveOnlyCounterOffer makes it, and PATCHes counterOfferAnswerShown.
 */
async function answerCounterOffer(fresh: any, answer: Answer, etag: string | null, options: NegotiateOptions & { codec: 'VP8' | 'H264' }): Promise<NonNullable<Answer['counterOffer']>> {
  try {
    if (!answer.location) throw new Error('the counter-offer came without a session URL (Location)');
    await fresh.setRemoteDescription({ type: 'offer', sdp: options.receiveOnly ? receiveOnlyCounterOffer(answer.body, options.codec) : answer.body });
    await fresh.setLocalDescription(await fresh.createAnswer());
    const local = fresh.localDescription.sdp as string;
    const headers: Record<string, string> = { 'content-type': 'application/sdp', 'if-match': etag ?? '*' };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const res = await fetch(answer.location, { method: 'PATCH', headers, body: options.receiveOnly ? counterOfferAnswerShown(local, answer.body, options.codec) : local });
    return { status: res.status, body: await res.text(), pc: fresh };
  } catch (error) {
    fresh.close();
    throw error;
  }
}

/**
 * The `answer` line: status and session URL (after a counter-offer: `counterOffer`, the PATCH's
 * status), and the body when the session was not set up.
 */
export function reportAnswer(answer: Answer, data: Record<string, unknown> = {}): void {
  const patch = answer.counterOffer;
  emit('answer', {
    ...data,
    status: answer.status,
    location: answer.location,
    ...(patch ? { counterOffer: patch.status } : {}),
    ...(accepted(answer) ? {} : { body: patch ? patch.body : answer.body }),
  });
}

/** Waits until `pc` is connected; throws if it fails, closes, or takes longer than `timeoutMs`. */
export async function waitConnected(pc: any, timeoutMs = CONNECT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pc.connectionState !== 'connected') {
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') throw new Error(`connection ${pc.connectionState}`);
    if (Date.now() > deadline) throw new Error(`not connected after ${timeoutMs} ms (${pc.connectionState})`);
    await sleep(20);
  }
}

/**
 * Reports `pc`'s connection as lines: `connected` when it connects (unless `connected: false`),
 * `ended` when it fails or closes, each with `ms` since the client started.
 */
export function reportConnection(pc: any, data: Record<string, unknown> = {}, options: { connected?: boolean } = {}): void {
  const report = () => {
    if (pc.connectionState === 'connected' && options.connected !== false) emit('connected', { ...data, ms: elapsed() });
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') emit('ended', { ...data, state: pc.connectionState, ms: elapsed() });
  };
  pc.onconnectionstatechange = report;
  // A counter-offer's PeerConnection can connect before its PATCH is answered, and so before this.
  if (pc.connectionState === 'connected') report();
}
