import { Profile, parseProfileLevelId } from 'h264-profile-level-id';

/**
 * Which H.264 streams a viewer can decode, from the profile-level-ids in its offer (RFC 6184 8.1;
 * profiles parsed the way libwebrtc does, by h264-profile-level-id, which mediasoup uses too).
 *
 * mediasoup (like libwebrtc's codec matching) pairs H.264 codecs only when their profiles are the
 * same. Decoders are more generous: a decoder of one profile plays every profile that is a subset
 * of it. The streams Relaycast forwards never carry B-frames (WebRTC encoders send none, and the
 * RTMP bridge re-encodes streams that have them), so a High-profile stream here is also a
 * Constrained High one, and Main without B-frames is within Constrained High. Baseline's extra
 * tools (FMO, ASO, redundant slices) are in neither Main nor High, so only Constrained Baseline is
 * common to all. Levels are not compared: with level-asymmetry-allowed (every browser sets it) a
 * viewer's level bounds what it sends, and browsers' decoders play any level.
 */
const DECODES: Record<Profile, Profile[]> = {
  [Profile.ConstrainedBaseline]: [Profile.ConstrainedBaseline],
  [Profile.Baseline]: [Profile.ConstrainedBaseline, Profile.Baseline],
  [Profile.Main]: [Profile.ConstrainedBaseline, Profile.Main],
  [Profile.ConstrainedHigh]: [Profile.ConstrainedBaseline, Profile.Main, Profile.ConstrainedHigh, Profile.High],
  [Profile.High]: [Profile.ConstrainedBaseline, Profile.Main, Profile.ConstrainedHigh, Profile.High],
  [Profile.PredictiveHigh444]: [Profile.ConstrainedBaseline, Profile.Main, Profile.ConstrainedHigh, Profile.High, Profile.PredictiveHigh444],
};

const NAMES: Record<Profile, string> = {
  [Profile.ConstrainedBaseline]: 'Constrained Baseline',
  [Profile.Baseline]: 'Baseline',
  [Profile.Main]: 'Main',
  [Profile.ConstrainedHigh]: 'Constrained High',
  [Profile.High]: 'High',
  [Profile.PredictiveHigh444]: 'High 4:4:4 Predictive',
};

/**
 * What an H.264 codec without profile-level-id means. RFC 6184 says Baseline level 1; libwebrtc
 * (and so mediasoup and the browsers) reads it as Constrained Baseline 3.1, and so do we.
 */
const DEFAULT_PROFILE_LEVEL_ID = '42e01f';

/** The H.264 profile of a profile-level-id value (absent: see DEFAULT_PROFILE_LEVEL_ID), or undefined when it names none we know. */
export function h264Profile(profileLevelId: unknown): Profile | undefined {
  const value = profileLevelId === undefined ? DEFAULT_PROFILE_LEVEL_ID : String(profileLevelId);
  return parseProfileLevelId(value)?.profile;
}

/** A viewer whose offer names `receiver` can decode a stream sent as `stream`. */
export function canDecode(receiver: unknown, stream: unknown): boolean {
  const r = h264Profile(receiver);
  const s = h264Profile(stream);
  return r !== undefined && s !== undefined && DECODES[r].includes(s);
}

/** "High (640c1f)" for messages. */
export function describeProfile(profileLevelId: unknown): string {
  const profile = h264Profile(profileLevelId);
  const value = profileLevelId === undefined ? DEFAULT_PROFILE_LEVEL_ID : String(profileLevelId);
  return `${profile === undefined ? 'unknown profile' : NAMES[profile]} (${value})`;
}
