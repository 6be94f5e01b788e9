/**
 * The one stats report of the libwebrtc client: a PeerConnection's RTP counters (getStats()), per
 * kind, in the shape every command reports them from.
 */
import { PROBE_MID } from '../../media/sdp.ts';

/**
 * An inbound-rtp stat of the viewer's media: audio or video, but not the stream of bandwidth
 * probes a counter-offer adds (mid PROBE_MID: padding mediasoup sends to measure the link, no
 * picture).
 */
export function isMediaInbound(s: any): boolean {
  return s.type === 'inbound-rtp' && (s.kind === 'audio' || s.kind === 'video') && s.mid !== PROBE_MID;
}

/** inbound-rtp counters, summed over a kind's streams (0 where libwebrtc gives none). */
export interface Inbound {
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  nackCount: number;
  pliCount: number;
  firCount: number;
  framesDecoded: number;
  keyFramesDecoded: number;
  /** libwebrtc's own per-frame timings, summed since the start (seconds). */
  totalProcessingDelay: number;
  jitterBufferDelay: number;
  jitterBufferEmittedCount: number;
  totalDecodeTime: number;
}

const INBOUND_KEYS = [
  'packetsReceived', 'packetsLost', 'bytesReceived', 'nackCount', 'pliCount', 'firCount', 'framesDecoded', 'keyFramesDecoded',
  'totalProcessingDelay', 'jitterBufferDelay', 'jitterBufferEmittedCount', 'totalDecodeTime',
] as const satisfies ReadonlyArray<keyof Inbound>;

const zero = (): Inbound => Object.fromEntries(INBOUND_KEYS.map((k) => [k, 0])) as unknown as Inbound;

/** What a viewer's PeerConnection received, audio and video apart. */
export async function inbound(pc: any): Promise<{ audio: Inbound; video: Inbound }> {
  const out = { audio: zero(), video: zero() };
  (await pc.getStats()).forEach((s: any) => {
    if (!isMediaInbound(s)) return;
    const into = out[s.kind as 'audio' | 'video'];
    for (const key of INBOUND_KEYS) into[key] += s[key] ?? 0;
  });
  return out;
}

/** What a publisher's PeerConnection sent of its video (outbound-rtp), stamped with the time read. */
export async function outboundVideo(pc: any): Promise<Record<string, number | null>> {
  let out: any = {};
  (await pc.getStats()).forEach((s: any) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out = s;
  });
  return {
    bytesSent: out.bytesSent ?? 0,
    framesEncoded: out.framesEncoded ?? 0,
    keyFramesEncoded: out.keyFramesEncoded ?? 0,
    pliCount: out.pliCount ?? 0,
    frameWidth: out.frameWidth ?? null,
    totalEncodeTime: out.totalEncodeTime ?? null,
    totalPacketSendDelay: out.totalPacketSendDelay ?? null,
    packetsSent: out.packetsSent ?? 0,
    at: Date.now(),
  };
}
