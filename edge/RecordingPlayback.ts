import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import express, { type Request, type Router } from 'express';
import type { Knex } from 'knex';
import { z } from 'zod';
import { CORS } from '../core/http.ts';
import { RECORDING_ID, RECORDINGS_PUBLIC_PATH } from '../core/recordings.ts';
import { Problem } from '../core/errors.ts';
import { RECORDINGS_PATH, internalFetch } from '../core/internalApi.ts';
import type { Logger } from '../core/logger.ts';
import { authorizeStream, bearerToken } from '../core/tokens.ts';
import { getNode } from '../db/repositories/nodes.ts';
import { getRecording, getSegment, recordingLive, recordingSegments, type RecordingRecord, type SegmentRecord } from '../db/repositories/recordings.ts';
import { getStream } from '../db/repositories/streams.ts';
import { withQuery } from '../media/hls/hlsFiles.ts';
import { exportMp4 } from '../media/record/Mp4Export.ts';
import type { RecordingStore } from '../media/record/RecordingStore.ts';
import { playableSegments, renderVodPlaylist } from '../media/record/VodPlaylist.ts';

/**
 * Recordings played back by an edge (media/record/; the balancer sends players here as for live
 * HLS): `/recordings/{id}/index.m3u8` is the recording, or a
 * range of it (`?from=&to=`, ISO times), as an HLS playlist (VOD, or EVENT while it is recorded:
 * the DVR window); its init segments and segments follow at `/recordings/{id}/{run}/…`;
 * `/recordings/{id}/export.mp4` is the range as one MP4 with its index in front.
 *
 * A recording's id is its only name (unguessable); a private stream's recordings also need a
 * `playback` token (`?token=` or a bearer), which the playlist passes on to every URI. The bytes
 * come from this node's store when it holds them (one process, or a volume the nodes share), else
 * from the node that recorded them (its internal API). Media answers are immutable (a CDN keeps
 * them); this edge keeps none itself yet.
 */

export interface RecordingPlaybackContext {
  db: Knex;
  clusterSecret: string;
  /** This node's store: the same directory as the recording node's in one process or on a shared volume. */
  store: RecordingStore;
  /** The S3 store, when recordings go there (--record-s3): segments whose row says `s3` are read from it. */
  s3?: RecordingStore;
  logger: Logger;
}

const range = z
  .object({
    from: z.iso.datetime({ offset: true }).optional(),
    to: z.iso.datetime({ offset: true }).optional(),
    token: z.string().optional(),
  })
  .refine((q) => !q.from || !q.to || Date.parse(q.from) < Date.parse(q.to), { message: 'from must come before to' });

const RUN = /^[0-9a-f]{8}$/;
const MEDIA_FILE = /^(init\.mp4|(\d{1,16})\.m4s)$/;

/**
 * A finished recording's playlist changes only when retention or an operator deletes from it:
 * a minute. A recorded one's (EVENT) grows with each segment: a second, as the live playlists.
 */
const VOD_PLAYLIST_MAX_AGE_S = 60;
const EVENT_PLAYLIST_MAX_AGE_S = 1;

/**
 * Segments in one playlist or export: a day of 2 s segments (a playlist of some 5 MB). A longer
 * stretch is asked for in ranges (`from`, `to`); a player's DVR window names its start.
 */
export const MAX_RANGE_SEGMENTS = 43_200;

/**
 * An export is at most two hours of media: its first byte waits for the whole remux (some 8 s an
 * hour, more on a busy edge), and a client or HAProxy in between (its `timeout server`, 30 s)
 * gives up long before a day's would start. Longer stretches are exported in ranges.
 */
export const MAX_EXPORT_S = 2 * 3600;

/** Exports an edge runs at once: each holds a CPU core's share, ffmpeg and twice its size in temporary disk. */
const MAX_EXPORTS = 2;

/** How long the edge waits for a recording node's file. */
const FETCH_TIMEOUT_MS = 10_000;

export function recordingPlaybackRouter(ctx: RecordingPlaybackContext): Router {
  const router = express.Router();
  let exporting = 0;

  /** The recording, if the caller may play it back; the token's query for the playlist's URIs. */
  const allowed = async (req: Request): Promise<{ recording: RecordingRecord; query: string; isPrivate: boolean }> => {
    const id = String(req.params.id);
    const recording = RECORDING_ID.test(id) ? await getRecording(ctx.db, id) : undefined;
    if (!recording) throw new Problem('not-found', 'no such recording');
    const stream = await getStream(ctx.db, recording.stream);
    const token = typeof req.query.token === 'string' ? req.query.token : bearerToken(req.get('authorization'));
    const isPrivate = stream?.private ?? false;
    if (isPrivate) await authorizeStream(token, { secret: ctx.clusterSecret, stream: recording.stream, action: 'playback' });
    return { recording, query: isPrivate && token ? `token=${encodeURIComponent(token)}` : '', isPrivate };
  };

  const segmentsOf = async (req: Request, recording: RecordingRecord) => {
    const segments = await recordingSegments(ctx.db, recording.id, rangeOf(req), MAX_RANGE_SEGMENTS + 1);
    if (segments.length > MAX_RANGE_SEGMENTS) {
      throw new Problem('range-too-long', `the range holds more than ${MAX_RANGE_SEGMENTS} segments (about a day): ask for a shorter one with from= and to=`);
    }
    return segments;
  };

  const rangeOf = (req: Request) => {
    const parsed = range.safeParse(req.query);
    if (!parsed.success) throw new Problem('invalid-request', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '));
    return { from: parsed.data.from ? new Date(parsed.data.from) : undefined, to: parsed.data.to ? new Date(parsed.data.to) : undefined };
  };

  const read = async (segment: Pick<SegmentRecord, 'nodeId' | 'store'>, key: string, length?: number): Promise<Buffer> => {
    if (segment.store === 's3') {
      if (!ctx.s3) throw new Problem('service-unavailable', 'this recording is in S3, and this edge has no --record-s3', { headers: { 'Retry-After': '60' } });
      const data = await ctx.s3.read(key, length).catch((error: Error) => {
        throw new Problem('service-unavailable', `could not read the recording from S3: ${error.message}`, { headers: { 'Retry-After': '5' } });
      });
      if (!data) throw new Problem('not-found', 'the recorded file is gone from S3');
      return data;
    }
    const local = await ctx.store.read(key, length).catch(() => undefined);
    if (local) return local;
    const node = await getNode(ctx.db, segment.nodeId);
    if (!node || node.state !== 'up') throw new Problem('service-unavailable', `the node that recorded this (${segment.nodeId}) is not up`, { headers: { 'Retry-After': '30' } });
    const res = await internalFetch(node.publicUrl, `${RECORDINGS_PATH}/${key}${length === undefined ? '' : `?length=${length}`}`, ctx.clusterSecret, {
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    }).catch((error: Error) => {
      throw new Problem('service-unavailable', `could not reach ${segment.nodeId} for the recording: ${error.message}`, { headers: { 'Retry-After': '5' } });
    });
    if (res.status === 404) {
      // Uploaded to S3 and deleted from the node between the row's read and this one.
      const moved = ctx.s3 && (await ctx.s3.read(key, length).catch(() => undefined));
      if (moved) return moved;
      throw new Problem('not-found', 'the recorded file is gone from its node');
    }
    if (!res.ok) throw new Problem('service-unavailable', `${segment.nodeId} answered ${res.status} for the recording`, { headers: { 'Retry-After': '5' } });
    return Buffer.from(await res.arrayBuffer());
  };

  router.options(`${RECORDINGS_PUBLIC_PATH}/*rest`, (_req, res) => {
    res.set(CORS).status(204).end();
  });

  router.get(`${RECORDINGS_PUBLIC_PATH}/:id/index.m3u8`, async (req, res) => {
    const { recording, query, isPrivate } = await allowed(req);
    const live = recordingLive(recording);
    const segments = await segmentsOf(req, recording);
    if (playableSegments(segments, live).length === 0 && !live) throw new Problem('not-found', 'the recording has nothing in that range');
    const playlist = renderVodPlaylist(segments, { live });
    const maxAge = live ? EVENT_PLAYLIST_MAX_AGE_S : VOD_PLAYLIST_MAX_AGE_S;
    res
      .set(CORS)
      .set('Cache-Control', `${isPrivate ? 'private' : 'public'}, max-age=${maxAge}`)
      .type('application/vnd.apple.mpegurl')
      .send(query ? withQuery(playlist, query) : playlist);
  });

  router.get(`${RECORDINGS_PUBLIC_PATH}/:id/export.mp4`, async (req, res) => {
    const { recording, isPrivate } = await allowed(req);
    const segments = playableSegments(await segmentsOf(req, recording), recordingLive(recording));
    if (segments.length === 0) throw new Problem('not-found', 'the recording has nothing in that range');
    const seconds = segments.reduce((sum, seg) => sum + seg.duration, 0);
    if (seconds > MAX_EXPORT_S) throw new Problem('range-too-long', `an export is at most ${MAX_EXPORT_S / 3600} hours of media; this range holds ${(seconds / 3600).toFixed(1)}: ask for a shorter one with from= and to=`);
    if (exporting >= MAX_EXPORTS) throw new Problem('service-unavailable', `this edge is making ${exporting} exports already`, { headers: { 'Retry-After': '30' } });
    const started = Date.now();
    // Each file from where it is: its node's disk (a run's segments and init segment are one node's), or S3.
    // (A run's init segment is where the run's first segment is: uploads to S3 go oldest first.)
    const nodeOf = new Map<string, SegmentRecord>();
    for (const seg of segments) {
      nodeOf.set(seg.key, seg);
      if (!nodeOf.has(seg.initKey)) nodeOf.set(seg.initKey, seg);
    }
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    exporting++;
    const exported = await exportMp4(segments, (key, length) => read(nodeOf.get(key)!, key, length), { signal: gone.signal }).finally(() => exporting--);
    try {
      const name = `${recording.stream}-${segments[0]!.startedAt.toISOString().replace(/[:.]/g, '-')}.mp4`;
      res
        .set(CORS)
        .set('Cache-Control', isPrivate ? 'private, no-store' : 'no-store')
        .set('Content-Disposition', `inline; filename="${name}"`)
        .type('video/mp4')
        .set('Content-Length', String(exported.size));
      ctx.logger.info({ recording: recording.id, segments: segments.length, bytes: exported.size, ms: Date.now() - started }, 'recording exported');
      const file = createReadStream(exported.path);
      file.pipe(res);
      await once(res, 'close');
      file.destroy();
    } finally {
      await exported.remove();
    }
  });

  router.get(`${RECORDINGS_PUBLIC_PATH}/:id/:run/:file`, async (req, res) => {
    const { recording, isPrivate } = await allowed(req);
    const run = String(req.params.run);
    const file = MEDIA_FILE.exec(String(req.params.file));
    if (!RUN.test(run) || !file) throw new Problem('not-found', 'no such recorded file');
    const key = `${recording.id}/${run}/${file[1]}`;
    const row = await getSegment(ctx.db, recording.id, run, file[2] === undefined ? undefined : Number(file[2]));
    if (!row) throw new Problem('not-found', 'no such recorded file');
    // A segment as far as its row says it was flushed (one cut short by a crash, or one being written).
    const data = await read(row, key, file[2] === undefined ? undefined : row.bytes);
    const final = file[2] === undefined || row.complete || !recordingLive(recording);
    res
      .set(CORS)
      .set('Cache-Control', final ? `${isPrivate ? 'private' : 'public'}, max-age=31536000, immutable` : 'no-store')
      .type('video/mp4')
      .send(data);
  });

  return router;
}
