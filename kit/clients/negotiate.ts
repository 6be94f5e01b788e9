/**
 * WHIP and WHEP signalling of the libwebrtc client: one offer POSTed, one answer set, and the
 * connection's state reported.
 */
import { sleep } from '../stats.ts';
import { elapsed, emit } from './lines.ts';
import { h264Offer, receiveOnlyAnswer, receiveOnlyOffer, withoutHeaderExtensions } from './sdp.ts';

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
  /** performance.now() when the offer was POSTed and when the answer came back. */
  postedAt: number;
  answeredAt: number;
}

export interface NegotiateOptions {
  /** A viewer (WHEP): it offers no header extensions (sdp.ts withoutHeaderExtensions). */
  receiving: boolean;
  token?: string;
  /** A viewer that receives but does not decode (sdp.ts receiveOnlyOffer). */
  receiveOnly?: boolean;
  /** A receive-only viewer that offers the server H.264 rather than VP8 (sdp.ts h264Offer). */
  h264?: boolean;
}

/**
 * POSTs `pc`'s offer to `url` and, when it answers 201, sets the answer. Any other status is
 * returned as it is, with the answer unset. No waiting for ICE gathering: mediasoup is ICE-lite and
 * learns our address from our checks.
 */
export async function negotiate(pc: any, url: string, options: NegotiateOptions): Promise<Answer> {
  const offer = (await pc.createOffer()).sdp as string;
  const sent = options.receiving ? withoutHeaderExtensions(offer) : offer;
  await pc.setLocalDescription({ type: 'offer', sdp: options.receiveOnly ? receiveOnlyOffer(sent) : sent });
  const headers: Record<string, string> = { 'content-type': 'application/sdp' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.h264 && !options.receiveOnly) throw new Error('an H.264 offer is for a receive-only viewer: this libwebrtc decodes no H.264');
  // A receive-only viewer shows the server the offer with VP8 in it (or H.264 in its place).
  const shown = options.receiveOnly ? (options.h264 ? h264Offer(sent) : sent) : pc.localDescription.sdp;
  const postedAt = performance.now();
  const res = await fetch(url, { method: 'POST', headers, body: shown });
  const body = await res.text();
  const answeredAt = performance.now();
  const header = res.headers.get('location');
  const answer: Answer = { status: res.status, location: header === null ? null : new URL(header, res.url).toString(), body, postedAt, answeredAt };
  if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: options.receiveOnly ? receiveOnlyAnswer(body, sent, options.h264 ? 'H264' : 'VP8') : body });
  return answer;
}

/** The `answer` line: status and session URL, and the body when it is not 201. */
export function reportAnswer(answer: Answer, data: Record<string, unknown> = {}): void {
  emit('answer', { ...data, status: answer.status, location: answer.location, ...(answer.status === 201 ? {} : { body: answer.body }) });
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
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'connected' && options.connected !== false) emit('connected', { ...data, ms: elapsed() });
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') emit('ended', { ...data, state: pc.connectionState, ms: elapsed() });
  };
}
