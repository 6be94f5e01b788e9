import type { RouterRtpCodecCapability } from 'mediasoup/types';

/**
 * What a Relaycast router accepts from publishers and offers to viewers: Opus audio, and H.264,
 * VP8, VP9 or AV1 video. H.264 is listed once per profile encoders send (Constrained Baseline,
 * Baseline, Main, High, Constrained High), because mediasoup matches H.264 by profile;
 * packetization-mode 1 is what WebRTC uses.
 * An offer with none of these gets a clear 422, never a broken answer.
 */
const h264 = (profileLevelId: string): RouterRtpCodecCapability => ({
  kind: 'video',
  mimeType: 'video/H264',
  clockRate: 90000,
  parameters: { 'packetization-mode': 1, 'profile-level-id': profileLevelId, 'level-asymmetry-allowed': 1 },
});

export const MEDIA_CODECS: RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
  h264('42e01f'),
  h264('42001f'),
  h264('4d001f'),
  h264('64001f'),
  h264('640c1f'),
  // Taken from publishers that offer nothing every browser plays (see sdp.ts playsEverywhere), and
  // passed through to the viewers that offer them; other viewers get a 422 naming the codec.
  { kind: 'video', mimeType: 'video/VP9', clockRate: 90000, parameters: { 'profile-id': 0 } },
  { kind: 'video', mimeType: 'video/AV1', clockRate: 90000 },
];

/** Human-readable list for error messages. */
export const SUPPORTED_CODECS = 'audio: opus; video: H264 (packetization-mode=1), VP8, VP9 (profile 0), AV1';
