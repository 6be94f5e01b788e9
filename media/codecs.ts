import type { RouterRtpCodecCapability, RtpCodecParameters } from 'mediasoup/types';

/**
 * What a Relaycast router accepts from publishers and offers to viewers: Opus audio, and H.264,
 * VP8, VP9 or AV1 video. H.264 is listed once per profile encoders send (Constrained Baseline,
 * Baseline, Main, High, Constrained High), because mediasoup matches H.264 by profile;
 * packetization-mode 1 is what WebRTC uses.
 * An offer with none of these gets a clear 422, never a broken answer.
 */
/**
 * The H.264 profiles a router takes, each at level 3.1, by the name ffprobe gives them (the RTMP
 * bridge passes a stream through when its profile is here).
 */
export const H264_PROFILE_LEVEL_IDS = {
  'Constrained Baseline': '42e01f',
  Baseline: '42001f',
  Main: '4d001f',
  High: '64001f',
  'Constrained High': '640c1f',
} as const;

const h264 = (profileLevelId: string): RouterRtpCodecCapability => ({
  kind: 'video',
  mimeType: 'video/H264',
  clockRate: 90000,
  parameters: { 'packetization-mode': 1, 'profile-level-id': profileLevelId, 'level-asymmetry-allowed': 1 },
});

export const MEDIA_CODECS: RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
  ...Object.values(H264_PROFILE_LEVEL_IDS).map(h264),
  // Taken from publishers that offer nothing every browser plays (see sdp.ts playsEverywhere), and
  // passed through to the viewers that offer them; other viewers get a 422 naming the codec.
  { kind: 'video', mimeType: 'video/VP9', clockRate: 90000, parameters: { 'profile-id': 0 } },
  { kind: 'video', mimeType: 'video/AV1', clockRate: 90000 },
];

/** Human-readable list for error messages. */
export const SUPPORTED_CODECS = 'audio: opus; video: H264 (packetization-mode=1), VP8, VP9 (profile 0), AV1';

/**
 * The versions of a stream's video an origin makes on demand (origin/PublishedStream.ts
 * pipeRendition) for viewers that decode nothing the stream is sent as, in the order an edge asks
 * for them: Constrained Baseline H.264, which every H.264 decoder takes (a High-profile RTMP
 * publish in Firefox with OpenH264), then VP8, which every WebRTC browser decodes (Firefox
 * without OpenH264, Chromium builds without H.264). Their RTP parameters as the origin produces
 * them; an edge matches viewers' offers against these.
 */
export const RENDITION_CODECS = ['h264', 'vp8'] as const;
export type RenditionCodec = (typeof RENDITION_CODECS)[number];

export const RENDITION_RTP_CODECS: Record<RenditionCodec, RtpCodecParameters> = {
  h264: {
    mimeType: 'video/H264',
    payloadType: 102,
    clockRate: 90000,
    parameters: { 'packetization-mode': 1, 'profile-level-id': H264_PROFILE_LEVEL_IDS['Constrained Baseline'], 'level-asymmetry-allowed': 1 },
    rtcpFeedback: [],
  },
  vp8: { mimeType: 'video/VP8', payloadType: 100, clockRate: 90000, parameters: {}, rtcpFeedback: [] },
};

/** Whether video sent as `sent` is the rendition in `codec` already (for H.264: in its profile). */
export function isRendition(sent: RtpCodecParameters | undefined, codec: RenditionCodec): boolean {
  const wanted = RENDITION_RTP_CODECS[codec];
  return sent?.mimeType === wanted.mimeType && (codec !== 'h264' || sent.parameters?.['profile-level-id'] === wanted.parameters?.['profile-level-id']);
}
