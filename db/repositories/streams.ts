import type { Knex } from 'knex';
import type { HlsMode } from '../../core/config.ts';

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
}

/**
 * Places a live stream on its origin. Returns false, changing nothing, when the stream is already
 * live elsewhere: the caller answers 409.
 */
export async function markStreamLive(db: Knex, placement: LivePlacement): Promise<boolean> {
  const columns = {
    state: 'live',
    origin_node_id: placement.originNodeId,
    ingest_protocol: placement.ingestProtocol,
    codecs: JSON.stringify(placement.codecs ?? null),
    publisher_session: placement.publisherSession,
    started_at: db.fn.now(),
    ended_at: null,
  };
  const rows = await db('streams')
    .insert({ name: placement.name, ...columns })
    .onConflict('name')
    .merge(columns)
    .where('streams.state', 'idle')
    .returning('id');
  return rows.length === 1;
}

/** Ends one publish; a no-op when that session is no longer the stream's publisher. */
export async function markStreamIdle(db: Knex, name: string, publisherSession: string): Promise<boolean> {
  const updated = await db('streams')
    .where({ name, state: 'live', publisher_session: publisherSession })
    .update({ state: 'idle', origin_node_id: null, publisher_session: null, ended_at: db.fn.now() });
  return updated === 1;
}

/** Ends every live stream placed on these origins (they died or shut down); returns the names. */
export async function releaseStreamsOfOrigins(db: Knex, nodeIds: string[]): Promise<string[]> {
  if (nodeIds.length === 0) return [];
  const rows: Array<{ name: string }> = await db('streams')
    .whereIn('origin_node_id', nodeIds)
    .update({ state: 'idle', origin_node_id: null, publisher_session: null, ended_at: db.fn.now() })
    .returning('name');
  return rows.map((r) => r.name);
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
