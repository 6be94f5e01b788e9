import * as sdpTransform from 'sdp-transform';
import type { MediaAttributes, MediaDescription, SessionDescription } from 'sdp-transform';
import type {
  DtlsParameters,
  IceCandidate,
  IceParameters,
  MediaKind,
  RtpCapabilities,
  RtpCodecCapability,
  RtpCodecParameters,
  RtpHeaderExtension,
  RtpHeaderExtensionParameters,
  RtpParameters,
  RouterRtpCodecCapability,
} from 'mediasoup/types';
import { getProducerRtpParametersMapping } from 'mediasoup/ortc';
import { InvalidSdpError } from '../core/errors.ts';
import { Profile } from 'h264-profile-level-id';
import { canDecode, describeProfile, h264Profile } from './h264.ts';

/**
 * SDP ⇄ mediasoup RTP parameters, for WHIP (the client sends) and WHEP (the client receives).
 * Offers are parsed with sdp-transform and answers written with it; mediasoup's own ORTC rules
 * decide what a router can take. mediasoup is ICE-lite and takes the DTLS server role, so answers
 * carry `a=ice-lite` and `a=setup:passive`. A WHEP counter-offer (buildCounterOffer) is the other
 * way round: the edge offers (`a=setup:actpass`) and parseAnswer reads the client's answer.
 */

export interface OfferSection {
  mid: string;
  kind: MediaKind;
  direction: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
  media: MediaDescription;
}

export interface Offer {
  session: SessionDescription;
  sections: Array<OfferSection | { mid: string; kind: string; media: MediaDescription; unsupported: true }>;
  /** The client's DTLS parameters (the DTLS client, but for an answer with setup:passive). */
  dtlsParameters: DtlsParameters;
  iceUfrag: string;
  icePwd: string;
}

const MAX_SECTIONS = 16;

/** The hash functions of RFC 8122 that mediasoup (and every browser) knows for DTLS fingerprints. */
const FINGERPRINT_ALGORITHMS = new Set(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']);
const FINGERPRINT_HASH = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+$/;

/**
 * sdp-transform is a tolerant parser: it turns what looks like a number into one ("a=rtpmap:96
 * 0/90000" gives the codec name 0) and leaves empty what is missing. Everything the media layer
 * reads is checked here, once, so that a malformed offer is a 400 and never a TypeError deeper
 * down (found by fuzzing).
 */
/**
 * An a=mid: an SDP token (RFC 5888, RFC 4566) of at most 8 characters. 8: what mediasoup 3.32
 * lets a consumer's MID header extension carry in each packet (it refuses more); browsers use
 * "0", "1", and GStreamer "video0". A longer one is refused here, with a 400, on any version.
 */
const MID_MAX_LENGTH = 8;
const MID = new RegExp(`^[!#$%&'*+\\-.0-9A-Z^_\`a-z{|}~]{1,${MID_MAX_LENGTH}}$`);

function checkSection(m: MediaDescription, mid: string, ssrcs: Set<number>): void {
  const bad = (what: string) => new InvalidSdpError(`media section ${mid}: ${what}`);
  for (const rtp of m.rtp) {
    if (!Number.isInteger(rtp.payload) || rtp.payload < 0 || rtp.payload > 127) throw bad(`payload type ${String(rtp.payload)} is not 0-127`);
    rtp.codec = String(rtp.codec ?? '');
    if (!/^[A-Za-z0-9_.-]+$/.test(rtp.codec)) throw bad(`a=rtpmap:${rtp.payload} has no codec name`);
    if (rtp.rate !== undefined && (!Number.isInteger(rtp.rate) || rtp.rate <= 0)) throw bad(`a=rtpmap:${rtp.payload} has clock rate ${String(rtp.rate)}`);
    if (rtp.encoding !== undefined && (!Number.isInteger(Number(rtp.encoding)) || Number(rtp.encoding) <= 0)) throw bad(`a=rtpmap:${rtp.payload} has ${String(rtp.encoding)} channels`);
  }
  for (const fb of m.rtcpFb ?? []) {
    fb.type = String(fb.type ?? '');
    if (fb.subtype !== undefined) fb.subtype = String(fb.subtype);
    if (fb.type === '') throw bad(`a=rtcp-fb:${String(fb.payload)} has no feedback type`);
  }
  // Every SSRC once in the whole offer: the worker refuses a second stream on one SSRC.
  const announced = new Set<number>((m.ssrcs ?? []).map((x) => Number(x.id)));
  for (const group of m.ssrcGroups ?? []) {
    const members = String(group.ssrcs).split(/\s+/).filter(Boolean).map(Number);
    if (new Set(members).size !== members.length) throw bad(`a=ssrc-group:${group.semantics} names one SSRC twice`);
    for (const ssrc of members) announced.add(ssrc);
  }
  for (const ssrc of announced) {
    if (!Number.isInteger(ssrc) || ssrc < 0 || ssrc > 0xffffffff) throw bad(`SSRC ${ssrc} is not a 32-bit number`);
    if (ssrcs.has(ssrc)) throw bad(`SSRC ${ssrc} is announced by another media section too`);
    ssrcs.add(ssrc);
  }
}

export function parseOffer(text: string): Offer {
  return parseDescription(text, 'offer');
}

/**
 * A client's answer to a counter-offer (buildCounterOffer), read as an offer is: its DTLS
 * fingerprint and role, ICE credentials, and sections by mid. `a=setup:passive` is allowed here
 * (the client then waits for the edge's DTLS handshake).
 */
export function parseAnswer(text: string): Offer {
  return parseDescription(text, 'answer');
}

function parseDescription(text: string, type: 'offer' | 'answer'): Offer {
  if (!/^v=0\r?\n/.test(text)) throw new InvalidSdpError(`the body is not an SDP ${type} (it must start with "v=0")`);
  let session: SessionDescription;
  try {
    session = sdpTransform.parse(text);
  } catch (error) {
    throw new InvalidSdpError(`the SDP could not be parsed: ${(error as Error).message}`);
  }
  const media = session.media ?? [];
  if (media.length === 0) throw new InvalidSdpError(`the ${type} has no media section`);
  if (media.length > MAX_SECTIONS) throw new InvalidSdpError(`the ${type} has more than ${MAX_SECTIONS} media sections`);

  const fingerprint = session.fingerprint ?? media.find((m) => m.fingerprint)?.fingerprint;
  if (!fingerprint) throw new InvalidSdpError(`the ${type} has no DTLS fingerprint`);
  const algorithm = String(fingerprint.type ?? '').toLowerCase();
  if (!FINGERPRINT_ALGORITHMS.has(algorithm)) throw new InvalidSdpError(`unknown DTLS fingerprint algorithm "${algorithm}"`);
  if (!FINGERPRINT_HASH.test(String(fingerprint.hash ?? ''))) throw new InvalidSdpError('the DTLS fingerprint is not colon-separated hex');
  const iceUfrag = session.iceUfrag ?? media[0]!.iceUfrag;
  const icePwd = session.icePwd ?? media[0]!.icePwd;
  if (!iceUfrag || !icePwd) throw new InvalidSdpError(`the ${type} has no ICE credentials`);
  const setup = media[0]!.setup ?? session.setup;
  if (type === 'offer' && setup === 'passive') throw new InvalidSdpError('the offer must let the server take the DTLS server role (setup:actpass or active)');
  if (type === 'answer' && setup !== 'active' && setup !== 'passive') throw new InvalidSdpError('the answer must take a DTLS role (setup:active or passive)');

  const mids = new Set<string>();
  const ssrcs = new Set<number>();
  const bundled = new Set((session.groups ?? []).filter((g) => g.type === 'BUNDLE').flatMap((g) => String(g.mids).split(/\s+/)));
  const sections: Offer['sections'] = media.map((m, index) => {
    const mid = m.mid === undefined ? undefined : String(m.mid);
    if (mid === undefined) throw new InvalidSdpError(`media section ${index} has no a=mid`);
    if (!MID.test(mid)) throw new InvalidSdpError(`media section ${index}: a=mid must be 1 to ${MID_MAX_LENGTH} token characters (RFC 5888), each packet carries it`);
    if (mids.has(mid)) throw new InvalidSdpError(`a=mid:${mid} appears twice`);
    mids.add(mid);
    // Port 0 rejects a section, except one marked bundle-only in the offer's BUNDLE group (RFC 8843
    // 6.1): it shares the transport of the group and is as live as any other (GStreamer offers so).
    const live = m.port !== 0 || (m.bundleOnly !== undefined && bundled.has(mid));
    if ((m.type !== 'audio' && m.type !== 'video') || !/SAVPF/.test(m.protocol) || !live) {
      return { mid, kind: m.type, media: m, unsupported: true as const };
    }
    if (!Array.isArray(m.rtp) || m.rtp.length === 0) throw new InvalidSdpError(`media section ${mid} lists no codecs`);
    checkSection(m, mid, ssrcs);
    return { mid, kind: m.type, direction: (m.direction ?? 'sendrecv') as OfferSection['direction'], media: m };
  });
  return {
    session,
    sections,
    dtlsParameters: {
      role: setup === 'passive' ? 'server' : 'client',
      fingerprints: [{ algorithm: algorithm as 'sha-256', value: String(fingerprint.hash) }],
    },
    iceUfrag,
    icePwd,
  };
}

export function isSupported(section: Offer['sections'][number]): section is OfferSection {
  return !('unsupported' in section);
}

/** fmtp values as mediasoup wants them: numbers where numeric, except ids that only look numeric. */
function fmtpParameters(media: MediaDescription, payload: number): Record<string, string | number> {
  const config = media.fmtp?.find((f) => f.payload === payload)?.config;
  const parameters: Record<string, string | number> = {};
  for (const pair of config?.split(';') ?? []) {
    const [key, value] = pair.split('=').map((s) => s.trim());
    if (!key || value === undefined) continue;
    parameters[key] = /^\d+$/.test(value) && key !== 'profile-level-id' ? Number(value) : value;
  }
  return parameters;
}

function rtcpFeedback(media: MediaDescription, payload: number) {
  return (media.rtcpFb ?? [])
    .filter((fb) => String(fb.payload) === String(payload) || fb.payload === '*')
    .map((fb) => ({ type: fb.type, parameter: fb.subtype ?? '' }));
}

function codecOf(kind: MediaKind, media: MediaDescription, rtp: MediaAttributes['rtp'][number]): RtpCodecParameters {
  return {
    mimeType: `${kind}/${rtp.codec}`,
    payloadType: rtp.payload,
    clockRate: rtp.rate ?? 90000,
    ...(kind === 'audio' ? { channels: rtp.encoding ?? 1 } : {}),
    parameters: fmtpParameters(media, rtp.payload),
    rtcpFeedback: rtcpFeedback(media, rtp.payload),
  };
}

/** Offered payload types in the client's order of preference. */
function offeredRtp(media: MediaDescription): MediaAttributes['rtp'] {
  const order = String(media.payloads ?? '')
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
  return [...media.rtp].sort((a, b) => order.indexOf(a.payload) - order.indexOf(b.payload));
}

function headerExtensions(section: OfferSection, routerCaps: RtpCapabilities): RtpHeaderExtensionParameters[] {
  const known = new Set(routerCaps.headerExtensions?.filter((e) => e.kind === section.kind).map((e) => e.uri));
  return (section.media.ext ?? [])
    .filter((e) => known.has(e.uri as never))
    .map((e) => ({ uri: e.uri as RtpHeaderExtensionParameters['uri'], id: e.value }));
}

/**
 * Codecs that Chromium, Firefox and Safari all receive: Opus, VP8, and H.264 Constrained Baseline
 * in packetization-mode 1 (Firefox offers no other H.264 profile, Safari no Baseline or Main).
 */
function playsEverywhere(codec: RtpCodecParameters): boolean {
  const name = codec.mimeType.toLowerCase();
  if (name === 'video/h264') return Number(codec.parameters?.['packetization-mode']) === 1 && h264Profile(codec.parameters?.['profile-level-id']) === Profile.ConstrainedBaseline;
  return name === 'audio/opus' || name === 'video/vp8';
}

/**
 * The temporal layers a simulcast publisher may put in each layer, by codec. Chromium's VP8
 * simulcast sends three (L1T3) and names none in SDP; a producer that declares none makes
 * mediasoup forward temporal layer 0 alone, a quarter of the frames. Declaring three when the
 * publisher sends fewer costs nothing: every packet is at or below layer 2.
 */
const SIMULCAST_TEMPORAL_LAYERS: Record<string, string> = { 'video/vp8': 'L1T3' };

/**
 * What a publisher's m-section sends, as mediasoup Producer parameters: the first offered codec
 * that the router takes (those every browser plays first, see playsEverywhere; otherwise in the
 * client's order), with its RTX, and the SSRCs the offer announces. Undefined when the router
 * takes none of the offered codecs.
 */
export function producerParameters(section: OfferSection, routerCaps: RtpCapabilities): RtpParameters | undefined {
  const { media, kind } = section;
  const ssrcGroup = media.ssrcGroups?.find((g) => g.semantics === 'FID');
  const [primary, rtxSsrc] = ssrcGroup ? ssrcGroup.ssrcs.split(/\s+/).map(Number) : [media.ssrcs?.[0]?.id, undefined];
  const cname = media.ssrcs?.find((s) => s.attribute === 'cname')?.value;
  const rids = (media.rids ?? []).filter((r) => r.direction === 'send');
  if (primary === undefined && rids.length === 0) {
    throw new InvalidSdpError(`media section ${section.mid} announces neither a=ssrc nor a=rid`);
  }

  // Codecs every browser decodes first, in the client's order, then the rest: the answer decides
  // what the publisher sends, and a stream in one of these plays to every viewer as it is.
  const candidates = offeredRtp(media).filter((rtp) => !/^(rtx|red|ulpfec|flexfec-03|telephone-event|CN)$/i.test(rtp.codec));
  const universal = (rtp: MediaAttributes['rtp'][number]) => playsEverywhere(codecOf(kind, media, rtp));
  for (const rtp of [...candidates.filter(universal), ...candidates.filter((r) => !universal(r))]) {
    const codec = codecOf(kind, media, rtp);
    const rtx = media.rtp.find((r) => r.codec.toLowerCase() === 'rtx' && fmtpParameters(media, r.payload).apt === rtp.payload);
    const codecs = [codec];
    if (rtx) codecs.push({ mimeType: `${kind}/rtx`, payloadType: rtx.payload, clockRate: rtx.rate ?? 90000, parameters: { apt: rtp.payload }, rtcpFeedback: [] });
    const rtpParameters: RtpParameters = {
      mid: section.mid,
      codecs,
      headerExtensions: headerExtensions(section, routerCaps),
      encodings:
        rids.length > 0
          ? rids.map((r) => ({ rid: String(r.id), ...(SIMULCAST_TEMPORAL_LAYERS[codec.mimeType.toLowerCase()] ? { scalabilityMode: SIMULCAST_TEMPORAL_LAYERS[codec.mimeType.toLowerCase()] } : {}) }))
          : [{ ssrc: Number(primary), ...(rtx && rtxSsrc !== undefined ? { rtx: { ssrc: rtxSsrc } } : {}) }],
      rtcp: { cname, reducedSize: media.rtcpRsize === 'rtcp-rsize' },
    };
    try {
      getProducerRtpParametersMapping(rtpParameters, routerCaps);
      return rtpParameters;
    } catch {
      // Not a codec this router takes: try the client's next choice.
    }
  }
  return undefined;
}

/**
 * The client's codec for this section's kind of the stream: for the first of the codecs the stream
 * arrives with (`stream`, one per producer: the publisher's, then any rendition) that the client
 * can receive, the client's first codec that receives it, with the client's payload type. mediasoup
 * consumers send with their router's payload types, and a WHEP client, being the offerer, expects
 * its own, so each viewer's router is made with these (see receivableCodecs).
 *
 * H.264 is matched by what the viewer can decode (media/h264.ts), not by equal profiles as
 * mediasoup would: the client's codec is listed under the stream's profile-level-id, so that
 * mediasoup pipes the stream to it; the answer then names the client's own profile-level-id again
 * (answerParameters). VP9 and AV1 must agree on their profile.
 */
function viewerCodecs(section: OfferSection, stream: RtpCodecParameters[]): RtpCodecParameters[] {
  const { media, kind } = section;
  const offered = offeredRtp(media).map((rtp) => codecOf(kind, media, rtp)).filter(forwardable);
  for (const wanted of stream) {
    if (!wanted.mimeType.toLowerCase().startsWith(`${kind}/`)) continue;
    const match = offered.find((c) => receives(c, wanted));
    if (!match) continue;
    if (match.mimeType.toLowerCase() === 'video/h264') match.parameters = { ...match.parameters, 'profile-level-id': wanted.parameters!['profile-level-id']! };
    return [match];
  }
  return [];
}

/** Codecs a viewer can be sent as they arrive; H.264 only in WebRTC's packetization-mode 1. */
function forwardable(codec: RtpCodecParameters): boolean {
  const name = codec.mimeType.toLowerCase();
  if (name === 'video/h264') return Number(codec.parameters?.['packetization-mode']) === 1;
  return name === 'audio/opus' || name === 'video/vp8' || name === 'video/vp9' || name === 'video/av1';
}

/** A client's codec `offered` can receive a stream sent as `stream`. */
function receives(offered: RtpCodecParameters, stream: RtpCodecParameters): boolean {
  const name = offered.mimeType.toLowerCase();
  if (name !== stream.mimeType.toLowerCase() || offered.clockRate !== stream.clockRate) return false;
  const param = (c: RtpCodecParameters, key: string) => Number(c.parameters?.[key] ?? 0);
  if (name === 'video/h264') return canDecode(offered.parameters?.['profile-level-id'], stream.parameters?.['profile-level-id']);
  if (name === 'video/vp9') return param(offered, 'profile-id') === param(stream, 'profile-id');
  if (name === 'video/av1') return param(offered, 'profile') === param(stream, 'profile');
  return true;
}

/** The codecs of a viewer's router (see viewerCodecs), for Relay.fanoutFor. */
export function receivableCodecs(section: OfferSection, stream: RtpCodecParameters[]): RouterRtpCodecCapability[] {
  return viewerCodecs(section, stream).map(
    (c) =>
      ({
        kind: section.kind,
        mimeType: c.mimeType,
        clockRate: c.clockRate,
        ...(c.channels ? { channels: c.channels } : {}),
        parameters: c.parameters,
        preferredPayloadType: c.payloadType,
      }) as RouterRtpCodecCapability,
  );
}

/**
 * What a viewer's m-section can receive, as mediasoup RtpCapabilities for Transport.consume(): the
 * codecs of its router (viewerCodecs) with the feedback the client offered, but for REMB.
 *
 * Header extensions: a mediasoup consumer keeps only those whose id the client offered under the
 * router's own id, and writes extensions with the router's ids. Browsers pick other ids, so in
 * practice an answer announces none, and an answer may not re-number them (Chromium refuses
 * that). Chromium then ignores the extensions in the packets; an older libwebrtc that reads them
 * by its offered ids must offer none (see kit/clients/sdp.ts). Without transport-wide-cc there is
 * no bandwidth estimate toward the viewer, and the edge picks its layer by its losses
 * (edge/LayerSelector.ts).
 *
 * `routerExtensions` (the viewer's router's, for a counter-offer): each extension the client
 * offered is taken at the router's id instead, which the edge's own offer then names
 * (buildCounterOffer). With transport-wide-cc among them, mediasoup estimates the viewer's link.
 *
 * REMB (goog-remb) is never taken. Firefox puts abs-send-time at mediasoup's id, so with goog-remb
 * its consumer would get a REMB bandwidth estimator, and Firefox sends REMB; but mediasoup builds
 * that estimator for transport-cc feedback only and drops every REMB (since mediasoup PR #962, to
 * keep publishers' losses out of viewers' estimates). The estimate would stay at its start value
 * (initialAvailableOutgoingBitrate) and cap the viewer's simulcast layer there for good.
 */
export function consumerCapabilities(section: OfferSection, stream: RtpCodecParameters[], routerExtensions?: RtpHeaderExtension[]): RtpCapabilities {
  const { media, kind } = section;
  const routerId = (uri: string) => routerExtensions?.find((e) => e.uri === uri && e.kind === kind)?.preferredId;
  return {
    codecs: viewerCodecs(section, stream).map(
      (c) =>
        ({
          kind,
          mimeType: c.mimeType,
          preferredPayloadType: c.payloadType,
          clockRate: c.clockRate,
          channels: c.channels,
          parameters: c.parameters,
          rtcpFeedback: c.rtcpFeedback?.filter((fb) => fb.type !== 'goog-remb'),
        }) as RtpCodecCapability,
    ),
    headerExtensions: (media.ext ?? []).flatMap((e) => {
      const preferredId = routerExtensions ? routerId(e.uri) : e.value;
      return preferredId === undefined ? [] : [{ kind, uri: e.uri as RtpHeaderExtensionParameters['uri'], preferredId, direction: 'sendrecv' as const }];
    }),
  };
}

/**
 * A consumer's RTP parameters as the viewer's answer must name them: each H.264 codec with the
 * fmtp the client offered for its payload type (libwebrtc drops an answered H.264 codec whose
 * profile differs from the offered one; see receivableCodecs for why the router's may).
 */
export function answerParameters(section: OfferSection, params: RtpParameters): RtpParameters {
  return {
    ...params,
    codecs: params.codecs.map((c) =>
      c.mimeType.toLowerCase() === 'video/h264' ? { ...c, parameters: fmtpParameters(section.media, c.payloadType) } : c,
    ),
  };
}

/** "video/H264 High (640c1f)", "audio/opus": a codec as people name it, for messages. */
export function describeCodec(codec: { mimeType: string; parameters?: Record<string, unknown> }): string {
  if (codec.mimeType.toLowerCase() !== 'video/h264') return codec.mimeType;
  const mode = Number(codec.parameters?.['packetization-mode'] ?? 0);
  return `${codec.mimeType} ${describeProfile(codec.parameters?.['profile-level-id'])}${mode === 1 ? '' : ` packetization-mode ${mode}`}`;
}

/** The codecs a section offers, as people name them (no RTX, FEC or DTMF). */
export function offeredCodecs(section: { kind: string; media: MediaDescription }): string[] {
  if (!Array.isArray(section.media.rtp)) return [];
  return offeredRtp(section.media)
    .filter((rtp) => !/^(rtx|red|ulpfec|flexfec-03|telephone-event|CN)$/i.test(String(rtp.codec)))
    .map((rtp) => describeCodec(codecOf(section.kind as MediaKind, section.media, rtp)));
}

export interface LocalTransport {
  iceParameters: IceParameters;
  iceCandidates: IceCandidate[];
  dtlsParameters: DtlsParameters;
}

export interface AcceptedSection {
  direction: 'recvonly' | 'sendonly';
  rtpParameters: RtpParameters;
  /** For sendonly sections: the media stream and track ids the client sees. */
  msid?: { stream: string; track: string };
}

function candidateLines(candidates: IceCandidate[]): NonNullable<MediaAttributes['candidates']> {
  return candidates.map((c) => ({
    foundation: c.foundation,
    component: 1,
    transport: c.protocol,
    priority: c.priority,
    ip: c.address,
    port: c.port,
    type: c.type,
    ...(c.tcpType ? { tcptype: c.tcpType } : {}),
  }));
}

function writeCodecs(params: RtpParameters): Pick<MediaAttributes, 'rtp' | 'fmtp' | 'rtcpFb'> {
  const rtp: MediaAttributes['rtp'] = [];
  const fmtp: MediaAttributes['fmtp'] = [];
  const rtcpFb: NonNullable<MediaAttributes['rtcpFb']> = [];
  for (const codec of params.codecs) {
    rtp.push({ payload: codec.payloadType, codec: codec.mimeType.split('/')[1]!, rate: codec.clockRate, ...(codec.channels && codec.channels > 1 ? { encoding: codec.channels } : {}) });
    const config = Object.entries(codec.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(';');
    if (config) fmtp.push({ payload: codec.payloadType, config });
    for (const fb of codec.rtcpFeedback ?? []) rtcpFb.push({ payload: codec.payloadType, type: fb.type, ...(fb.parameter ? { subtype: fb.parameter } : {}) });
  }
  return { rtp, fmtp, rtcpFb };
}

/**
 * The SDP answer: every offered m-section in order, the accepted ones with their codecs, the
 * rejected ones with port 0, all bundled on the one transport. Every section, rejected or not,
 * carries the ICE credentials, the DTLS fingerprint and role: strict clients check each m-line for
 * them (GStreamer's webrtcbin refuses an answer with one m-line lacking a fingerprint).
 */
export function buildAnswer(offer: Offer, local: LocalTransport, accepted: Map<string, AcceptedSection>, sessionId: string): string {
  return writeDescription('answer', offer.sections, local, accepted, sessionId);
}

/**
 * The mid, SSRC and payload type of mediasoup's bandwidth probes (RTC::Consts in its worker:
 * BweProbeRtpMid, BweProbeRtpSsrc, BweProbeRtpPayloadType). The receiver must know the stream, or
 * it drops the probes unreported and the estimate can only climb as fast as the media grows
 * (mediasoup-client announces the same "probator" stream).
 */
export const PROBE_MID = 'probator';
const PROBE_SSRC = 1234;
const PROBE_PAYLOAD_TYPE = 127;

/**
 * A WHEP counter-offer (draft-ietf-wish-whep: the endpoint answers the client's offer with one of
 * its own): the client's sections in its order, as an answer would have them but offered, with
 * `a=setup:actpass` and the header extensions at the ids the consumers write them with (see
 * consumerCapabilities), and after them the stream mediasoup sends its bandwidth probes on. The
 * client answers it in a fresh RTCPeerConnection (Chromium refuses extension ids that change
 * within one).
 */
export function buildCounterOffer(offer: Offer, local: LocalTransport, accepted: Map<string, AcceptedSection>, sessionId: string): { sdp: string; mids: string[] } {
  const video = [...accepted.values()].find((a) => a.direction === 'sendonly' && a.rtpParameters.codecs[0]?.mimeType.toLowerCase().startsWith('video/'));
  const taken = new Set([...accepted.values()].flatMap((a) => a.rtpParameters.codecs.map((c) => c.payloadType)));
  const probeCodec = video?.rtpParameters.codecs[0];
  const sections: DescribedSection[] = [...offer.sections];
  const withProbe = new Map(accepted);
  // The probes borrow the video codec's name under their own payload type, which no other codec
  // of the bundle may use (RFC 8843: one payload type, one codec).
  if (video && probeCodec && (!taken.has(PROBE_PAYLOAD_TYPE) || probeCodec.payloadType === PROBE_PAYLOAD_TYPE)) {
    sections.push({ mid: PROBE_MID, kind: 'video', media: { type: 'video', port: 9, protocol: 'UDP/TLS/RTP/SAVPF', payloads: String(PROBE_PAYLOAD_TYPE) } as MediaDescription });
    withProbe.set(PROBE_MID, {
      direction: 'sendonly',
      rtpParameters: {
        mid: PROBE_MID,
        codecs: [{ ...probeCodec, payloadType: PROBE_PAYLOAD_TYPE, rtcpFeedback: [] }],
        headerExtensions: video.rtpParameters.headerExtensions,
        encodings: [{ ssrc: PROBE_SSRC }],
        rtcp: { cname: PROBE_MID, reducedSize: true },
      },
      msid: { stream: PROBE_MID, track: PROBE_MID },
    });
  }
  return { sdp: writeDescription('offer', sections, local, withProbe, sessionId), mids: sections.map((s) => s.mid) };
}

/**
 * The viewer offered transport-wide congestion control (the header extension and its feedback),
 * which a counter-offer can put at mediasoup's ids; with `atId`, only where the offer already has
 * the extension at that id (mediasoup's own: its consumers keep it as it is).
 */
export function offersTransportCc(section: OfferSection, options: { atId?: number } = {}): boolean {
  const { atId } = options;
  return (section.media.ext ?? []).some((e) => e.uri === TRANSPORT_CC_URI && (atId === undefined || e.value === atId)) && (section.media.rtcpFb ?? []).some((fb) => fb.type === 'transport-cc');
}

/** The transport-wide congestion control header extension (the one mediasoup's estimate needs). */
export const TRANSPORT_CC_URI = 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01';

/** An m-section to write: one of the client's, or the probe stream of a counter-offer. */
type DescribedSection = Pick<Offer['sections'][number], 'mid' | 'kind' | 'media'>;

function writeDescription(type: 'offer' | 'answer', sections: DescribedSection[], local: LocalTransport, accepted: Map<string, AcceptedSection>, sessionId: string): string {
  const fingerprint = local.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256') ?? local.dtlsParameters.fingerprints[0]!;
  const bundle = sections.filter((s) => accepted.has(s.mid)).map((s) => s.mid);
  const transport = {
    iceUfrag: local.iceParameters.usernameFragment,
    icePwd: local.iceParameters.password,
    fingerprint: { type: fingerprint.algorithm, hash: fingerprint.value },
    setup: type === 'answer' ? 'passive' : 'actpass',
  } satisfies Partial<MediaDescription>;
  const media: MediaDescription[] = sections.map((section) => {
    const answer = accepted.get(section.mid);
    if (!answer) {
      return {
        type: section.media.type,
        port: 0,
        protocol: section.media.protocol,
        payloads: String(section.media.payloads ?? '').split(/\s+/)[0] || '0',
        connection: { version: 4, ip: '0.0.0.0' },
        mid: section.mid,
        direction: 'inactive',
        ...transport,
        rtp: [],
        fmtp: [],
      } as MediaDescription;
    }
    const { rtpParameters: params } = answer;
    const m: MediaDescription = {
      type: section.media.type,
      port: 7,
      protocol: 'UDP/TLS/RTP/SAVPF',
      payloads: params.codecs.map((c) => c.payloadType).join(' '),
      connection: { version: 4, ip: '127.0.0.1' },
      mid: section.mid,
      direction: answer.direction,
      ...transport,
      rtcpMux: 'rtcp-mux',
      rtcpRsize: 'rtcp-rsize',
      ext: (params.headerExtensions ?? []).map((e) => ({ value: e.id, uri: e.uri })),
      candidates: candidateLines(local.iceCandidates),
      endOfCandidates: 'end-of-candidates',
      ...writeCodecs(params),
    };
    // A publisher's simulcast (RFC 8853): every layer it offers to send is taken. Without the
    // rids and a=simulcast in the answer, a browser sends its first encoding only.
    const sendRids = (section.media.rids ?? []).filter((r) => r.direction === 'send');
    if (answer.direction === 'recvonly' && sendRids.length > 0) {
      m.rids = sendRids.map((r) => ({ id: r.id, direction: 'recv' }));
      if (section.media.simulcast) m.simulcast = { dir1: 'recv', list1: section.media.simulcast.list1 };
    }
    const encoding = params.encodings?.[0];
    if (answer.direction === 'sendonly' && encoding?.ssrc !== undefined) {
      const cname = params.rtcp?.cname ?? 'relaycast';
      const msid = answer.msid ? `${answer.msid.stream} ${answer.msid.track}` : undefined;
      m.msid = answer.msid ? [{ id: answer.msid.stream, appdata: answer.msid.track }] : undefined;
      m.ssrcs = [{ id: encoding.ssrc, attribute: 'cname', value: cname }];
      if (msid) m.ssrcs.push({ id: encoding.ssrc, attribute: 'msid', value: msid });
      if (encoding.rtx?.ssrc !== undefined) {
        m.ssrcs.push({ id: encoding.rtx.ssrc, attribute: 'cname', value: cname });
        if (msid) m.ssrcs.push({ id: encoding.rtx.ssrc, attribute: 'msid', value: msid });
        m.ssrcGroups = [{ semantics: 'FID', ssrcs: `${encoding.ssrc} ${encoding.rtx.ssrc}` }];
      }
    }
    return m;
  });
  return sdpTransform.write({
    version: 0,
    origin: { username: '-', sessionId, sessionVersion: 2, netType: 'IN', ipVer: 4, address: '127.0.0.1' },
    name: '-',
    timing: { start: 0, stop: 0 },
    icelite: 'ice-lite',
    groups: bundle.length > 0 ? [{ type: 'BUNDLE', mids: bundle.join(' ') }] : undefined,
    msidSemantic: { semantic: 'WMS', token: '*' },
    media,
  } as SessionDescription);
}

/** An application/trickle-ice-sdpfrag body (RFC 8840): its ICE credentials, if it has any. */
export function parseSdpFrag(text: string): { iceUfrag?: string; icePwd?: string } {
  const ufrag = /^a=ice-ufrag:(\S+)/m.exec(text)?.[1];
  const pwd = /^a=ice-pwd:(\S+)/m.exec(text)?.[1];
  return { iceUfrag: ufrag, icePwd: pwd };
}

/** The sdpfrag answering an ICE restart: new credentials and the (unchanged) candidates. */
export function buildSdpFrag(offerMid: string, local: LocalTransport): string {
  const lines = [
    `a=ice-lite`,
    `a=ice-ufrag:${local.iceParameters.usernameFragment}`,
    `a=ice-pwd:${local.iceParameters.password}`,
    `m=audio 9 UDP/TLS/RTP/SAVPF 0`,
    `a=mid:${offerMid}`,
    ...candidateLines(local.iceCandidates).map(
      (c) => `a=candidate:${c.foundation} ${c.component} ${c.transport} ${c.priority} ${c.ip} ${c.port} typ ${c.type}${c.tcptype ? ` tcptype ${c.tcptype}` : ''}`,
    ),
    'a=end-of-candidates',
  ];
  return `${lines.join('\r\n')}\r\n`;
}
