import type { Knex } from 'knex';
import { nodeSubject } from '../../core/webhookEvents.ts';
import { recordEvent, type WebhookEvent } from './webhooks.ts';

/** The `nodes` table: who is in the cluster, where, and how loaded. */

export type NodeState = 'up' | 'dead' | 'gone';

export interface NodeInfo {
  id: string;
  roles: string[];
  region: string;
  lat: number;
  lon: number;
  publicUrl: string;
  announcedIp: string;
  version: string;
  capacity: number;
  /** Bits per second the node's network can send (--egress-capacity). */
  egressCapacity: number;
  /** HAProxy agent-check port (edges), or null. */
  agentPort: number | null;
  /** Where the node takes RTMP publishers, rtmp://host:port/live (origins with RTMP), or null. */
  rtmpUrl: string | null;
}

export interface NodeLoad {
  viewers: number;
  streams: number;
  /** Bits per second sent to viewers and downstream edges. */
  bitrateOut: number;
  /** Share of one machine's CPU, 0..1. */
  cpu: number;
}

export interface NodeRecord extends NodeInfo, NodeLoad {
  state: NodeState;
  /** Set by an operator: no new viewers or streams; kept across restarts until undrained. */
  draining: boolean;
  startedAt: Date;
  heartbeatAt: Date;
  endedAt: Date | null;
}

interface NodeRow {
  id: string;
  roles: string[];
  region: string;
  lat: number;
  lon: number;
  public_url: string;
  announced_ip: string;
  version: string;
  state: NodeState;
  capacity: number;
  egress_capacity: string | number;
  viewers: number;
  streams: number;
  bitrate_out: string | number;
  cpu: number;
  draining: boolean;
  started_at: Date;
  heartbeat_at: Date;
  ended_at: Date | null;
  agent_port: number | null;
  rtmp_url: string | null;
}

function toRecord(row: NodeRow): NodeRecord {
  return {
    id: row.id,
    roles: row.roles,
    region: row.region,
    lat: row.lat,
    lon: row.lon,
    publicUrl: row.public_url,
    announcedIp: row.announced_ip,
    version: row.version,
    state: row.state,
    capacity: row.capacity,
    egressCapacity: Number(row.egress_capacity),
    agentPort: row.agent_port,
    rtmpUrl: row.rtmp_url,
    viewers: row.viewers,
    streams: row.streams,
    bitrateOut: Number(row.bitrate_out),
    cpu: row.cpu,
    draining: row.draining,
    startedAt: new Date(row.started_at),
    heartbeatAt: new Date(row.heartbeat_at),
    endedAt: row.ended_at ? new Date(row.ended_at) : null,
  };
}

function loadColumns(load: NodeLoad) {
  return {
    viewers: load.viewers,
    streams: load.streams,
    bitrate_out: Math.round(load.bitrateOut),
    cpu: load.cpu,
  };
}

/** A node.* event about `node`. */
const nodeEvent = (type: 'node.up' | 'node.down' | 'node.draining', node: { id: string; region: string; roles: string[] }, more: Record<string, unknown> = {}): WebhookEvent => ({
  type,
  subject: nodeSubject(node.id),
  data: { node: { id: node.id, region: node.region, roles: node.roles }, ...more },
});

/** node.down events for the rows an update returned (id, region, roles). */
const downEvents = (rows: Array<{ id: string; region: string; roles: string[] }>, reason: 'dead' | 'gone') => rows.map((row) => nodeEvent('node.down', row, { reason }));

/** Inserts the node, or brings an earlier row with the same id back to life, with its node.up event. */
export async function upsertNode(db: Knex, info: NodeInfo, load: NodeLoad): Promise<void> {
  const row = {
    id: info.id,
    roles: info.roles,
    region: info.region,
    lat: info.lat,
    lon: info.lon,
    public_url: info.publicUrl,
    announced_ip: info.announcedIp,
    version: info.version,
    capacity: info.capacity,
    egress_capacity: Math.round(info.egressCapacity),
    agent_port: info.agentPort,
    rtmp_url: info.rtmpUrl,
    ...loadColumns(load),
    state: 'up',
    started_at: db.fn.now(),
    heartbeat_at: db.fn.now(),
    ended_at: null,
    // A report about an earlier life of this id says nothing about this one.
    lost_reported_at: null,
    lost_reported_by: null,
    lost_reason: null,
  };
  await db.transaction(async (trx) => {
    await trx('nodes').insert(row).onConflict('id').merge();
    await recordEvent(trx, nodeEvent('node.up', info));
  });
}

/** Drains a node (or ends the drain), with a node.draining event when that changes it; false when there is no such node. */
export async function setNodeDraining(db: Knex, id: string, draining: boolean): Promise<boolean> {
  return db.transaction(async (trx) => {
    if (!(await trx('nodes').where({ id }).first('id'))) return false;
    const changed: Array<{ id: string; region: string; roles: string[]; state: NodeState }> = await trx('nodes')
      .where({ id })
      .whereNot({ draining })
      .update({ draining })
      .returning(['id', 'region', 'roles', 'state']);
    // A node that ended is not news: a shutdown's own drain is undone after its node.down.
    await recordEvent(trx, changed.filter((node) => node.state === 'up').map((node) => nodeEvent('node.draining', node, { draining })));
    return true;
  });
}

/**
 * Records a heartbeat and returns whether an operator has the node draining; undefined when the
 * row is no longer up (another node declared it dead).
 */
export async function heartbeatNode(db: Knex, id: string, load: NodeLoad): Promise<{ draining: boolean } | undefined> {
  const [row] = (await db('nodes')
    .where({ id, state: 'up' })
    .update({ ...loadColumns(load), heartbeat_at: db.fn.now() })
    .returning('draining')) as Array<{ draining: boolean }>;
  return row ? { draining: row.draining } : undefined;
}

/**
 * Marks every up node whose heartbeat is older than `ttlMs` as dead and returns their ids. Row
 * locks make this safe to run from several nodes at once: each dead node is returned to exactly
 * one caller, which then cleans up after it.
 */
export async function markExpiredNodesDead(db: Knex, ttlMs: number): Promise<string[]> {
  return db.transaction(async (trx) => {
    const rows: Array<{ id: string; region: string; roles: string[] }> = await trx('nodes')
      .where('state', 'up')
      .andWhere('heartbeat_at', '<', trx.raw(`now() - make_interval(secs => ?)`, [ttlMs / 1000]))
      .update({ state: 'dead', ended_at: trx.fn.now(), viewers: 0, streams: 0, bitrate_out: 0 })
      .returning(['id', 'region', 'roles']);
    await recordEvent(trx, downEvents(rows, 'dead'));
    return rows.map((r) => r.id);
  });
}

/** Marks a node gone (it shut down), with its node.down event, unless it already was. */
export async function markNodeGone(db: Knex, id: string): Promise<boolean> {
  return db.transaction(async (trx) => {
    const rows: Array<{ id: string; region: string; roles: string[] }> = await trx('nodes')
      .where({ id })
      .whereNot('state', 'gone')
      .update({ state: 'gone', ended_at: trx.fn.now(), viewers: 0, streams: 0, bitrate_out: 0 })
      .returning(['id', 'region', 'roles']);
    await recordEvent(trx, downEvents(rows, 'gone'));
    return rows.length === 1;
  });
}

export async function getNode(db: Knex, id: string): Promise<NodeRecord | undefined> {
  const row: NodeRow | undefined = await db('nodes').where({ id }).first();
  return row ? toRecord(row) : undefined;
}

export interface NodeFilter {
  state?: NodeState;
  role?: string;
  region?: string;
  /** A page: ids after this one, at most `limit`. */
  after?: string;
  limit?: number;
}

export async function listNodes(db: Knex, filter: NodeFilter = {}): Promise<NodeRecord[]> {
  const query = db<NodeRow>('nodes').orderBy('id');
  if (filter.after !== undefined) query.where('id', '>', filter.after);
  if (filter.limit !== undefined) query.limit(filter.limit);
  if (filter.state) query.where('state', filter.state);
  if (filter.region) query.where('region', filter.region);
  if (filter.role) query.whereRaw('? = any(roles)', [filter.role]);
  const rows: NodeRow[] = await query;
  return rows.map(toRecord);
}

/** What a peer says when its connection to a node dropped unexpectedly (reportNodeLost). */
export interface NodeLossReport {
  /** The node the connection went to. */
  nodeId: string;
  /** The node whose connection dropped. */
  reporterId: string;
  /** What happened, for the audit log: "relay connection lost: ECONNRESET". */
  reason: string;
}

/** Longest reason kept: a line for the audit log, not a stack trace. */
const REASON_MAX_CHARS = 200;

/**
 * Records that a peer lost its connection to a node: call it when a connection to that node drops
 * unexpectedly (an edge's relay from its origin, an origin's relay to an edge). It declares
 * nothing by itself, so a mistaken or forged report costs nothing: the node registry of every node
 * then confirms it at its next tick and declares the node dead early, with the TTL reaper's
 * cleanup, only if the node has also been silent since the report (no heartbeat for two intervals)
 * and does not answer a probe of its /healthz (app/NodeRegistry.ts). Returns false when the node is
 * not up (already dead or gone, or unknown). Never throws for a reason too long; it is cut.
 */
export async function reportNodeLost(db: Knex, report: NodeLossReport): Promise<boolean> {
  const updated = await db('nodes')
    .where({ id: report.nodeId, state: 'up' })
    .update({ lost_reported_at: db.fn.now(), lost_reported_by: report.reporterId, lost_reason: report.reason.slice(0, REASON_MAX_CHARS) });
  return updated === 1;
}

/** An up node reported lost by a peer and silent since: a candidate for an early death. */
export interface SuspectNode {
  id: string;
  publicUrl: string;
  reportedBy: string;
  reason: string;
}

/**
 * Up nodes reported lost after their last heartbeat, whose heartbeat is now older than
 * `silentMs`: the ones the registry probes and, if they do not answer, declares dead.
 */
export async function listReportedSilentNodes(db: Knex, silentMs: number): Promise<SuspectNode[]> {
  const rows: Array<{ id: string; public_url: string; lost_reported_by: string | null; lost_reason: string | null }> = await db('nodes')
    .where('state', 'up')
    .whereNotNull('lost_reported_at')
    .andWhereRaw('lost_reported_at >= heartbeat_at')
    .andWhere('heartbeat_at', '<', db.raw(`now() - make_interval(secs => ?)`, [silentMs / 1000]))
    .select('id', 'public_url', 'lost_reported_by', 'lost_reason');
  return rows.map((r) => ({ id: r.id, publicUrl: r.public_url, reportedBy: r.lost_reported_by ?? '', reason: r.lost_reason ?? '' }));
}

/** How long ago an up node last heartbeated, in ms (database clock); undefined when it is not up. */
export async function nodeSilenceMs(db: Knex, id: string): Promise<number | undefined> {
  const row: { silent_ms: string | number } | undefined = await db('nodes')
    .where({ id, state: 'up' })
    .first(db.raw('extract(epoch from (now() - heartbeat_at)) * 1000 as silent_ms'));
  return row ? Number(row.silent_ms) : undefined;
}

/**
 * Marks one node dead if it is up and has not heartbeated for `silentMs`, as
 * markExpiredNodesDead does for the TTL (the row lock makes exactly one caller win). True when
 * this call declared it dead.
 */
export async function markSilentNodeDead(db: Knex, id: string, silentMs: number): Promise<boolean> {
  return db.transaction(async (trx) => {
    const rows: Array<{ id: string; region: string; roles: string[] }> = await trx('nodes')
      .where({ id, state: 'up' })
      .andWhere('heartbeat_at', '<', trx.raw(`now() - make_interval(secs => ?)`, [silentMs / 1000]))
      .update({ state: 'dead', ended_at: trx.fn.now(), viewers: 0, streams: 0, bitrate_out: 0 })
      .returning(['id', 'region', 'roles']);
    await recordEvent(trx, downEvents(rows, 'dead'));
    return rows.length === 1;
  });
}
