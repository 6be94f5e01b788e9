import type { Knex } from 'knex';
import type { HlsMode } from '../../core/config.ts';
import { streamSubject } from '../../core/webhookEvents.ts';
import { recordEvent, type WebhookEvent } from './webhooks.ts';

/** The `streams` table: each stream's placement (its origin) and state. */

export type StreamState = 'idle' | 'live';

export interface StreamRecord {
  id: string;
  name: string;
  state: StreamState;
  originNodeId: string | null;
  ingestProtocol: string | null;
  codecs: unknown;
  private: boolean;
  /** The stream's own RTMP ladder: heights highest first, [] for off, null for the origin's default. */
  rtmpLadder: number[] | null;
  /** The stream's own HLS packaging, or null for the origins' --hls. */
  hls: HlsMode | null;
  /** Whether the stream is recorded, or null for the origins' --record. */
  record: boolean | null;
  /** Days its recordings are kept, or null for --recording-retention-days. */
  recordingRetentionDays: number | null;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
}

interface StreamRow {
  id: string | number;
  name: string;
  state: StreamState;
  origin_node_id: string | null;
  ingest_protocol: string | null;
  codecs: unknown;
  private: boolean;
  rtmp_ladder: number[] | null;
  hls: HlsMode | null;
  record: boolean | null;
  recording_retention_days: number | null;
  created_at: Date;
  started_at: Date | null;
  ended_at: Date | null;
}

function toRecord(row: StreamRow): StreamRecord {
  return {
    id: String(row.id),
    name: row.name,
    state: row.state,
    originNodeId: row.origin_node_id,
    ingestProtocol: row.ingest_protocol,
    codecs: row.codecs,
    private: row.private,
    rtmpLadder: row.rtmp_ladder,
    hls: row.hls,
    record: row.record,
    recordingRetentionDays: row.recording_retention_days,
    createdAt: new Date(row.created_at),
    startedAt: row.started_at ? new Date(row.started_at) : null,
    endedAt: row.ended_at ? new Date(row.ended_at) : null,
  };
}

export async function getStream(db: Knex, name: string): Promise<StreamRecord | undefined> {
  const row: StreamRow | undefined = await db('streams').where({ name }).first();
  return row ? toRecord(row) : undefined;
}

export interface LivePlacement {
  name: string;
  originNodeId: string;
  ingestProtocol: string;
  codecs: unknown;
  publisherSession: string;
  /** The origin's region, for the stream.published event. */
  region?: string;
}

/**
 * A publish on another origin this soon after the stream ended on its last is the same broadcast
 * moved (its origin died or was drained, and the encoder reconnected elsewhere): a stream.moved
 * event. 60 s, the recordings' resume gap (origin/Recordings.ts): what continues one recording is
 * one move.
 */
const MOVE_WINDOW_S = 60;

/**
 * Places a live stream on its origin, with its stream.published event (and stream.moved when it
 * comes back on another origin within MOVE_WINDOW_S). Returns false, changing nothing, when the
 * stream is already live elsewhere: the caller answers 409.
 */
export async function markStreamLive(db: Knex, placement: LivePlacement): Promise<boolean> {
  return db.transaction(async (trx) => {
    const before: { last_origin_node_id: string | null; recent: boolean } | undefined = await trx('streams')
      .where({ name: placement.name })
      .first('last_origin_node_id', trx.raw('coalesce(ended_at > now() - make_interval(secs => ?), false) as recent', [MOVE_WINDOW_S]));
    const columns = {
      state: 'live',
      origin_node_id: placement.originNodeId,
      last_origin_node_id: placement.originNodeId,
      ingest_protocol: placement.ingestProtocol,
      codecs: JSON.stringify(placement.codecs ?? null),
      publisher_session: placement.publisherSession,
      started_at: trx.fn.now(),
      ended_at: null,
      viewer_level: 0,
      viewers_reported_at: null,
    };
    const rows = await trx('streams')
      .insert({ name: placement.name, ...columns })
      .onConflict('name')
      .merge(columns)
      .where('streams.state', 'idle')
      .returning('id');
    if (rows.length !== 1) return false;
    const subject = streamSubject(placement.name);
    const events: WebhookEvent[] = [];
    if (before?.recent && before.last_origin_node_id && before.last_origin_node_id !== placement.originNodeId) {
      events.push({ type: 'stream.moved', subject, data: { stream: placement.name, from: before.last_origin_node_id, to: placement.originNodeId } });
    }
    events.push({
      type: 'stream.published',
      subject,
      data: { stream: placement.name, origin: { id: placement.originNodeId, region: placement.region ?? null }, protocol: placement.ingestProtocol, codecs: placement.codecs ?? null },
    });
    await recordEvent(trx, events);
    return true;
  });
}

const unpublished = (name: string, origin: string | null, reason: string): WebhookEvent => ({
  type: 'stream.unpublished',
  subject: streamSubject(name),
  data: { stream: name, origin, reason },
});

/** Ends one publish, with its stream.unpublished event; a no-op when that session is no longer the stream's publisher. */
export async function markStreamIdle(db: Knex, name: string, publisherSession: string, reason = 'the publisher left'): Promise<boolean> {
  return db.transaction(async (trx) => {
    const rows: Array<{ last_origin_node_id: string | null }> = await trx('streams')
      .where({ name, state: 'live', publisher_session: publisherSession })
      .update({ state: 'idle', origin_node_id: null, publisher_session: null, ended_at: trx.fn.now(), viewer_level: 0 })
      .returning('last_origin_node_id');
    if (rows.length !== 1) return false;
    await recordEvent(trx, unpublished(name, rows[0]!.last_origin_node_id, reason));
    return true;
  });
}

/** Ends every live stream placed on these origins (they died or shut down), with their events; returns the names. */
export async function releaseStreamsOfOrigins(db: Knex, nodeIds: string[], reason = 'its origin ended'): Promise<string[]> {
  if (nodeIds.length === 0) return [];
  return db.transaction(async (trx) => {
    const rows: Array<{ name: string; last_origin_node_id: string | null }> = await trx('streams')
      .whereIn('origin_node_id', nodeIds)
      .update({ state: 'idle', origin_node_id: null, publisher_session: null, ended_at: trx.fn.now(), viewer_level: 0 })
      .returning(['name', 'last_origin_node_id']);
    await recordEvent(trx, rows.map((r) => unpublished(r.name, r.last_origin_node_id, reason)));
    return rows.map((r) => r.name);
  });
}

export async function listStreams(db: Knex, filter: { state?: StreamState } = {}): Promise<StreamRecord[]> {
  const query = db<StreamRow>('streams').orderBy('name');
  if (filter.state) query.where('state', filter.state);
  const rows: StreamRow[] = await query;
  return rows.map(toRecord);
}

/** A stream as the admin API shows it: its placement, the edges relaying it and their viewers. */
export interface StreamView {
  name: string;
  state: StreamState;
  private: boolean;
  rtmpLadder: number[] | null;
  hls: HlsMode | null;
  record: boolean | null;
  recordingRetentionDays: number | null;
  origin: { id: string; region: string } | null;
  ingestProtocol: string | null;
  /** The edges relaying it, each with the node it pulls from (the origin, or a parent edge). */
  edges: Array<{ id: string; region: string; viewers: number; parent: string }>;
  /** The edges serving it over HLS, with their HLS viewers. */
  hlsEdges: Array<{ id: string; region: string; viewers: number }>;
  /** Every viewer: WebRTC (the relays') and HLS. */
  viewers: number;
  hlsViewers: number;
  /** Its recordings kept: how many, and their bytes. */
  recorded: { recordings: number; bytes: number };
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
}

/** One page of streams by name, after `after`; `name` picks a single stream. */
export async function listStreamViews(
  db: Knex,
  filter: { state?: StreamState; name?: string; after?: string; limit?: number } = {},
): Promise<StreamView[]> {
  const query = db('streams')
    .leftJoin('nodes', 'nodes.id', 'streams.origin_node_id')
    .select('streams.*', 'nodes.region as origin_region')
    .orderBy('streams.name');
  if (filter.state) query.where('streams.state', filter.state);
  if (filter.name !== undefined) query.where('streams.name', filter.name);
  if (filter.after !== undefined) query.where('streams.name', '>', filter.after);
  if (filter.limit !== undefined) query.limit(filter.limit);
  const rows: Array<StreamRow & { origin_region: string | null }> = await query;
  if (rows.length === 0) return [];
  const relays: Array<{ stream_id: string | number; edge_node_id: string; region: string; viewers: number; upstream_node_id: string }> = await db('relays')
    .join('nodes', 'nodes.id', 'relays.edge_node_id')
    .whereIn('relays.stream_id', rows.map((r) => r.id))
    .orderBy('relays.edge_node_id')
    .select('relays.stream_id', 'relays.edge_node_id', 'nodes.region', 'relays.viewers', 'relays.upstream_node_id');
  const hls: Array<{ stream_id: string | number; edge_node_id: string; region: string; viewers: number }> = await db('hls_viewers')
    .join('nodes', 'nodes.id', 'hls_viewers.edge_node_id')
    .whereIn('hls_viewers.stream_id', rows.map((r) => r.id))
    .where('nodes.state', 'up')
    .orderBy('hls_viewers.edge_node_id')
    .select('hls_viewers.stream_id', 'hls_viewers.edge_node_id', 'nodes.region', 'hls_viewers.viewers');
  const recorded: Array<{ stream: string; recordings: string | number; bytes: string | number | null }> = await db('recordings')
    .whereIn('stream', rows.map((r) => r.name))
    .groupBy('stream')
    .select('stream')
    .count({ recordings: '*' })
    .sum({ bytes: 'bytes' });
  return rows.map((row) => {
    const kept = recorded.find((r) => r.stream === row.name);
    const edges = relays
      .filter((r) => String(r.stream_id) === String(row.id))
      .map((r) => ({ id: r.edge_node_id, region: r.region, viewers: r.viewers, parent: r.upstream_node_id }));
    const hlsEdges = hls.filter((h) => String(h.stream_id) === String(row.id)).map((h) => ({ id: h.edge_node_id, region: h.region, viewers: h.viewers }));
    const hlsViewers = hlsEdges.reduce((sum, e) => sum + e.viewers, 0);
    return {
      name: row.name,
      state: row.state,
      private: row.private,
      rtmpLadder: row.rtmp_ladder,
      hls: row.hls,
      record: row.record,
      recordingRetentionDays: row.recording_retention_days,
      origin: row.origin_node_id ? { id: row.origin_node_id, region: row.origin_region ?? '' } : null,
      ingestProtocol: row.ingest_protocol,
      edges,
      hlsEdges,
      viewers: edges.reduce((sum, e) => sum + e.viewers, 0) + hlsViewers,
      hlsViewers,
      recorded: { recordings: Number(kept?.recordings ?? 0), bytes: Number(kept?.bytes ?? 0) },
      createdAt: new Date(row.created_at),
      startedAt: row.started_at ? new Date(row.started_at) : null,
      endedAt: row.ended_at ? new Date(row.ended_at) : null,
    };
  });
}

/**
 * Records an edge's HLS viewers by stream (its whole set: streams it no longer serves go), for
 * the admin API.
 */
export async function recordHlsViewers(db: Knex, edgeNodeId: string, counts: Array<{ stream: string; viewers: number }>): Promise<void> {
  await db.transaction(async (trx) => {
    await trx('hls_viewers').where({ edge_node_id: edgeNodeId }).delete();
    for (const { stream, viewers } of counts) {
      await trx
        .insert(trx('streams').select('id', trx.raw('?', [edgeNodeId]), trx.raw('?::integer', [viewers])).where({ name: stream }))
        .into(trx.raw('hls_viewers (stream_id, edge_node_id, viewers)'));
    }
  });
}

/**
 * Writes the stream.viewers events due now: for each live stream whose viewers (WebRTC and HLS)
 * crossed one of `thresholds` (ascending) since its last event, up or down, and for each whose
 * last one is `periodS` old (0: none periodic). Safe from several balancers at once: each event
 * is written by the one whose update of the stream's row finds it as it read it. Returns how many.
 */
export async function recordViewerEvents(db: Knex, options: { thresholds: number[]; periodS: number }): Promise<number> {
  const rows: Array<{ id: string | number; name: string; viewer_level: number; reported_at: Date | string | null; due: boolean; viewers: string | number }> = await db('streams as s')
    .where('s.state', 'live')
    .select(
      's.id',
      's.name',
      's.viewer_level',
      's.viewers_reported_at as reported_at',
      db.raw('(? > 0 and coalesce(s.viewers_reported_at, s.started_at) < now() - make_interval(secs => ?)) as due', [options.periodS, options.periodS]),
      db.raw(
        `(select coalesce(sum(r.viewers), 0) from relays r where r.stream_id = s.id)
         + (select coalesce(sum(h.viewers), 0) from hls_viewers h join nodes n on n.id = h.edge_node_id where h.stream_id = s.id and n.state = 'up') as viewers`,
      ),
    );
  let written = 0;
  for (const row of rows) {
    const viewers = Number(row.viewers);
    const level = options.thresholds.filter((t) => viewers >= t).length;
    if (level === row.viewer_level && !row.due) continue;
    const crossed = level > row.viewer_level ? 'up' : level < row.viewer_level ? 'down' : null;
    const threshold = crossed === 'up' ? options.thresholds[level - 1] : crossed === 'down' ? options.thresholds[level] : null;
    written += await db.transaction(async (trx) => {
      const query = trx('streams').where({ id: row.id, state: 'live', viewer_level: row.viewer_level });
      if (row.reported_at === null) query.whereNull('viewers_reported_at');
      else query.where('viewers_reported_at', new Date(row.reported_at));
      if ((await query.update({ viewer_level: level, viewers_reported_at: trx.fn.now() })) !== 1) return 0;
      await recordEvent(trx, { type: 'stream.viewers', subject: streamSubject(row.name), data: { stream: row.name, viewers, threshold: threshold ?? null, crossed } });
      return 1;
    });
  }
  return written;
}

/** Creates an idle stream; false when one with that name exists. */
export async function createStream(
  db: Knex,
  stream: { name: string; private: boolean; rtmpLadder?: number[] | null; hls?: HlsMode | null; record?: boolean | null; recordingRetentionDays?: number | null },
): Promise<boolean> {
  const rows = await db('streams')
    .insert({
      name: stream.name,
      private: stream.private,
      rtmp_ladder: stream.rtmpLadder ?? null,
      hls: stream.hls ?? null,
      record: stream.record ?? null,
      recording_retention_days: stream.recordingRetentionDays ?? null,
    })
    .onConflict('name')
    .ignore()
    .returning('id');
  return rows.length === 1;
}

/** What an operator may change on a stream; undefined fields stay as they are. */
export interface StreamSettings {
  private?: boolean;
  /** Heights highest first, [] for off, null for the origin's default; applies to the next RTMP publish. */
  rtmpLadder?: number[] | null;
  /** null for the origins' --hls; applies to the next publish. */
  hls?: HlsMode | null;
  /** null for the origins' --record; applies to the next publish. */
  record?: boolean | null;
  /** null for --recording-retention-days. */
  recordingRetentionDays?: number | null;
}

/** Changes a stream's settings; false when there is no such stream. */
export async function updateStream(db: Knex, name: string, settings: StreamSettings): Promise<boolean> {
  const columns: Record<string, unknown> = {};
  if (settings.private !== undefined) columns.private = settings.private;
  if (settings.rtmpLadder !== undefined) columns.rtmp_ladder = settings.rtmpLadder;
  if (settings.hls !== undefined) columns.hls = settings.hls;
  if (settings.record !== undefined) columns.record = settings.record;
  if (settings.recordingRetentionDays !== undefined) columns.recording_retention_days = settings.recordingRetentionDays;
  const query = db('streams').where({ name });
  if (Object.keys(columns).length === 0) return (await query.first('id')) !== undefined;
  return (await query.update(columns)) === 1;
}

/** Deletes a stream with its keys and relays (cascades); false when there was none. */
export async function deleteStream(db: Knex, name: string): Promise<boolean> {
  return (await db('streams').where({ name }).delete()) === 1;
}
