/**
 * Recordings' shared names (media/record/ writes them, db/ indexes them, the roles serve them).
 *
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

/** One recorded segment as the index keeps it (without the node that wrote it). */
export interface RecordedSegment {
  recordingId: string;
  /** The packager run that made it: a new run (a new init segment) is a discontinuity. */
  run: string;
  msn: number;
  /** Wall-clock time of its first sample. */
  startedAt: Date;
  /** Seconds of media, as far as its bytes were flushed. */
  duration: number;
  bytes: number;
  complete: boolean;
  /** The store that holds it: `local` (its node's --record-dir) or `s3`. */
  store: string;
  key: string;
  initKey: string;
  codecs: string;
}
