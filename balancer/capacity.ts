import { nodeLoad } from '../core/Role.ts';

/**
 * How many edges each region wants, for an autoscaler to act on (/metrics and GET
 * /api/v1/capacity). A pure function of the registry, like the policies.
 *
 * Demand is what the region's edges carry, in viewer slots: each edge's load (the larger of its
 * viewer share, its CPU and its egress share, as the balancer ranks by) times its capacity. Edges are wanted for
 *
 *   max(demand / targetUtilisation, demand + slackViewers)
 *
 * slots, in whole edges, at least `minEdges`. The two terms pull against each other:
 * - a target utilisation below 1 leaves room in proportion to the load, because viewers arrive
 *   in bursts and each stream costs every edge that carries it one relay, so a fleet packed to
 *   100 % spreads new streams over more relays (fragmentation) and turns joins away;
 * - the slack floor keeps absolute room in a quiet region, where a tenth of a small load is not
 *   enough for one popular stream to start.
 * Scaling down uses a lower utilisation (SCALE_DOWN_BAND), so a load near a boundary does not make
 * the count flap. The edges that would go are named (`drainCandidates`: the least-loaded first);
 * edges that are draining but still have viewers are added to the count, so an autoscaler only
 * removes capacity once the drained nodes are empty.
 */

export interface CapacitySettings {
  /** Share of the region's edge capacity it should use, 0..1. */
  targetUtilisation: number;
  /** Viewer slots each region keeps free, whatever its load. */
  slackViewers: number;
  /** Edges a region keeps even with no viewers (0: regions may scale to zero). */
  minEdges: number;
  /** The capacity of an edge, for a region with none up to measure (its nodes' default). */
  defaultCapacity: number;
}

/** What the planner needs of an edge. */
export interface EdgeSample {
  id: string;
  region: string;
  capacity: number;
  viewers: number;
  cpu: number;
  /** Bits/s sent, and the most the edge's network sends: an edge full by egress counts as full. */
  bitrateOut?: number;
  egressCapacity?: number;
  draining: boolean;
}

export interface RegionCapacity {
  region: string;
  /** Edges up and taking viewers. */
  edges: number;
  /** Edges up but draining, and how many of them still have viewers. */
  draining: number;
  drainingBusy: number;
  viewers: number;
  /** Viewer slots in use (see above) and on offer by the edges taking viewers. */
  demand: number;
  capacity: number;
  /** demand / capacity, 0 when there is no capacity. */
  utilisation: number;
  /** Edges the region wants taking viewers. */
  wantedEdges: number;
  /** What an autoscaler should run: wanted plus the drained edges not yet empty. */
  desiredEdges: number;
  /** When wanted < edges: which edges to drain first (least loaded). */
  drainCandidates: string[];
}

/**
 * Scale down only once the smaller fleet would run at most this share of the target utilisation:
 * with 0.8, a region at target 0.7 grows past 70 % and shrinks below 56 %.
 */
export const SCALE_DOWN_BAND = 0.8;

export function planCapacity(edges: EdgeSample[], settings: CapacitySettings, regions: Iterable<string> = []): RegionCapacity[] {
  const { targetUtilisation: target, slackViewers, minEdges, defaultCapacity } = settings;
  if (!(target > 0 && target <= 1)) throw new TypeError(`targetUtilisation must be in (0, 1], got ${target}`);
  if (slackViewers < 0 || minEdges < 0 || defaultCapacity <= 0) throw new TypeError('slackViewers and minEdges must be >= 0, defaultCapacity > 0');
  const byRegion = new Map<string, EdgeSample[]>();
  for (const region of regions) byRegion.set(region, []);
  for (const edge of edges) byRegion.set(edge.region, [...(byRegion.get(edge.region) ?? []), edge]);

  const plans: RegionCapacity[] = [];
  for (const [region, all] of [...byRegion].sort(([a], [b]) => a.localeCompare(b))) {
    const serving = all.filter((e) => !e.draining);
    const draining = all.filter((e) => e.draining);
    const slotsOf = (e: EdgeSample) => nodeLoad(e.viewers, e.capacity, e.cpu, e.bitrateOut, e.egressCapacity) * e.capacity;
    // Viewers on draining edges are leaving for the serving ones: count them as demand there.
    const demand = all.reduce((sum, e) => sum + slotsOf(e), 0);
    const capacity = serving.reduce((sum, e) => sum + e.capacity, 0);
    const unit = all.length > 0 ? all.reduce((sum, e) => sum + e.capacity, 0) / all.length : defaultCapacity;
    const edgesFor = (utilisation: number) => Math.max(minEdges, Math.ceil(Math.max(demand / utilisation, demand + slackViewers) / unit - 1e-9));
    const up = edgesFor(target);
    const down = edgesFor(target * SCALE_DOWN_BAND);
    const wantedEdges = up > serving.length ? up : Math.min(serving.length, down);
    const drainingBusy = draining.filter((e) => e.viewers > 0).length;
    const surplus = Math.max(0, serving.length - wantedEdges);
    plans.push({
      region,
      edges: serving.length,
      draining: draining.length,
      drainingBusy,
      viewers: all.reduce((sum, e) => sum + e.viewers, 0),
      demand: Math.round(demand),
      capacity,
      utilisation: capacity > 0 ? Number((demand / capacity).toFixed(3)) : 0,
      wantedEdges,
      desiredEdges: wantedEdges + drainingBusy,
      drainCandidates: [...serving]
        .sort((a, b) => slotsOf(a) - slotsOf(b) || a.id.localeCompare(b.id))
        .slice(0, surplus)
        .map((e) => e.id),
    });
  }
  return plans;
}
