import {
  anchorOf,
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

interface RegionEntry {
  /** Nodes of the role, not draining, under the higher threshold, in snapshot order. */
  candidates: NodeSnapshot[];
  loads: Float64Array;
  /** For a fixed-order policy: the candidates in its order, and their loads. */
  ordered?: { nodes: NodeSnapshot[]; loads: Float64Array };
}

interface RoleEntry {
  /** Each region's nodes of the role, eligible or not: where it is (regionDistanceKm's sites) and what it carries. */
  sites: Map<string, NodeSnapshot[]>;
  regions: Map<string, RegionEntry>;
  orders: Map<string, string[]>;
}

export class RouteIndex {
  readonly #nodes: readonly NodeSnapshot[];
  readonly #policy: Policy;
  readonly #thresholds: Thresholds;
  readonly #roles = new Map<string, RoleEntry>();
  /** Every node of a region (any role): a pinned client without a position is placed at their centre. */
  readonly #pinned = new Map<string, Position[]>();

  constructor(nodes: readonly NodeSnapshot[], policy: Policy, thresholds: Thresholds) {
    if (!Array.isArray(nodes)) throw new TypeError('nodes must be an array');
    this.#nodes = nodes;
    this.#policy = policy;
    this.#thresholds = thresholds;
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
      const members = this.#eligible(region, request.stream);
      if (members.length === 0) continue;
      for (const node of this.#policy.fixedOrder ? members : this.#policy.order(members, request, role.sites.get(name)!)) {
        choices.push({ node, distanceKm: hasPosition ? distanceKm(anchor!, node) : undefined, load: loadOf(node) });
        if (choices.length >= limit) return choices;
      }
    }
    return choices;
  }

  /** A region's candidates that may take this stream: under the viewers threshold if they serve it, else the streams one. */
  #eligible(region: RegionEntry, stream: string): NodeSnapshot[] {
    const { nodes, loads } = region.ordered ?? { nodes: region.candidates, loads: region.loads };
    const out: NodeSnapshot[] = [];
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]!;
      if (loads[i]! < (node.streams.has(stream) ? this.#thresholds.viewers : this.#thresholds.streams)) out.push(node);
    }
    return out;
  }

  /** Region names nearest first, the pinned region before all (rank()'s order, ties by name). */
  #regionOrder(role: RoleEntry, pinned: string | undefined, anchor: Position | undefined): string[] {
    const key = `${pinned ?? ''}|${anchor ? `${anchor.lat},${anchor.lon}` : ''}`;
    let order = role.orders.get(key);
    if (!order) {
      const names = anchor ? regionsByDistance(anchor, role.sites) : [...role.sites.keys()].sort((a, b) => a.localeCompare(b));
      order = pinned !== undefined && role.sites.has(pinned) ? [pinned, ...names.filter((n) => n !== pinned)] : names;
      if (role.orders.size >= REGION_ORDER_CACHE) role.orders.clear();
      role.orders.set(key, order);
    }
    return order;
  }

  #role(name: string): RoleEntry {
    let role = this.#roles.get(name);
    if (role) return role;
    role = { sites: new Map(), regions: new Map(), orders: new Map() };
    const candidates = new Map<string, NodeSnapshot[]>();
    for (const n of this.#nodes) {
      if (!n.roles.includes(name)) continue;
      const sites = role.sites.get(n.region);
      if (sites) sites.push(n);
      else role.sites.set(n.region, [n]);
      if (n.draining || loadOf(n) >= Math.max(this.#thresholds.viewers, this.#thresholds.streams)) continue;
      const members = candidates.get(n.region);
      if (members) members.push(n);
      else candidates.set(n.region, [n]);
    }
    for (const [region, nodes] of candidates) {
      const entry: RegionEntry = { candidates: nodes, loads: Float64Array.from(nodes, loadOf) };
      if (this.#policy.fixedOrder) {
        // Any request's eligible nodes are a subset of the candidates, in the same relative order.
        const ordered = this.#policy.order(nodes, { stream: '', role: name as RouteRequest['role'], location: {} }, role.sites.get(region)!);
        entry.ordered = { nodes: ordered, loads: Float64Array.from(ordered, loadOf) };
      }
      role.regions.set(region, entry);
    }
    this.#roles.set(name, role);
    return role;
  }
}
