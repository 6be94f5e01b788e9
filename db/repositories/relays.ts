import type { Knex } from 'knex';

/** The `relays` table: which edge pulls which stream, from which upstream node. */

export interface RelayRecord {
  id: string;
  streamId: string;
  edgeNodeId: string;
  upstreamNodeId: string;
  state: string;
  viewers: number;
  /** The relay's place in its stream's tree (edge/RelayTree.ts); null for rows written before tiers. */
  treeKey: number | null;
  /** The media's path from the origin, great-circle hops summed (km); null for rows written before 011. */
  pathKm: number | null;
  createdAt: Date;
}

interface RelayRow {
  id: string | number;
  stream_id: string | number;
  edge_node_id: string;
  upstream_node_id: string;
  state: string;
  viewers: number;
  tree_key: string | number | null;
  path_km: number | null;
  created_at: Date;
}

function toRecord(row: RelayRow): RelayRecord {
  return {
    id: String(row.id),
    streamId: String(row.stream_id),
    edgeNodeId: row.edge_node_id,
    upstreamNodeId: row.upstream_node_id,
    state: row.state,
    viewers: row.viewers,
    treeKey: row.tree_key === null ? null : Number(row.tree_key),
    pathKm: row.path_km === null || row.path_km === undefined ? null : Number(row.path_km),
    createdAt: new Date(row.created_at),
  };
}

export async function createRelay(
  db: Knex,
  relay: { streamId: string; edgeNodeId: string; upstreamNodeId: string; treeKey: number; tier: number; pathKm?: number },
): Promise<RelayRecord> {
  const pathKm = relay.pathKm !== undefined && Number.isFinite(relay.pathKm) ? relay.pathKm : null;
  const columns = { upstream_node_id: relay.upstreamNodeId, tree_key: relay.treeKey, tier: relay.tier, path_km: pathKm, state: 'up' };
  const [row] = (await db('relays')
    .insert({ stream_id: relay.streamId, edge_node_id: relay.edgeNodeId, ...columns })
    .onConflict(['stream_id', 'edge_node_id'])
    .merge({ ...columns, created_at: db.fn.now() })
    .returning('*')) as RelayRow[];
  return toRecord(row!);
}

/** An edge relaying a stream, as a possible parent for another edge's relay of it. */
export interface ParentCandidate {
  edgeNodeId: string;
  publicUrl: string;
  region: string;
  lat: number;
  lon: number;
  treeKey: number;
  /** Edges between it and the origin (0: fed by the origin). */
  tier: number;
  /** Edges it feeds this stream to. */
  children: number;
  /** The media's path from the origin to it, great-circle hops summed (km); Infinity when unknown (a row from before 011). */
  pathKm: number;
  /** Its node's egress (bits/s to viewers and child relays) and egress capacity (--egress-capacity), as of its last heartbeat. */
  bitrateOut: number;
  egressCapacity: number;
}

/**
 * The edges that relay stream `streamId` and could feed another edge: up, not draining, recorded
 * with a tree key. Dead or unreachable ones still listed before the TTL are found out when asked.
 */
export async function listParentCandidates(db: Knex, streamId: string): Promise<ParentCandidate[]> {
  const children = db('relays').where('stream_id', streamId).groupBy('upstream_node_id').select('upstream_node_id').count('* as children').as('c');
  const rows: Array<{
    edge_node_id: string;
    public_url: string;
    region: string;
    lat: number;
    lon: number;
    tree_key: string | number;
    tier: number | null;
    children: string | number | null;
    path_km: number | null;
    bitrate_out: string | number;
    egress_capacity: string | number;
  }> = await db('relays')
    .join('nodes', 'nodes.id', 'relays.edge_node_id')
    .leftJoin(children, 'c.upstream_node_id', 'relays.edge_node_id')
    .where({ 'relays.stream_id': streamId, 'nodes.state': 'up', 'nodes.draining': false })
    .whereNotNull('relays.tree_key')
    .select('relays.edge_node_id', 'nodes.public_url', 'nodes.region', 'nodes.lat', 'nodes.lon', 'relays.tree_key', 'relays.tier', 'c.children', 'relays.path_km', 'nodes.bitrate_out', 'nodes.egress_capacity');
  return rows.map((r) => ({
    edgeNodeId: r.edge_node_id,
    publicUrl: r.public_url,
    region: r.region,
    lat: r.lat,
    lon: r.lon,
    treeKey: Number(r.tree_key),
    tier: r.tier ?? 0,
    children: Number(r.children ?? 0),
    pathKm: r.path_km === null ? Infinity : Number(r.path_km),
    bitrateOut: Number(r.bitrate_out),
    egressCapacity: Number(r.egress_capacity),
  }));
}

export async function deleteRelay(db: Knex, relay: { streamId: string; edgeNodeId: string }): Promise<void> {
  await db('relays').where({ stream_id: relay.streamId, edge_node_id: relay.edgeNodeId }).delete();
}

/** Deletes every relay an ended node took part in, as edge or as upstream; returns how many. */
export async function deleteRelaysOfNodes(db: Knex, nodeIds: string[]): Promise<number> {
  if (nodeIds.length === 0) return 0;
  return db('relays').whereIn('edge_node_id', nodeIds).orWhereIn('upstream_node_id', nodeIds).delete();
}

/** Deletes the relays of streams that are no longer live. */
export async function deleteRelaysOfStreams(db: Knex, streamNames: string[]): Promise<number> {
  if (streamNames.length === 0) return 0;
  return db('relays')
    .whereIn('stream_id', db('streams').select('id').whereIn('name', streamNames))
    .delete();
}

export async function listRelays(db: Knex, filter: { edgeNodeId?: string } = {}): Promise<RelayRecord[]> {
  const query = db<RelayRow>('relays').orderBy('id');
  if (filter.edgeNodeId) query.where('edge_node_id', filter.edgeNodeId);
  const rows: RelayRow[] = await query;
  return rows.map(toRecord);
}

/** Which streams each edge relays, for the balancer's snapshot. */
export async function listRelayedStreams(db: Knex): Promise<Array<{ nodeId: string; stream: string }>> {
  const rows: Array<{ node_id: string; name: string }> = await db('relays')
    .join('streams', 'streams.id', 'relays.stream_id')
    .select('relays.edge_node_id as node_id', 'streams.name');
  return rows.map((r) => ({ nodeId: r.node_id, stream: r.name }));
}

/** Records how many viewers each of an edge's relays has (shown by the admin API). */
export async function recordRelayViewers(db: Knex, edgeNodeId: string, counts: Array<{ stream: string; viewers: number }>): Promise<void> {
  await db.transaction(async (trx) => {
    for (const { stream, viewers } of counts) {
      await trx('relays')
        .where({ edge_node_id: edgeNodeId })
        .whereIn('stream_id', trx('streams').select('id').where({ name: stream }))
        .update({ viewers });
    }
  });
}

/**
 * For each relay of the stream `streamName`, the tiers of relays below it (0: it feeds no one),
 * by its edge's id, from the upstream links: what an origin weighs before it moves a relay it
 * feeds, with everything below it, a tier down (media/treePaths.ts chooseDemotion).
 */
export async function relayDepthsBelow(db: Knex, streamName: string): Promise<Map<string, number>> {
  const rows: Array<{ edge_node_id: string; upstream_node_id: string }> = await db('relays')
    .join('streams', 'streams.id', 'relays.stream_id')
    .where('streams.name', streamName)
    .select('relays.edge_node_id', 'relays.upstream_node_id');
  const children = new Map<string, string[]>();
  for (const r of rows) children.set(r.upstream_node_id, [...(children.get(r.upstream_node_id) ?? []), r.edge_node_id]);
  const depths = new Map<string, number>();
  // Deepest first by iteration, bounded by the rows: the table's links form a tree (tree keys), and
  // a node on the current path is not entered again, should a row be stale mid-move.
  const depthOf = (id: string, path: Set<string>): number => {
    const known = depths.get(id);
    if (known !== undefined) return known;
    path.add(id);
    let depth = 0;
    for (const child of children.get(id) ?? []) if (!path.has(child)) depth = Math.max(depth, 1 + depthOf(child, path));
    path.delete(id);
    depths.set(id, depth);
    return depth;
  };
  for (const r of rows) depthOf(r.edge_node_id, new Set());
  return depths;
}
