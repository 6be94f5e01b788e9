/**
 * A recording (or a range of one) as an HLS playlist (RFC 8216): VOD once it is over, EVENT while
 * it is still recorded (a DVR window: a player may seek back to its start, or stay at the live
 * end, and the playlist grows). Each packager run has its own init segment: where the run changes
 * (a publisher reconnected, the stream moved to another origin), EXT-X-DISCONTINUITY and a new
 * EXT-X-MAP. Every segment carries its wall-clock time (EXT-X-PROGRAM-DATE-TIME), so a player can
 * show when it was live.
 *
 * URIs are relative to the recording's folder (`/recordings/{id}/`): `{run}/init.mp4`,
 * `{run}/{msn}.m4s` (hlsFiles.ts's withQuery adds a private stream's token to them).
 */

export interface VodSegment {
  run: string;
  msn: number;
  startedAt: Date;
  /** Seconds. */
  duration: number;
  complete: boolean;
}

export interface VodPlaylistOptions {
  /** The recording is still being recorded: an EVENT playlist without ENDLIST. */
  live: boolean;
}

/**
 * Which segments a playlist lists. A segment still being written is left out while the recording
 * goes on (its file grows; it comes in once complete); once the recording is over, a segment cut
 * short by a crash is listed as far as it was flushed (its row says how far).
 */
export function playableSegments<T extends VodSegment>(segments: T[], live: boolean): T[] {
  const lastRun = segments.at(-1)?.run;
  return segments.filter((s) => s.duration > 0 && (s.complete || !live || s.run !== lastRun));
}

export function renderVodPlaylist(segments: VodSegment[], options: VodPlaylistOptions): string {
  const listed = playableSegments(segments, options.live);
  const longest = listed.reduce((max, s) => Math.max(max, s.duration), 1);
  const lines = [
    '#EXTM3U',
    // 7: EXT-X-MAP in a playlist without I-frames needs 6 (RFC 8216 7), fMP4 segments need 7.
    '#EXT-X-VERSION:7',
    `#EXT-X-TARGETDURATION:${Math.ceil(longest)}`,
    `#EXT-X-PLAYLIST-TYPE:${options.live ? 'EVENT' : 'VOD'}`,
    '#EXT-X-MEDIA-SEQUENCE:0',
  ];
  let run: string | undefined;
  for (const segment of listed) {
    if (segment.run !== run) {
      if (run !== undefined) lines.push('#EXT-X-DISCONTINUITY');
      lines.push(`#EXT-X-MAP:URI="${segment.run}/init.mp4"`);
      run = segment.run;
    }
    lines.push(`#EXT-X-PROGRAM-DATE-TIME:${segment.startedAt.toISOString()}`, `#EXTINF:${segment.duration.toFixed(5)},`, `${segment.run}/${segment.msn}.m4s`);
  }
  if (!options.live) lines.push('#EXT-X-ENDLIST');
  return `${lines.join('\n')}\n`;
}
