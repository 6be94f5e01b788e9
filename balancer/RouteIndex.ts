import {
  anchorOf,
  compareNames,
  distanceKm,
  loadOf,
  regionsByDistance,
  type Choice,
  type NodeSnapshot,
  type Policy,
  type Position,
  type RouteRequest,
  type Thresholds,
} from './policies.ts';

/**
 * rank() without touching every node: built once per registry snapshot, it keeps, per role, each
 * region's candidates (nodes of the role, not draining, under the thresholds, with their
 * load worked out once) and the order of regions for each client position it has seen. A decision
 * then walks the nearest regions only, filters their candidates for the stream and lets the policy
 * order them; a fixed-order policy (packing, least-used) is ordered once per region and snapshot.
 * It answers exactly what rank(nodes, request, policy, thresholds, limit) answers
 * (test/routeIndex.test.ts), the policy being called on the same nodes in the same order.
 */

/**
 * Client positions whose region order is kept per role. Clients come from a GeoIP database's
 * city coordinates, a few hundred thousand places at most, and one order is a few hundred bytes
 * at 100 regions; past this many the cache starts over rather than grow without bound.
 */
const REGION_ORDER_CACHE = 50_000;

/**
 * A deterministic policy's answers kept per region and snapshot: one per stream watched there in
 * that second (and limit asked), a few thousand at most on a busy cluster; past this many the
 * region's answers start over.
 */
const ANSWER_CACHE = 10_000;

interface RegionEntry {
  /** Nodes of the role, not draining, under the higher threshold, in snapshot order. */
  candidates: NodeSnapshot[];
  loads: Float64Array;
  /** For a fixed-order policy: the candidates in its order, and their loads. */
  ordered?: { nodes: NodeSnapshot[]; loads: Float64Array };
  /** For a deterministic policy: its answer per stream and limit, for this snapshot. */
  answers?: Map<string, NodeSnapshot[]>;
}

interface RoleEntry {
  /** Each region's nodes of the role, eligible or not: what it carries (the policy's `region`). */
  members: Map<string, NodeSnapshot[]>;
  /** Where each region is: its nodes' distinct positions (regionDistanceKm's sites). */
  sites: Map<string, Position[]>;
  /** The regions and their positions, as text: region orders stay valid while it is the same. */
  geography: string;
  regions: Map<string, RegionEntry>;
  /** Region order per client position; shared with the next snapshot's index while the geography holds. */
  orders: Map<string, string[]>;
}

export class RouteIndex {
  readonly #nodes: readonly NodeSnapshot[];
  readonly #policy: Policy;
  readonly #thresholds: Thresholds;
  readonly #roles = new Map<string, RoleEntry>();
  /** Every node of a region (any role): a pinned client without a position is placed at their centre. */
  readonly #pinned = new Map<string, Position[]>();

  /** The previous index's region orders per role, with the geography they were worked out for. */
  readonly #inherited: ReadonlyMap<string, { geography: string; orders: Map<string, string[]> }>;

  /**
   * `previous`, the index of the snapshot before: its region orders are kept for each role whose
   * nodes have not moved (a node's join, death or move starts that role's cache afresh), so that
   * the cost of ordering the regions for a client position is paid once, not once per snapshot.
   */
  constructor(nodes: readonly NodeSnapshot[], policy: Policy, thresholds: Thresholds, previous?: RouteIndex) {
    if (!Array.isArray(nodes)) throw new TypeError('nodes must be an array');
    if (previous !== undefined && !(previous instanceof RouteIndex)) throw new TypeError('previous must be a RouteIndex');
    this.#nodes = nodes;
    this.#policy = policy;
    this.#thresholds = thresholds;
    // Only the caches are kept, not the index: a chain of snapshots must not stay reachable.
    this.#inherited = new Map([...(previous ? previous.#roles : [])].map(([role, entry]) => [role, { geography: entry.geography, orders: entry.orders }]));
    for (const n of nodes) {
      const pinned = this.#pinned.get(n.region);
      if (pinned) pinned.push(n);
      else this.#pinned.set(n.region, [n]);
    }
  }

  /** The registry snapshot this index was built from. */
  get nodes(): readonly NodeSnapshot[] {
    return this.#nodes;
  }

  /** What rank(this.nodes, request, policy, thresholds, limit) returns. */
  rank(request: RouteRequest, limit = Infinity): Choice[] {
    const role = this.#role(request.role);
    const { location } = request;
    const anchor = anchorOf(location, this.#pinned.get(location.region ?? '') ?? []);
    const hasPosition = location.lat !== undefined && location.lon !== undefined;
    const choices: Choice[] = [];
    for (const name of this.#regionOrder(role, location.region, anchor)) {
      const region = role.regions.get(name);
      if (!region) continue;
      const choose = (node: NodeSnapshot) => choices.push({ node, distanceKm: hasPosition ? distanceKm(anchor!, node) : undefined, load: loadOf(node) });
      if (region.ordered) {
        // Already in the policy's order: take eligible nodes until there are enough.
        const { nodes, loads } = region.ordered;
        for (let i = 0; i < nodes.length && choices.length < limit; i++) if (this.#takes(nodes[i]!, loads[i]!, request.stream)) choose(nodes[i]!);
      } else {
        for (const node of this.#order(region, request, role.members.get(name)!, limit - choices.length)) {
          choose(node);
          if (choices.length >= limit) break;
        }
      }
      if (choices.length >= limit) return choices;
    }
    return choices;
  }

  /** The policy's order of a region's eligible nodes for this request, kept when the policy is deterministic. */
  #order(region: RegionEntry, request: RouteRequest, members: readonly NodeSnapshot[], limit: number): NodeSnapshot[] {
    const key = `${limit}|${request.stream}`;
    const kept = region.answers?.get(key);
    if (kept) return kept;
    const eligible = region.candidates.filter((n, i) => this.#takes(n, region.loads[i]!, request.stream));
    const answer = eligible.length === 0 ? [] : this.#policy.order(eligible, request, members, limit);
    if (this.#policy.deterministic) {
      region.answers ??= new Map();
      if (region.answers.size >= ANSWER_CACHE) region.answers.clear();
      region.answers.set(key, answer);
    }
    return answer;
  }

  /** Whether a candidate may take this stream: under the viewers threshold if it serves it, else the streams one. */
  #takes(node: NodeSnapshot, load: number, stream: string): boolean {
    return load < (node.streams.has(stream) ? this.#thresholds.viewers : this.#thresholds.streams);
  }

  /** Region names nearest first, the pinned region before all (rank()'s order, ties by name). */
  #regionOrder(role: RoleEntry, pinned: string | undefined, anchor: Position | undefined): string[] {
    const key = `${pinned ?? ''}|${anchor ? `${anchor.lat},${anchor.lon}` : ''}`;
    let order = role.orders.get(key);
    if (!order) {
      const names = anchor ? regionsByDistance(anchor, role.sites) : [...role.sites.keys()].sort(compareNames);
      order = pinned !== undefined && role.sites.has(pinned) ? [pinned, ...names.filter((n) => n !== pinned)] : names;
      if (role.orders.size >= REGION_ORDER_CACHE) role.orders.clear();
      role.orders.set(key, order);
    }
    return order;
  }

  #role(name: string): RoleEntry {
    let role = this.#roles.get(name);
    if (role) return role;
    const members = new Map<string, NodeSnapshot[]>();
    const candidates = new Map<string, NodeSnapshot[]>();
    const limit = Math.max(this.#thresholds.viewers, this.#thresholds.streams);
    for (const n of this.#nodes) {
      if (!n.roles.includes(name)) continue;
      push(members, n.region, n);
      if (!n.draining && loadOf(n) < limit) push(candidates, n.region, n);
    }
    const sites = new Map<string, Position[]>();
    for (const [region, nodes] of members) {
      const distinct = new Map(nodes.map((n) => [`${n.lat},${n.lon}`, { lat: n.lat, lon: n.lon }]));
      sites.set(region, [...distinct.values()]);
    }
    const geography = [...sites].map(([region, positions]) => `${region}:${positions.map((p) => `${p.lat},${p.lon}`).sort().join(';')}`).sort().join('|');
    const before = this.#inherited.get(name);
    role = { members, sites, geography, regions: new Map(), orders: before?.geography === geography ? before.orders : new Map() };
    for (const [region, nodes] of candidates) {
      const entry: RegionEntry = { candidates: nodes, loads: Float64Array.from(nodes, loadOf) };
      if (this.#policy.fixedOrder) {
        // Any request's eligible nodes are a subset of the candidates, in the same relative order.
        const ordered = this.#policy.order(nodes, { stream: '', role: name as RouteRequest['role'], location: {} }, members.get(region)!);
        entry.ordered = { nodes: ordered, loads: Float64Array.from(ordered, loadOf) };
      }
      role.regions.set(region, entry);
    }
    this.#roles.set(name, role);
    return role;
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
