import { distanceKm } from '../core/geo.ts';
import type { ParentCandidate } from '../db/repositories/relays.ts';
import type { UplinkTarget } from './Uplink.ts';

/**
 * A stream's relay tree: the origin at the root, each edge's relay below the node it pulls from.
 *
 * Where an edge pulls from: the origin first; when the origin feeds as many edges as it may
 * (--origin-max-relays: it answers relay-full), another edge that relays the stream: one in the
 * edge's own region first, then the nearest; among those of a region, the one nearest the origin
 * (lowest tier), then the one feeding the fewest edges. So a region takes one pull from far away
 * and fans it out locally, as a star below its first relay until that one is full
 * (--edge-max-children), then a level below: the nearest parent with the fewest children alone
 * would chain each new edge below the last one (found by the simulator: 73 % of joins 3 or more
 * hops down at full size).
 *
 * Why there are no loops, by construction: every relay has a tree key, a number; the origin's is
 * 0. A relay that feeds no one takes, when it attaches, a key larger than its parent's
 * (max(now, parent + 1)). A relay that feeds other edges keeps its key, and a parent takes it only
 * if the parent's own key is smaller (media/RelayServer.ts answers relay-order otherwise). So keys
 * grow strictly along every branch, whatever re-attaches when, and following parents can never
 * come back to where it started. A relay between upstreams takes no new children, so a relay that
 * feeds no one cannot gain a child while its key changes.
 */

/** Upstreams tried per round: the origin and a few parents; past them the round failed. */
export const UPSTREAMS_PER_ROUND = 5;

/** The key a relay that feeds no one takes when it attaches below an upstream with `parentKey`. */
export function childKey(parentKey: number, now = Date.now()): number {
  return Math.max(now, parentKey + 1);
}

export interface UpstreamChoice {
  origin: UplinkTarget;
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
}

/** The upstreams to ask, in order (at most UPSTREAMS_PER_ROUND). */
export function orderUpstreams({ origin, parents, self, lost, treeKey, maxChildren = Infinity }: UpstreamChoice): UplinkTarget[] {
  const usable = parents.filter(
    (p) =>
      p.edgeNodeId !== self.id &&
      p.edgeNodeId !== lost &&
      (treeKey === undefined || p.treeKey < treeKey) &&
      p.children < maxChildren &&
      // Full by its last heartbeat: it would refuse. One below its capacity is asked, and answers for itself.
      p.bitrateOut < p.egressCapacity,
  );
  // Region distance: 0 within the edge's own region, else the nodes' distance.
  const distance = new Map(usable.map((p) => [p.edgeNodeId, p.region === self.region ? 0 : distanceKm(self, p)]));
  usable.sort(
    (a, b) => distance.get(a.edgeNodeId)! - distance.get(b.edgeNodeId)! || a.tier - b.tier || a.children - b.children || (a.edgeNodeId < b.edgeNodeId ? -1 : 1),
  );
  const targets = usable.map((p) => ({ nodeId: p.edgeNodeId, url: p.publicUrl }));
  if (origin.nodeId !== lost) targets.unshift(origin);
  return targets.slice(0, UPSTREAMS_PER_ROUND);
}
