/**
 * Where recordings play back: `/recordings/{id}/…` at the balancer, which sends the player to the
 * nearest edge (307), where edge/RecordingPlayback.ts answers. A recording's id is 16 random bytes
 * in base64url (db/repositories/recordings.ts makes them): its only name, never guessable.
 */

export const RECORDINGS_PUBLIC_PATH = '/recordings';

export const RECORDING_ID = /^[A-Za-z0-9_-]{22}$/;

/** A recording's playlist (add from= and to= for a range) and its MP4 export, under `baseUrl`. */
export function recordingUrls(baseUrl: string, id: string): { playlistUrl: string; exportUrl: string } {
  return { playlistUrl: `${baseUrl}${RECORDINGS_PUBLIC_PATH}/${id}/index.m3u8`, exportUrl: `${baseUrl}${RECORDINGS_PUBLIC_PATH}/${id}/export.mp4` };
}
