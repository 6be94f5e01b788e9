import { distanceKm } from '../core/geo.ts';
import { LOCAL_KM, MAX_STRETCH } from '../media/treePaths.ts';
import type { ParentCandidate } from '../db/repositories/relays.ts';
import type { UplinkTarget } from './Uplink.ts';

/**
 * A stream's relay tree: the origin at the root, each edge's relay below the node it pulls from.
 *
 * Where an edge pulls from, by the path the media would take: every upstream is given the path's
 * length from the origin (pathKm: the great-circle hops summed, a latency estimate) and its depth
 * (tier: edges between the origin and the new relay). A path is *bounded* when it is at most
 * MAX_STRETCH × the great-circle distance from the origin (+ LOCAL_KM) and at most MAX_TIER deep;
 * a parent *has room* when it feeds fewer than --edge-max-children edges the stream and its egress
 * (as of its last heartbeat) leaves room for one more relay. The order:
 *   1. with --origin-max-relays set (the origin's relays are a budget; without it the origin comes
 *      first, as before tiers), a parent near this edge (its region, or within LOCAL_KM) with a
 *      bounded path and room: the lowest tier, then the fewest children, then the shortest path. So a region's edges fan out below its first relay
 *      as a star, and the region spends one of the origin's relays, not one per edge: the budget
 *      goes to regions far apart;
 *   2. other parents with a bounded path and room, the least cost first: pathKm + HOP_KM per
 *      tier, so a region far from the others pulls from the relay on its way from the origin
 *      rather than from the nearest region that happens to relay; these too come before the
 *      origin when it has a budget, which so goes to the edges with no bounded parent (asked
 *      after them, the origin's relays went to the first edges to come, and 3× as many paths
 *      passed the bound in the simulator at 1,000 edges);
 *   3. the origin (it answers relay-full past --origin-max-relays or its egress capacity);
 *   4. the rest (unbounded paths, parents without room), the least cost first: an edge never
 *      refuses a viewer over its path, and a parent's figures may be stale.
 * Before (nearest region first, then lowest tier), regions chained across the globe: at full size
 * in the simulator 61 % of joins were 3 or more hops down, the deepest 12.
 *
 * Why there are no loops, by construction: every relay has a tree key, a number; the origin's is
 * 0. A relay that feeds no one takes, when it attaches, a key larger than its parent's
 * (max(now, parent + 1)). A relay that feeds other edges keeps its key, and a parent takes it only
 * if the parent's own key is smaller (media/RelayServer.ts answers relay-order otherwise). So keys
 * grow strictly along every branch, whatever re-attaches when, and following parents can never
 * come back to where it started. A relay between upstreams takes no new children, so a relay that
 * feeds no one cannot gain a child while its key changes.
 */

/**
 * The deepest tier a path may reach and still count as bounded: 3 edge → edge hops. Each hop is
 * one more node whose loss makes the edges below it re-attach (and ~1 ms of forwarding: `bench
 * --only tiers`); 3 still gives a tree of 4 + 32 + 256 + 2,048 edges at --origin-max-relays 4 and 8
 * children each, more than a stream relays (the most-watched one at full size in the simulator:
 * ~730 edges with compact).
 */
export const MAX_TIER = 3;

/**
 * What a hop costs in the order, in km of path: 500 km, ~2.5 ms of fibre one way. It makes a
 * remote parent one tier shallower worth 500 km of detour: depth costs little latency but
 * exposure, and the bound (MAX_TIER) caps it anyway.
 */
export const HOP_KM = 500;

/**
 * Bits/s a relay is assumed to add to its parent's egress when the stream's own bitrate is not
 * known: a 720p simulcast publish (2,000 + 500 + 150 kbit/s and Opus), as the simulator's default.
 */
export const RELAY_BITRATE = 2_700_000;

/** Upstreams tried per round: the origin and a few parents; past them the round failed. */
export const UPSTREAMS_PER_ROUND = 5;

export interface UpstreamChoice {
  /** The stream's origin, with its position (the nodes table's lat/lon). */
  origin: UplinkTarget & { lat: number; lon: number };
  /** Edges relaying the stream (db/repositories/relays.ts listParentCandidates). */
  parents: readonly ParentCandidate[];
  self: { id: string; region: string; lat: number; lon: number };
  /** The upstream just lost: not asked again this round. */
  lost?: string;
  /** This relay's key when it feeds other edges: only parents with a smaller key can take it. */
  treeKey?: number;
  /**
   * --edge-max-children as this edge has it: parents feeding that many are left out, as they would
   * refuse (assumed the same on every edge; a parent with another limit still answers for itself).
   */
  maxChildren?: number;
  /** Bits/s the relay adds to its parent's egress (default RELAY_BITRATE). */
  relayBitrate?: number;
  /**
   * --origin-max-relays as this edge has it (assumed the same on the origin): when set, near
   * parents are asked before the origin, to spend its relays on regions far apart.
   */
  originMaxRelays?: number;
}

/** An upstream to ask, with the path length (km from the origin) this edge's relay would have through it. */
export interface RankedUpstream extends UplinkTarget {
  pathKm: number;
  /** The new relay's tier through it (0: fed by the origin). */
  tier: number;
}

/**
 * The upstreams to ask in a round, in order (at most UPSTREAMS_PER_ROUND): rankUpstreams' first,
 * the origin always among them (last, in place of a parent, when it ranks later): parents'
 * figures are a heartbeat old, and a round of parents that all refuse must not keep the origin
 * from being asked.
 */
export function orderUpstreams(choice: UpstreamChoice): RankedUpstream[] {
  const ranked = rankUpstreams(choice);
  const round = ranked.slice(0, UPSTREAMS_PER_ROUND);
  const origin = ranked.findIndex((t) => t.origin);
  if (origin >= UPSTREAMS_PER_ROUND) round[UPSTREAMS_PER_ROUND - 1] = ranked[origin]!;
  return round;
}

/** Every upstream the edge could ask, best first (see the order above); the origin unless just lost. */
export function rankUpstreams({ origin, parents, self, lost, treeKey, maxChildren = Infinity, relayBitrate = RELAY_BITRATE, originMaxRelays }: UpstreamChoice): RankedUpstream[] {
  const directKm = distanceKm(origin, self);
  const boundKm = MAX_STRETCH * directKm + LOCAL_KM;
  const near: Array<{ p: ParentCandidate; km: number }> = [];
  const far: Array<{ p: ParentCandidate; km: number; cost: number }> = [];
  const rest: Array<{ p: ParentCandidate; km: number; cost: number }> = [];
  for (const p of parents) {
    if (p.edgeNodeId === self.id || p.edgeNodeId === lost || (treeKey !== undefined && p.treeKey >= treeKey)) continue;
    const hopKm = distanceKm(p, self);
    const km = p.pathKm + hopKm;
    const cost = km + HOP_KM * (p.tier + 1);
    const room = p.children < maxChildren && p.bitrateOut + relayBitrate <= p.egressCapacity;
    const bounded = km <= boundKm && p.tier + 1 <= MAX_TIER;
    if (!room || !bounded) rest.push({ p, km, cost });
    else if (p.region === self.region || hopKm <= LOCAL_KM) near.push({ p, km });
    else far.push({ p, km, cost });
  }
  const byId = (a: ParentCandidate, b: ParentCandidate) => (a.edgeNodeId < b.edgeNodeId ? -1 : a.edgeNodeId > b.edgeNodeId ? 1 : 0);
  near.sort((a, b) => a.p.tier - b.p.tier || a.p.children - b.p.children || a.km - b.km || byId(a.p, b.p));
  const byCost = (a: { p: ParentCandidate; cost: number }, b: { p: ParentCandidate; cost: number }) => a.cost - b.cost || a.p.children - b.p.children || byId(a.p, b.p);
  far.sort(byCost);
  rest.sort(byCost);
  const target = ({ p, km }: { p: ParentCandidate; km: number }): RankedUpstream => ({ nodeId: p.edgeNodeId, url: p.publicUrl, pathKm: km, tier: p.tier + 1 });
  const out: RankedUpstream[] = [];
  // Asked after every bounded parent (or with none), a full origin may make room for this edge.
  const makeRoom = originMaxRelays !== undefined || near.length + far.length === 0;
  const originTarget = origin.nodeId === lost ? [] : [{ nodeId: origin.nodeId, url: origin.url, pathKm: directKm, tier: 0, origin: true, makeRoom }];
  if (originMaxRelays === undefined) out.push(...originTarget, ...near.map(target), ...far.map(target));
  else out.push(...near.map(target), ...far.map(target), ...originTarget);
  for (const x of rest) out.push(target(x));
  return out;
}

