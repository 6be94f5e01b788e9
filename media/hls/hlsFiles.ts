import type { Response } from 'express';
import { z } from 'zod';
import { Problem } from '../../core/errors.ts';
import type { HlsPackager } from './HlsPackager.ts';

/**
 * The files of a packaged stream, as origins answer them and edges pass them on (one answer shape,
 * HlsAnswer, so that an edge's cache keeps exactly what the origin said):
 *
 *   index.m3u8                        the multivariant playlist: media.m3u8, and media-{n}.m3u8 for
 *                                     each smaller rung of an RTMP ladder
 *   media.m3u8[?_HLS_msn=&_HLS_part=&_HLS_skip=]   an LL-HLS media playlist, blocking when asked
 *   init-{run}.mp4                    the init segment
 *   seg-{run}-{msn}.m4s               a segment
 *   part-{run}-{n}.m4s                a part
 *
 * Caching (RFC 9111, what a CDN honours): media files never change under their unique names, and
 * are immutable for a year; a blocking reload's answer holds the point it asked for, whatever
 * comes later, and may be kept a little; a plain playlist answer lives one second.
 */

export const PUBLIC_HLS_PATH = '/hls';
export const INTERNAL_HLS_PATH = '/internal/v1/hls';

/** What an HLS request answers: status, headers and body, as the edges' cache keeps it. */
export interface HlsAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const FILE = /^(index\.m3u8|media(-[1-9])?\.m3u8|init-[0-9a-f]{8}\.mp4|seg-[0-9a-f]{8}-\d{1,15}\.m4s|part-[0-9a-f]{8}-\d{1,15}\.m4s)$/;

/** Whether `file` is a name an HLS stream has (the rest are 404 without asking anyone). */
export function isHlsFile(file: string): boolean {
  return FILE.test(file);
}

export const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * How long an answer to a blocking reload may be kept: it holds the part it was asked for and
 * stays a valid answer to that query, but it lists parts and segments that leave the window 36 s
 * on; 6 s keeps a cached answer well inside that.
 */
const BLOCKING_MAX_AGE_S = 6;

/**
 * How long a blocking reload is held before 503: three target durations (RFC 8216bis 6.2.5.2
 * asks servers to answer within that) — a stream whose media stopped for longer has a problem the
 * client should hear of.
 */
const BLOCK_TARGETS = 3;

/** How long a request for the part being made (a preload hint's) is held: well past one part. */
const PART_WAIT_MS = 5000;

const reloadQuery = z
  .object({
    _HLS_msn: z.coerce.number().int().nonnegative().optional(),
    _HLS_part: z.coerce.number().int().nonnegative().optional(),
    _HLS_skip: z.enum(['YES', 'v2']).optional(),
  })
  .refine((q) => q._HLS_part === undefined || q._HLS_msn !== undefined, { message: '_HLS_part needs _HLS_msn' });

export type ReloadQuery = z.infer<typeof reloadQuery>;

/** The blocking-reload parameters of a playlist request, or a 400 naming what is wrong with them. */
export function parseReloadQuery(query: Record<string, unknown>): ReloadQuery {
  const parsed = reloadQuery.safeParse({ _HLS_msn: query._HLS_msn, _HLS_part: query._HLS_part, _HLS_skip: query._HLS_skip });
  if (!parsed.success) throw new Problem('invalid-request', `bad LL-HLS query: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

const answer = (body: string | Buffer, type: string, cacheControl: string, status = 200): HlsAnswer => ({
  status,
  headers: { 'content-type': type, 'cache-control': cacheControl },
  body: typeof body === 'string' ? Buffer.from(body) : body,
});

const PLAYLIST = 'application/vnd.apple.mpegurl';
const MP4 = 'video/mp4';

/** A file of a stream packaged as `variants` (best first, each ready: see HlsPackager.ready()). */
export async function answerHls(variants: readonly HlsPackager[], file: string, query: Record<string, unknown>): Promise<HlsAnswer> {
  const [best] = variants;
  if (!best) throw new TypeError('a packaged stream has one variant at least');
  await Promise.all(variants.map((v) => v.ready())).catch((error: Error) => {
    throw new Problem('service-unavailable', `stream ${best.stream} could not be packaged: ${error.message}`, { headers: { 'Retry-After': '2' } });
  });
  if (file === 'index.m3u8') return answer(multivariant(variants), PLAYLIST, 'public, max-age=1');
  const media = variants.find((v) => v.playlistUri === file);
  if (media) return mediaPlaylist(media, variants, query);
  if (file.endsWith('.m3u8')) throw new Problem('not-found', `stream ${best.stream} has no ${file}`);
  // Media files name their packager's run: init-{run}.mp4, seg-{run}-{msn}.m4s, part-{run}-{n}.m4s.
  const run = /^(?:init|seg|part)-([0-9a-f]{8})/.exec(file)?.[1];
  const packager = variants.find((v) => v.playlist.run === run);
  if (packager) {
    const { playlist } = packager;
    if (file === packager.initUri) return answer(packager.init!.data, MP4, IMMUTABLE);
    if (file.startsWith('seg-')) {
      const data = playlist.segment(file);
      if (data) return answer(data, MP4, IMMUTABLE);
    }
    if (file.startsWith('part-')) {
      const seq = Number(file.slice(`part-${run}-`.length, -'.m4s'.length));
      if (playlist.partComing(seq)) await playlist.waitUntil(() => playlist.part(seq) !== undefined, PART_WAIT_MS);
      const data = playlist.part(seq)?.data;
      if (data) return answer(data, MP4, IMMUTABLE);
    }
  }
  throw new Problem('not-found', `${file} is not (or no longer) in stream ${best.stream}'s window`);
}

/** A variant's media playlist, at once or (blocking reload) once it holds the part asked for. */
async function mediaPlaylist(packager: HlsPackager, variants: readonly HlsPackager[], query: Record<string, unknown>): Promise<HlsAnswer> {
  const { playlist } = packager;
  const reload = parseReloadQuery(query);
  const render = () =>
    playlist.render({
      skip: reload._HLS_skip !== undefined,
      initUri: packager.initUri,
      reports: variants.filter((v) => v !== packager).map((v) => ({ uri: v.playlistUri, position: v.playlist.lastPosition })),
    });
  if (reload._HLS_msn === undefined) return answer(render(), PLAYLIST, 'public, max-age=1');
  const point = { msn: reload._HLS_msn, part: reload._HLS_part };
  if (playlist.tooFarAhead(point)) throw new Problem('invalid-request', `_HLS_msn=${point.msn} is too far past the last segment (${playlist.lastMsn})`);
  const held = await playlist.waitUntil(() => playlist.holds(point), BLOCK_TARGETS * playlist.targetDuration * 1000);
  if (held === undefined || (held && !playlist.streamEnded)) {
    throw new Problem('service-unavailable', `stream ${packager.stream} made no media in time`, { headers: { 'Retry-After': '1' } });
  }
  return answer(render(), PLAYLIST, `public, max-age=${BLOCKING_MAX_AGE_S}`);
}

/** Sends an answer as it is (an origin's, or one an edge keeps). */
export function sendHls(res: Response, hls: HlsAnswer): void {
  res.status(hls.status).set(hls.headers).send(hls.body);
}

/**
 * The multivariant playlist: each variant with the codecs and picture size its init segment names
 * and the peak bitrate seen so far (a stream's variants share one audio, encoded with each).
 */
function multivariant(variants: readonly HlsPackager[]): string {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:9'];
  for (const packager of variants) {
    const init = packager.init!;
    const video = init.tracks.find((t) => t.kind === 'video');
    const attributes = [`BANDWIDTH=${peakBandwidth(packager)}`, `CODECS="${init.tracks.map((t) => t.codec).join(',')}"`];
    if (video?.width && video.height) attributes.push(`RESOLUTION=${video.width}x${video.height}`);
    lines.push(`#EXT-X-STREAM-INF:${attributes.join(',')}`, packager.playlistUri);
  }
  return `${lines.join('\n')}\n`;
}

/** BANDWIDTH: the peak segment bitrate so far (bit/s), or the parts' while no segment is complete. */
function peakBandwidth(packager: HlsPackager): number {
  let peak = 0;
  for (const s of packager.playlist.segments) if (s.duration > 0 && s.data) peak = Math.max(peak, (s.data.length * 8) / s.duration);
  if (peak > 0) return Math.round(peak);
  const { bytes, duration } = packager.playlist.openSegment;
  return Math.max(1, Math.round(duration > 0 ? (bytes * 8) / duration : 0));
}

/**
 * A playlist whose URIs carry `query` too (a private stream's play token): a player resolves
 * each URI against the playlist's URL and sends nothing else with it.
 */
export function withQuery(playlist: string, query: string): string {
  const add = (uri: string) => `${uri}${uri.includes('?') ? '&' : '?'}${query}`;
  return playlist
    .split('\n')
    .map((line) => (line === '' ? line : line.startsWith('#') ? line.replace(/URI="([^"]+)"/g, (_m, uri: string) => `URI="${add(uri)}"`) : add(line)))
    .join('\n');
}
