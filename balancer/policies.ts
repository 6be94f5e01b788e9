import type { PolicyName } from '../core/config.ts';
import { nodeLoad } from '../core/Role.ts';
import { compareNames, distanceKm, regionDistanceKm, regionsByDistance, type Position } from '../core/geo.ts';

/**
 * The balancer's modules and the simulator take these from here with the policies (they live in
 * core/geo.ts, which the geo map's process loads without this module's imports: the config schema
 * alone is 17 MB of its memory).
 */
export { compareNames, distanceKm, regionDistanceKm, regionsByDistance, type Position };

/**
 * Edge (and origin) selection: pure functions over a snapshot of the registry, so that the same
 * code answers a route request, renders HAProxy weights and runs in the simulator at a million
 * viewers. A policy only orders the eligible nodes of one region; `rank` decides eligibility and
 * the order of regions.
 */

export interface NodeSnapshot {
  id: string;
  roles: string[];
  region: string;
  lat: number;
  lon: number;
  publicUrl: string;
  capacity: number;
  viewers: number;
  cpu: number;
  /** Bits/s the node sends, and the most its network sends (--egress-capacity); without them, egress does not count. */
  bitrateOut?: number;
  egressCapacity?: number;
  draining: boolean;
  /** Streams this node already serves (edges: relayed; origins: published). */
  streams: ReadonlySet<string>;
  /** HAProxy agent-check port, when the node serves one. */
  agentPort?: number | null;
  /** Where an origin takes RTMP publishers (rtmp://host:port/live), when it does. */
  rtmpUrl?: string | null;
  /** The address the node announces for media (HAProxy reaches a node by address: balancer/HaproxyConfig.ts). */
  announcedIp?: string;
}

export interface RouteRequest {
  stream: string;
  role: 'edge' | 'origin';
  /** The client's position; a pinned region is nearest by definition. */
  location: { region?: string; lat?: number; lon?: number };
}

export interface Thresholds {
  /** Load above which a node takes no new streams (an edge: no new relay; an origin: no publisher). */
  streams: number;
  /** Load above which a node takes no new viewers at all. Higher than `streams`. */
  viewers: number;
}

export interface Policy {
  readonly name: PolicyName;
  /**
   * Orders the eligible nodes of one region, best first. `region` is every node of the role in
   * that region, eligible or not (full, draining), in snapshot order: what the region carries.
   * The caller wants at most `limit` of them; a policy may return only those (the first `limit`
   * of its whole order), and the hashing ones do, since a redirect needs one.
   */
  order(nodes: NodeSnapshot[], request: RouteRequest, region: readonly NodeSnapshot[], limit?: number): NodeSnapshot[];
  /**
   * Set when order() sorts by a total order of the nodes alone, whatever the request: the order
   * of a subset is then the subset of the order, so RouteIndex orders a region once per snapshot.
   */
  readonly fixedOrder?: boolean;
  /**
   * Set when order() depends on its arguments alone (no turn, no coin): within one snapshot the
   * same stream in the same region gets the same answer, so RouteIndex keeps it.
   */
  readonly deterministic?: boolean;
}

export { POLICY_NAMES, type PolicyName } from '../core/config.ts';

export function loadOf(node: NodeSnapshot): number {
  return nodeLoad(node.viewers, node.capacity, node.cpu, node.bitrateOut, node.egressCapacity);
}

/** Fill one node up to the threshold before using the next: fewest nodes busy, others idle. */
export const packing: Policy = {
  name: 'packing',
  fixedOrder: true,
  deterministic: true,
  order: (nodes) => [...nodes].sort((a, b) => loadOf(b) - loadOf(a) || compareNames(a.id, b.id)),
};

export const leastUsed: Policy = {
  name: 'least-used',
  fixedOrder: true,
  deterministic: true,
  order: (nodes) => [...nodes].sort((a, b) => loadOf(a) - loadOf(b) || compareNames(a.id, b.id)),
};

export function roundRobin(): Policy {
  /** The next turn, per role and region: publishes must not move the viewers' rotation. */
  const next = new Map<string, number>();
  return {
    name: 'round-robin',
    order(nodes, request) {
      if (nodes.length === 0) return [];
      const sorted = [...nodes].sort((a, b) => compareNames(a.id, b.id));
      const key = `${request.role}/${sorted[0]!.region}`;
      const start = (next.get(key) ?? 0) % sorted.length;
      next.set(key, start + 1);
      return [...sorted.slice(start), ...sorted.slice(0, start)];
    },
  };
}

export function random(rng: () => number = Math.random): Policy {
  return {
    name: 'random',
    order(nodes) {
      const shuffled = [...nodes];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      return shuffled;
    },
  };
}

/**
 * How far above the region's average load a node may go before stream-affinity passes it over.
 * 25 %: the bounded-load consistent hashing of Mirrokni et al. keeps moves rare with ε ≈ 0.25.
 */
export const AFFINITY_SLACK = 0.25;

/**
 * A node's rendezvous score for a stream: FNV-1a over "stream NUL node", then MurmurHash3's
 * finaliser so that names differing in one character score far apart. Not cryptographic (nobody
 * gains by steering it) and cheap, because a decision scores every open edge of a region.
 */
export function rendezvousScore(stream: string, node: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < stream.length; i++) h = Math.imul(h ^ stream.charCodeAt(i), 0x01000193);
  h = Math.imul(h, 0x01000193); // the NUL between them
  for (let i = 0; i < node.length; i++) h = Math.imul(h ^ node.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The first `limit` of `nodes` by rendezvous score for `stream`, highest first, ties by id, those
 * above `bound` after all the others. A partial selection when few are wanted (a decision scores
 * every node, but sorts none).
 */
function byScoreUnder(nodes: readonly NodeSnapshot[], stream: string, bound: number, limit = Infinity): NodeSnapshot[] {
  const scored = nodes.map((node) => ({ node, score: rendezvousScore(stream, node.id), over: loadOf(node) > bound }));
  const before = (a: (typeof scored)[number], b: (typeof scored)[number]) => Number(a.over) - Number(b.over) || b.score - a.score || compareNames(a.node.id, b.node.id);
  if (limit >= scored.length) return scored.sort(before).map((s) => s.node);
  const best: typeof scored = [];
  for (const s of scored) {
    if (best.length === limit && before(s, best[limit - 1]!) >= 0) continue;
    let i = Math.min(best.length, limit - 1);
    best[i] = s;
    for (; i > 0 && before(best[i]!, best[i - 1]!) < 0; i--) [best[i - 1], best[i]] = [best[i]!, best[i - 1]!];
  }
  return best.map((s) => s.node);
}

/** The bounded-load rule's limit over `nodes`: their mean load × (1 + AFFINITY_SLACK), plus one viewer. */
function loadBound(nodes: readonly NodeSnapshot[]): number {
  let sum = 0;
  let capacity = -Infinity;
  for (const n of nodes) {
    sum += loadOf(n);
    capacity = Math.max(capacity, n.capacity);
  }
  return (sum / nodes.length) * (1 + AFFINITY_SLACK) + 1 / capacity;
}

/**
 * Consistent hashing on the stream (rendezvous hashing) with bounded load: a stream's viewers go
 * to the same few edges, so each edge pulls few streams and origin egress stays low; a node more
 * than AFFINITY_SLACK above the region's average load is passed over for the next in hash order.
 * It spreads the streams over the whole region, though: every edge stays busy, none can drain.
 */
export const streamAffinity: Policy = {
  name: 'stream-affinity',
  deterministic: true,
  order: (nodes, request, _region, limit) => (nodes.length === 0 ? [] : byScoreUnder(nodes, request.stream, loadBound(nodes), limit)),
};

/**
 * The mean load compact fills a region's edges to before it opens one more: between the default
 * streams threshold (0.8: an edge takes no new stream above it) and the viewers threshold (0.95),
 * so open edges fill up with their own streams' viewers and new streams open the next edge. The
 * simulator at 10k edges / 1M viewers: 0.9 keeps edges in use 80 % loaded with 120k relays at the
 * peak; 0.8 gives 74 % with 105k; packing 82 % with 151k, stream-affinity 6 % with 101k.
 */
export const COMPACT_TARGET = 0.9;

/**
 * The default: rendezvous hashing over only the first k edges of a region in a stable order (by
 * id), k = the region's demand (the summed load of all its edges) ÷ COMPACT_TARGET rounded up;
 * of those, the eligible ones are open. An open edge that
 * already relays the stream comes first (hash order among them), so a stream's viewers fill an edge
 * up to the viewers threshold before a second edge pulls it; a new stream goes to the open edges
 * in hash order with bounded load, which spreads streams over them. The edges past k get no new
 * viewers, so when demand falls they empty and an autoscaler can drain them; when it rises, k
 * grows one edge at a time. They follow in id order, to spill to when the open ones are full.
 */
export const compact: Policy = {
  name: 'compact',
  deterministic: true,
  order(nodes, request, region, limit = Infinity) {
    const opened = openEdges(region);
    const carrying: NodeSnapshot[] = [];
    const others: NodeSnapshot[] = [];
    const rest: NodeSnapshot[] = [];
    for (const n of nodes) (!opened.has(n) ? rest : n.streams.has(request.stream) ? carrying : others).push(n);
    const out = byScoreUnder(carrying, request.stream, Infinity, limit);
    if (out.length < limit && others.length > 0) out.push(...byScoreUnder(others, request.stream, loadBound(nodes.filter((n) => opened.has(n))), limit - out.length));
    if (out.length < limit) out.push(...rest.sort((a, b) => compareNames(a.id, b.id)).slice(0, limit - out.length));
    return out;
  },
};

/**
 * The first k edges of a region by id, worked out once per region list: RouteIndex hands the
 * policy the same list for every decision within a snapshot, so this runs once a second per
 * region there (rank() builds new lists and pays it each time).
 */
const opening = new WeakMap<readonly NodeSnapshot[], Set<NodeSnapshot>>();
function openEdges(region: readonly NodeSnapshot[]): Set<NodeSnapshot> {
  let opened = opening.get(region);
  if (!opened) {
    const byId = [...region].sort((a, b) => compareNames(a.id, b.id));
    const demand = byId.reduce((sum, n) => sum + loadOf(n), 0);
    opened = new Set(byId.slice(0, Math.max(1, Math.ceil(demand / COMPACT_TARGET))));
    opening.set(region, opened);
  }
  return opened;
}

export function createPolicy(name: PolicyName, rng?: () => number): Policy {
  switch (name) {
    case 'packing':
      return packing;
    case 'least-used':
      return leastUsed;
    case 'round-robin':
      return roundRobin();
    case 'random':
      return random(rng);
    case 'stream-affinity':
      return streamAffinity;
    case 'compact':
      return compact;
  }
}

export interface Choice {
  node: NodeSnapshot;
  /** Distance from the client, when both positions are known. */
  distanceKm?: number;
  load: number;
}

/** Where the client is: its own position, or the centre of its pinned region's nodes. */
export function anchorOf(location: RouteRequest['location'], pinned: readonly Position[]): Position | undefined {
  if (location.lat !== undefined && location.lon !== undefined) return { lat: location.lat, lon: location.lon };
  if (pinned.length === 0) return undefined;
  return { lat: pinned.reduce((s, n) => s + n.lat, 0) / pinned.length, lon: pinned.reduce((s, n) => s + n.lon, 0) / pinned.length };
}

/** Whether `node` may take this request: its role, not draining, under the threshold that applies. */
export function eligible(node: NodeSnapshot, request: RouteRequest, thresholds: Thresholds): boolean {
  if (!node.roles.includes(request.role) || node.draining) return false;
  return loadOf(node) < (node.streams.has(request.stream) ? thresholds.viewers : thresholds.streams);
}

/**
 * Ranks the nodes that may take this request: the role's live, non-draining nodes under their
 * threshold, region by region from the nearest (the client's pinned region first, then by
 * regionDistanceKm), each region ordered by the policy. The first choice is where the request
 * goes; the rest are where it spills when that one is full. `limit` stops after that many choices
 * (a redirect needs one), sparing the policy the far regions. This is the definition; RouteIndex
 * gives the same answer without touching every node.
 */
export function rank(nodes: readonly NodeSnapshot[], request: RouteRequest, policy: Policy, thresholds: Thresholds, limit = Infinity): Choice[] {
  const { location } = request;
  const regions = new Map<string, NodeSnapshot[]>();
  const sites = new Map<string, NodeSnapshot[]>();
  const pinned: NodeSnapshot[] = [];
  for (const n of nodes) {
    if (n.region === location.region) pinned.push(n);
    if (!n.roles.includes(request.role)) continue;
    const here = sites.get(n.region);
    if (here) here.push(n);
    else sites.set(n.region, [n]);
    if (!eligible(n, request, thresholds)) continue;
    const members = regions.get(n.region);
    if (members) members.push(n);
    else regions.set(n.region, [n]);
  }
  const anchor = anchorOf(location, pinned);
  const ordered = [...regions.entries()]
    .map(([name, members]) => ({
      name,
      members,
      distance: name === location.region ? -1 : anchor ? regionDistanceKm(anchor, sites.get(name)!) : 0,
    }))
    .sort((a, b) => a.distance - b.distance || compareNames(a.name, b.name));
  const hasPosition = location.lat !== undefined && location.lon !== undefined;
  const choices: Choice[] = [];
  for (const region of ordered) {
    for (const node of policy.order(region.members, request, sites.get(region.name)!, limit - choices.length)) {
      choices.push({ node, distanceKm: hasPosition ? distanceKm(anchor!, node) : undefined, load: loadOf(node) });
      if (choices.length >= limit) return choices;
    }
  }
  return choices;
}
