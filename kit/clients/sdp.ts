/**
 * The libwebrtc client's changes to SDP, made on the parsed description (sdp-transform, as
 * media/sdp.ts does) rather than on its text: what a viewer offers, and for a receive-only viewer,
 * what it sets as its own offer and the answer it takes.
 */
import * as sdpTransform from 'sdp-transform';
import type { MediaDescription, SessionDescription } from 'sdp-transform';

function edit(sdp: string, change: (session: SessionDescription) => void): string {
  const session = sdpTransform.parse(sdp);
  change(session);
  // libwebrtc writes "a=msid-semantic: WMS" naming no stream; sdp-transform reads that as an empty
  // semantic and would write "a=msid-semantic:  WMS" back. It tells a receiver nothing: dropped.
  if (session.msidSemantic && !session.msidSemantic.semantic) delete session.msidSemantic;
  return sdpTransform.write(session);
}

/**
 * A viewer's offer without RTP header extensions. This libwebrtc reads RTP header extensions by
 * the ids it offered, whatever the answer says; mediasoup writes its own ids (a viewer's MID id
 * may be mediasoup's abs-send-time), so a viewer offers none. Chromium follows the answer and
 * needs no such change.
 */
export function withoutHeaderExtensions(sdp: string): string {
  return edit(sdp, (session) => {
    delete session.ext;
    for (const media of session.media) delete media.ext;
  });
}

// A receive-only viewer: the server is offered VP8 and sends it on VP8's payload type, but this
// libwebrtc is set up (its local offer with VP8 taken out, the answer it is given with VP8's
// payload type turned into VP9's) to expect VP9 there only. Every packet still arrives, is
// decrypted, feeds the RTP receive statistics (received, lost, bytes: what we read) and the RTCP
// receiver reports, and is then dropped as an unexpected payload type instead of being
// depacketized and decoded. Decoding is the viewer's device's work, not the server's; in this
// process it would cost many times the server's CPU per viewer.

function editVideo(sdp: string, change: (video: MediaDescription) => void): string {
  return edit(sdp, (session) => {
    for (const media of session.media) if (media.type === 'video') change(media);
  });
}

const payloadsOf = (video: MediaDescription, codec: string): number[] => video.rtp.filter((r) => r.codec.toUpperCase() === codec).map((r) => r.payload);

/** The local offer of a receive-only viewer: no VP8, and no RTX for it. */
export function receiveOnlyOffer(offer: string): string {
  return editVideo(offer, (video) => {
    const vp8 = payloadsOf(video, 'VP8');
    const rtx = video.fmtp.filter((f) => vp8.includes(Number(sdpTransform.parseParams(f.config).apt))).map((f) => f.payload);
    const gone = new Set([...vp8, ...rtx]);
    video.payloads = sdpTransform.parsePayloads(video.payloads ?? '').filter((pt) => !gone.has(pt)).join(' ');
    video.rtp = video.rtp.filter((r) => !gone.has(r.payload));
    video.fmtp = video.fmtp.filter((f) => !gone.has(f.payload));
    video.rtcpFb = video.rtcpFb?.filter((f) => !gone.has(Number(f.payload)));
  });
}

/** profile-level-id of H.264 Constrained Baseline, level 3.1: what an RTMP publish passes through as (origin/RtmpBridge.ts). */
const H264_CONSTRAINED_BASELINE = '42e01f';

/**
 * The offer a receive-only viewer shows the server to be sent a stream's H.264 as it is (an RTMP
 * publish passed through): VP8's payload type offered as H.264 Constrained Baseline, with VP8's
 * feedback and RTX. This libwebrtc has no H.264 decoder and offers none; a receive-only viewer
 * decodes nothing anyway, so what it counts is the same. Without VP8 in the offer the server
 * sends the H.264 itself, not a VP8 rendition.
 */
export function h264Offer(offer: string): string {
  return editVideo(offer, (video) => {
    const vp8 = payloadsOf(video, 'VP8')[0];
    if (vp8 === undefined) throw new Error('receive-only: this libwebrtc offers no VP8');
    for (const r of video.rtp) if (r.payload === vp8) r.codec = 'H264';
    video.fmtp = [...video.fmtp.filter((f) => f.payload !== vp8), { payload: vp8, config: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${H264_CONSTRAINED_BASELINE}` }];
  });
}

/**
 * A WHEP counter-offer (the edge's offer after a 406) as a receive-only viewer's answering
 * PeerConnection takes it: the server's video (`codec`) named VP9 on the server's own payload
 * types, without its fmtp, so that libwebrtc answers VP9 there and drops every packet undecoded
 * (receiveOnlyAnswer's trick, from the answering side). The probe stream's borrowed video codec
 * (media/sdp.ts buildCounterOffer) is renamed with the rest. Without generic NACK: libwebrtc's
 * NACK module sees only the packets its VP9 parser takes, and on the lower simulcast layers it
 * takes some of VP8's and not others, so it asked for 15–20 retransmissions a second of packets it
 * had received (seen on the 135- and 270-line layers; none on the top layer), which the edge sent,
 * and which took as much of the estimate as the media.
 */
export function receiveOnlyCounterOffer(offer: string, codec: 'VP8' | 'H264' = 'VP8'): string {
  return editVideo(offer, (video) => {
    const renamed = new Set(payloadsOf(video, codec));
    for (const r of video.rtp) if (renamed.has(r.payload)) r.codec = 'VP9';
    video.fmtp = video.fmtp.filter((f) => !renamed.has(f.payload));
    video.rtcpFb = video.rtcpFb?.filter((f) => !(renamed.has(Number(f.payload)) && f.type === 'nack' && f.subtype === undefined));
  });
}

/**
 * The answer to a counter-offer that a receive-only viewer PATCHes to the server: what its
 * PeerConnection answered to receiveOnlyCounterOffer, with VP9 named back as the server's `codec`
 * and given the fmtp the server offered for that payload type (`offer`: the counter-offer as it
 * came), so that the server reads an answer to the offer it made.
 */
export function counterOfferAnswerShown(answer: string, offer: string, codec: 'VP8' | 'H264' = 'VP8'): string {
  const offered = sdpTransform.parse(offer).media;
  return edit(answer, (session) => {
    for (const video of session.media) {
      if (video.type !== 'video') continue;
      const fmtp = offered.find((m) => String(m.mid) === String(video.mid))?.fmtp ?? [];
      const renamed = new Set(payloadsOf(video, 'VP9'));
      for (const r of video.rtp) if (renamed.has(r.payload)) r.codec = codec;
      video.fmtp = [...video.fmtp.filter((f) => !renamed.has(f.payload)), ...fmtp.filter((f) => renamed.has(f.payload))];
    }
  });
}

/**
 * The answer a receive-only viewer takes: the server's video (`codec`: VP8, or H.264 after
 * h264Offer) announced as VP9 on the payload type VP9 has in `offer`.
 */
export function receiveOnlyAnswer(answer: string, offer: string, codec: 'VP8' | 'H264' = 'VP8'): string {
  const vp9 = sdpTransform.parse(offer).media.find((m) => m.type === 'video');
  const to = vp9 && payloadsOf(vp9, 'VP9')[0];
  if (to === undefined) throw new Error('receive-only: this libwebrtc offers no VP9');
  return editVideo(answer, (video) => {
    const from = payloadsOf(video, codec)[0];
    if (from === undefined) return;
    video.payloads = sdpTransform.parsePayloads(video.payloads ?? '').map((pt) => (pt === from ? to : pt)).join(' ');
    for (const r of video.rtp) if (r.payload === from) Object.assign(r, { payload: to, codec: 'VP9' });
    for (const f of video.fmtp) if (f.payload === from) f.payload = to;
    for (const f of video.rtcpFb ?? []) if (Number(f.payload) === from) f.payload = to;
  });
}

/** Payload types an offer may use for a dynamic codec (RFC 3551): where a new one is found. */
const DYNAMIC_PAYLOAD_TYPES = { first: 96, last: 127 };

/** The video section's `from` payload type renamed `to` (codec name and all; RTX's apt follows). */
function renamePayload(video: MediaDescription, from: number, to: number, codec: string): void {
  video.payloads = sdpTransform.parsePayloads(video.payloads ?? '').map((pt) => (pt === from ? to : pt)).join(' ');
  for (const r of video.rtp) if (r.payload === from) Object.assign(r, { payload: to, codec });
  for (const f of video.fmtp) {
    if (f.payload === from) f.payload = to;
    f.config = f.config.replace(new RegExp(`\\bapt=${from}\\b`), `apt=${to}`);
  }
  for (const f of video.rtcpFb ?? []) if (Number(f.payload) === from) f.payload = to;
}

/**
 * A receive-only viewer of a server that makes the offer (Janus) rather than answering ours: the
 * offer this libwebrtc is given has the server's VP8 turned into VP9 on a payload type the offer
 * does not use, so that the VP8 packets arrive on a payload type it does not expect and are counted,
 * then dropped, as above. `answer` turns its answer's VP9 back into the server's VP8: what the
 * server is shown.
 */
export function receiveOnlyServerOffer(offer: string): { offer: string; answer(sdp: string): string } {
  const used = new Set(sdpTransform.parse(offer).media.flatMap((m) => m.rtp.map((r) => r.payload)));
  let vp8: number | undefined;
  let unused = DYNAMIC_PAYLOAD_TYPES.first;
  while (used.has(unused)) unused++;
  if (unused > DYNAMIC_PAYLOAD_TYPES.last) throw new Error('receive-only: no payload type left for the stand-in VP9');
  const changed = editVideo(offer, (video) => {
    vp8 = payloadsOf(video, 'VP8')[0];
    if (vp8 !== undefined) renamePayload(video, vp8, unused, 'VP9');
  });
  if (vp8 === undefined) throw new Error('receive-only: the server offers no VP8');
  return {
    offer: changed,
    answer: (sdp) =>
      editVideo(sdp, (video) => {
        // The stand-in's VP9 parameters (profile-id) mean nothing for VP8.
        video.fmtp = video.fmtp.filter((f) => f.payload !== unused);
        renamePayload(video, unused, vp8!, 'VP8');
      }),
  };
}
