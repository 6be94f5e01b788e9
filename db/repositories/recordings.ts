import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { RECORDINGS_PUBLIC_PATH } from '../../core/recordings.ts';
import { streamSubject } from '../../core/webhookEvents.ts';
import { recordEvent } from './webhooks.ts';
import type { RecordedSegment } from '../../core/recordings.ts';

/**
 * The recordings index (migration 008): recordings, their segments and the bytes waiting to be
 * deleted. A recording's id is its only name in URLs: 16 random bytes, so none can be guessed.
 */

export interface RecordingRecord {
  id: string;
  stream: string;
  startedAt: Date;
  endedAt: Date;
  /** null while it is being recorded, or when its recorder died (see `live`). */
  closedAt: Date | null;
  updatedAt: Date;
  /** Seconds of media (gaps between runs not counted). */
  duration: number;
  bytes: number;
}

/** A segment's row: the segment, and the node that wrote it (its local store holds it until it is uploaded). */
export interface SegmentRecord extends RecordedSegment {
  nodeId: string;
}

interface RecordingRow {
  id: string;
  stream: string;
  started_at: Date;
  ended_at: Date;
  closed_at: Date | null;
  updated_at: Date;
  duration: number;
  bytes: string | number;
}

interface SegmentRow {
  recording_id: string;
  run: string;
  msn: string | number;
  started_at: Date;
  duration: number;
  bytes: string | number;
  complete: boolean;
  store: string;
  node_id: string;
  key: string;
  init_key: string;
  codecs: string;
}

const toRecording = (row: RecordingRow): RecordingRecord => ({
  id: row.id,
  stream: row.stream,
  startedAt: new Date(row.started_at),
  endedAt: new Date(row.ended_at),
  closedAt: row.closed_at ? new Date(row.closed_at) : null,
  updatedAt: new Date(row.updated_at),
  duration: Number(row.duration),
  bytes: Number(row.bytes),
});

const toSegment = (row: SegmentRow): SegmentRecord => ({
  recordingId: row.recording_id,
  run: row.run,
  msn: Number(row.msn),
  startedAt: new Date(row.started_at),
  duration: Number(row.duration),
  bytes: Number(row.bytes),
  complete: row.complete,
  store: row.store,
  nodeId: row.node_id,
  key: row.key,
  initKey: row.init_key,
  codecs: row.codecs,
});

/**
 * The longest segment there can be: the packager cuts one at TARGETDURATION (4 s); 10 s leaves
 * room. A segment that overlaps a range starts at most this long before it, which keeps a range
 * query a range scan of (recording_id, started_at).
 */
const LONGEST_SEGMENT_MS = 10_000;

/** A recording not closed whose recorder wrote nothing for this long is over: its origin died (a recorder writes every second). */
export const RECORDING_STALE_MS = 10_000;

/** Whether a recording is still being recorded: not closed and written to lately. */
export function recordingLive(recording: RecordingRecord, now = Date.now()): boolean {
  return recording.closedAt === null && now - recording.updatedAt.getTime() < RECORDING_STALE_MS;
}

/**
 * The recording a new run of `stream`'s media goes into: the stream's last one if its media
 * ended at most `resumeGapMs` before `startedAt` (a publisher that reconnected, or a failover to
 * another origin), else a new one.
 */
export async function openRecording(db: Knex, options: { stream: string; startedAt: Date; resumeGapMs: number }): Promise<{ recording: RecordingRecord; continued: boolean }> {
  return db.transaction(async (trx) => {
    const last: RecordingRow | undefined = await trx('recordings')
      .where('stream', options.stream)
      .where('ended_at', '>=', new Date(options.startedAt.getTime() - options.resumeGapMs))
      .orderBy('started_at', 'desc')
      .forUpdate()
      .first();
    if (last) {
      const [row] = (await trx('recordings').where('id', last.id).update({ closed_at: null, updated_at: trx.fn.now() }).returning('*')) as RecordingRow[];
      return { recording: toRecording(row!), continued: true };
    }
    const [row] = (await trx('recordings')
      .insert({
        id: randomBytes(16).toString('base64url'),
        stream: options.stream,
        started_at: options.startedAt,
        ended_at: options.startedAt,
        updated_at: trx.fn.now(),
      })
      .returning('*')) as RecordingRow[];
    const recording = toRecording(row!);
    await recordEvent(trx, {
      type: 'recording.started',
      subject: streamSubject(recording.stream),
      data: { stream: recording.stream, recording: { id: recording.id, startedAt: recording.startedAt.toISOString(), ...recordingPaths(recording.id) } },
    });
    return { recording, continued: false };
  });
}

/**
 * Writes a segment's row as far as its bytes are flushed (again as it grows, and once complete;
 * its start too, which the packager may set earlier while the segment is made), and moves its
 * recording's start back, its end, duration and size on by what this write adds.
 */
export async function writeSegment(db: Knex, segment: SegmentRecord, added: { duration: number; bytes: number }): Promise<void> {
  await db.transaction(async (trx) => {
    await trx('recording_segments')
      .insert({
        recording_id: segment.recordingId,
        run: segment.run,
        msn: segment.msn,
        started_at: segment.startedAt,
        duration: segment.duration,
        bytes: segment.bytes,
        complete: segment.complete,
        store: segment.store,
        node_id: segment.nodeId,
        key: segment.key,
        init_key: segment.initKey,
        codecs: segment.codecs,
      })
      .onConflict(['recording_id', 'run', 'msn'])
      .merge(['started_at', 'duration', 'bytes', 'complete']);
    const end = new Date(segment.startedAt.getTime() + Math.round(segment.duration * 1000));
    await trx('recordings')
      .where('id', segment.recordingId)
      .update({
        started_at: trx.raw('least(started_at, ?)', [segment.startedAt]),
        ended_at: trx.raw('greatest(ended_at, ?)', [end]),
        duration: trx.raw('duration + ?', [added.duration]),
        bytes: trx.raw('bytes + ?', [added.bytes]),
        updated_at: trx.fn.now(),
      });
  });
}

/** Where a recording plays and exports, under the balancer (the paths of core/recordings.ts). */
const recordingPaths = (id: string) => ({ playlistPath: `${RECORDINGS_PUBLIC_PATH}/${id}/index.m3u8`, exportPath: `${RECORDINGS_PUBLIC_PATH}/${id}/export.mp4` });

/** The recorder of `id` stopped in order (the stream ended, or the origin shut down), with its recording.finished event. */
export async function closeRecording(db: Knex, id: string): Promise<void> {
  await db.transaction(async (trx) => {
    const [row] = (await trx('recordings').where('id', id).update({ closed_at: trx.fn.now(), updated_at: trx.fn.now() }).returning('*')) as RecordingRow[];
    if (!row) return;
    const recording = toRecording(row);
    await recordEvent(trx, {
      type: 'recording.finished',
      subject: streamSubject(recording.stream),
      data: {
        stream: recording.stream,
        recording: { id, startedAt: recording.startedAt.toISOString(), endedAt: recording.endedAt.toISOString(), duration: recording.duration, bytes: recording.bytes, ...recordingPaths(id) },
      },
    });
  });
}

export async function getRecording(db: Knex, id: string): Promise<RecordingRecord | undefined> {
  const row: RecordingRow | undefined = await db('recordings').where('id', id).first();
  return row && toRecording(row);
}

/**
 * A stream's most recent recording (the one a new run continues, or that is being recorded now:
 * see `recordingLive`), or undefined; one backward step of the (stream, started_at) index.
 */
export async function latestRecording(db: Knex, stream: string): Promise<RecordingRecord | undefined> {
  const row: RecordingRow | undefined = await db('recordings').where('stream', stream).orderBy('started_at', 'desc').first();
  return row && toRecording(row);
}

/** A stream's recordings that overlap [from, to), oldest first; one range scan of (stream, started_at). */
export async function listRecordings(db: Knex, filter: { stream: string; from?: Date; to?: Date; limit: number; after?: string }): Promise<RecordingRecord[]> {
  const query = db('recordings').where('stream', filter.stream).orderBy([{ column: 'started_at' }, { column: 'id' }]).limit(filter.limit);
  if (filter.to) query.where('started_at', '<', filter.to);
  if (filter.from) query.where('ended_at', '>', filter.from);
  if (filter.after) {
    const [at, id] = decodeCursor(filter.after);
    query.where((q) => q.where('started_at', '>', at).orWhere((q2) => q2.where('started_at', '=', at).andWhere('id', '>', id)));
  }
  const rows: RecordingRow[] = await query;
  return rows.map(toRecording);
}

/** A page cursor after `recording`: its start and id. */
export const recordingCursor = (recording: RecordingRecord) => Buffer.from(`${recording.startedAt.toISOString()}|${recording.id}`).toString('base64url');

function decodeCursor(cursor: string): [Date, string] {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const date = new Date(at ?? '');
  if (Number.isNaN(date.getTime()) || !id) throw new TypeError('not a recordings cursor');
  return [date, id];
}

/** A recording's segments that overlap [from, to), in order; the first `limit` of them. */
export async function recordingSegments(db: Knex, id: string, range: { from?: Date; to?: Date } = {}, limit?: number): Promise<SegmentRecord[]> {
  const query = db('recording_segments').where('recording_id', id).orderBy([{ column: 'started_at' }, { column: 'msn' }]);
  if (limit !== undefined) query.limit(limit);
  if (range.to) query.where('started_at', '<', range.to);
  if (range.from) query.where('started_at', '>', new Date(range.from.getTime() - LONGEST_SEGMENT_MS));
  const rows: SegmentRow[] = await query;
  const from = range.from?.getTime();
  return rows.map(toSegment).filter((s) => from === undefined || s.startedAt.getTime() + s.duration * 1000 > from);
}

/** One segment by its run and number, or (without `msn`) the first of a run (whose init segment it names). One index lookup either way. */
export async function getSegment(db: Knex, id: string, run: string, msn?: number): Promise<SegmentRecord | undefined> {
  const query = db('recording_segments').where({ recording_id: id, run });
  if (msn !== undefined) query.where('msn', msn);
  else query.orderBy('msn');
  const row: SegmentRow | undefined = await query.first();
  return row && toSegment(row);
}

/**
 * Deletes a recording from the index, with its recording.deleted event (`by`: who asked); its
 * bytes go to the garbage of the nodes that hold them. False when there was none.
 */
export async function deleteRecording(db: Knex, id: string, by = 'admin'): Promise<boolean> {
  return db.transaction(async (trx) => {
    await trx.raw(
      `insert into recording_garbage (store, node_id, key)
         select store, node_id, key from recording_segments where recording_id = ?
         union select distinct store, node_id, init_key from recording_segments where recording_id = ?`,
      [id, id],
    );
    const deleted: Array<{ stream: string }> = await trx('recordings').where('id', id).delete().returning('stream');
    await recordEvent(trx, deleted.map((r) => ({ type: 'recording.deleted' as const, subject: streamSubject(r.stream), data: { stream: r.stream, recording: { id }, by } })));
    return deleted.length === 1;
  });
}

/**
 * Deletes the segments older than their stream's retention (its own, else `defaultDays`; 0 keeps
 * them), at most `limit` at a time: their bytes, and the init segments no segment needs any more,
 * go to the garbage; recordings left empty go; the rest start at their first segment left.
 * Returns how many segments went.
 */
export async function expireSegments(db: Knex, options: { defaultDays: number; limit: number }): Promise<number> {
  return db.transaction(async (trx) => {
    const expired: Array<{ id: string | number; recording_id: string; run: string; duration: number; bytes: string | number; store: string; node_id: string; key: string; init_key: string }> = (
      await trx.raw(
        `select s.id, s.recording_id, s.run, s.duration, s.bytes, s.store, s.node_id, s.key, s.init_key
           from recording_segments s
           join recordings r on r.id = s.recording_id
           left join streams st on st.name = r.stream
          where coalesce(st.recording_retention_days, ?) > 0
            and s.started_at < now() - coalesce(st.recording_retention_days, ?) * interval '1 day'
          order by s.started_at
          limit ?
          for update of s skip locked`,
        [options.defaultDays, options.defaultDays, options.limit],
      )
    ).rows;
    if (expired.length === 0) return 0;
    await trx('recording_segments').whereIn('id', expired.map((s) => s.id)).delete();
    const garbage = expired.map((s) => ({ store: s.store, node_id: s.node_id, key: s.key }));
    const runs = new Map<string, { recording: string; run: string; store: string; node_id: string; init_key: string }>();
    for (const s of expired) runs.set(`${s.recording_id}|${s.run}`, { recording: s.recording_id, run: s.run, store: s.store, node_id: s.node_id, init_key: s.init_key });
    for (const run of runs.values()) {
      const left = await trx('recording_segments').where({ recording_id: run.recording, run: run.run }).first('id');
      if (!left) garbage.push({ store: run.store, node_id: run.node_id, key: run.init_key });
    }
    await trx('recording_garbage').insert(garbage);
    const byRecording = new Map<string, { duration: number; bytes: number }>();
    for (const s of expired) {
      const sum = byRecording.get(s.recording_id) ?? { duration: 0, bytes: 0 };
      sum.duration += Number(s.duration);
      sum.bytes += Number(s.bytes);
      byRecording.set(s.recording_id, sum);
    }
    for (const [id, sum] of byRecording) {
      const first: { started_at: Date } | undefined = await trx('recording_segments').where('recording_id', id).orderBy('started_at').first('started_at');
      if (!first) {
        const deleted: Array<{ stream: string }> = await trx('recordings').where('id', id).delete().returning('stream');
        await recordEvent(trx, deleted.map((r) => ({ type: 'recording.deleted' as const, subject: streamSubject(r.stream), data: { stream: r.stream, recording: { id }, by: 'retention' } })));
      } else {
        await trx('recordings')
          .where('id', id)
          .update({ started_at: first.started_at, duration: trx.raw('greatest(duration - ?, 0)', [sum.duration]), bytes: trx.raw('greatest(bytes - ?, 0)', [sum.bytes]) });
      }
    }
    return expired.length;
  });
}

/**
 * A node silent this long is not coming back (a pod replaced at a rollout gets a new name): the
 * garbage it left on a local store is anyone's to try (on a volume the nodes share, its files are
 * there; elsewhere deleting a missing file costs nothing).
 */
const ORPHAN_AFTER_MS = 3600_000;

/**
 * Up to `limit` of the garbage in `store`: of node `nodeId` (its local disk) and of nodes long
 * gone, or of any node (`nodeId` undefined: a shared store such as S3).
 */
export async function garbageOf(db: Knex, options: { nodeId?: string; store: string; limit: number }): Promise<Array<{ id: string; key: string }>> {
  const query = db('recording_garbage').where({ store: options.store }).orderBy('id').limit(options.limit).select('id', 'key');
  if (options.nodeId !== undefined) {
    const nodeId = options.nodeId;
    query.where((q) =>
      q.where({ node_id: nodeId }).orWhereNotExists((alive) =>
        alive
          .from('nodes')
          .whereRaw('nodes.id = recording_garbage.node_id')
          .where((n) => n.where('nodes.state', 'up').orWhere('nodes.heartbeat_at', '>', new Date(Date.now() - ORPHAN_AFTER_MS))),
      ),
    );
  }
  const rows: Array<{ id: string | number; key: string }> = await query;
  return rows.map((r) => ({ id: String(r.id), key: r.key }));
}

/** The oldest complete segments node `nodeId` still holds on local disk: its upload backlog. */
export async function pendingUploads(db: Knex, options: { nodeId: string; limit: number }): Promise<Array<{ id: string; key: string; initKey: string; bytes: number }>> {
  const rows: Array<{ id: string | number; key: string; init_key: string; bytes: string | number }> = await db('recording_segments')
    .where({ node_id: options.nodeId, store: 'local', complete: true })
    .orderBy('started_at')
    .limit(options.limit)
    .select('id', 'key', 'init_key', 'bytes');
  return rows.map((r) => ({ id: String(r.id), key: r.key, initKey: r.init_key, bytes: Number(r.bytes) }));
}

/** How many segments wait in node `nodeId`'s backlog (complete or being written). */
export async function uploadBacklog(db: Knex, nodeId: string): Promise<number> {
  const [row] = await db('recording_segments').where({ node_id: nodeId, store: 'local' }).count({ n: '*' });
  return Number(row?.n ?? 0);
}

/** A segment is in `store` now; false when its row went meanwhile (deleted, or past retention). */
export async function markStored(db: Knex, id: string, store: string): Promise<boolean> {
  return (await db('recording_segments').where({ id, store: 'local' }).update({ store })) === 1;
}

export async function forgetGarbage(db: Knex, ids: string[]): Promise<void> {
  if (ids.length) await db('recording_garbage').whereIn('id', ids).delete();
}

/** Bytes recorded per stream, for the metrics and the dashboard. */
export async function recordedBytesByStream(db: Knex): Promise<Array<{ stream: string; bytes: number; recordings: number }>> {
  const rows: Array<{ stream: string; bytes: string | number; recordings: string | number }> = await db('recordings')
    .groupBy('stream')
    .select('stream')
    .sum({ bytes: 'bytes' })
    .count({ recordings: '*' });
  return rows.map((r) => ({ stream: r.stream, bytes: Number(r.bytes), recordings: Number(r.recordings) }));
}
