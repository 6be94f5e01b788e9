import { AFFINITY_SLACK, COMPACT_TARGET, rank, rendezvousScore, type NodeSnapshot, type Policy, type PolicyName, type RouteRequest } from '../../balancer/policies.ts';
import type { Cluster } from './cluster.ts';

/**
 * Where a joining viewer goes: the node rank(nodes, request, policy, thresholds, 1) returns, as the
 * balancer's 307 redirect asks it, without passing it all 10,000 nodes at every join.
 *
 * engine "rank": rank() itself, over the nodes of the regions that may come first (Cluster.contenders).
 * engine "fast": Cluster.firstRegion picks the region as rank() would, Cluster.scan lists its
 * eligible nodes in the nodes' order (what rank() hands the policy), and the first node of the
 * policy's order() is found without sorting or allocating:
 *   - random: the same Fisher–Yates swaps, with the same seeded coin, on the nodes' positions;
 *   - round-robin: its order() sorts the eligible nodes by id and starts at the region's counter
 *     modulo their number, then sets the counter to that start + 1: the same, counting eligible
 *     nodes in id order;
 *   - packing, least-used: the first of their order(), i.e. the most (least) loaded eligible node,
 *     ties to the smallest id (compareNames);
 *   - stream-affinity: the first of its order(), from rendezvousScore computed once per stream and
 *     region, then the bounded-load rule;
 *   - compact: the same over the first k eligible nodes in id order, those relaying the stream first.
 * Both engines are checked against rank() over all nodes (run.ts): every join in the test suite,
 * a sample of joins in every run.
 */

export interface Decider {
  /** The chosen edge's index in Model.nodes, or -1 when rank() returns no choice. */
  choose(v: number, stream: number, request: RouteRequest): number;
}

/** `coin` is the generator `policy` was created with (the random policy's). */
export function createDecider(engine: 'fast' | 'rank', cluster: Cluster, policy: Policy, coin: () => number): Decider {
  const { model } = cluster;
  const indexOf = new Map<NodeSnapshot, number>(model.nodes.map((n, i) => [n, i]));
  const thresholds = model.options.thresholds;

  if (engine === 'rank') {
    return {
      choose(v, stream, request) {
        const { regions, count } = cluster.contenders(v, stream);
        const subset: NodeSnapshot[] = [];
        for (let i = 0; i < count; i++) for (const e of model.regions[regions[i]!]!.edges) subset.push(model.nodes[e]!);
        const [choice] = rank(subset, request, policy, thresholds, 1);
        return choice ? indexOf.get(choice.node)! : -1;
      },
    };
  }

  const byLoad = (most: boolean): Decider => ({
    choose(v, stream) {
      const first = cluster.firstRegion(v, stream);
      if (first < 0) return -1;
      const edges = model.regions[first]!.edges;
      const n = cluster.scan(first, stream);
      let best = -1;
      let bestLoad = 0;
      for (let i = 0; i < n; i++) {
        const e = edges[cluster.scanPosition[i]!]!;
        const load = cluster.scanLoad[i]!;
        if (best < 0 || (most ? load > bestLoad : load < bestLoad) || (load === bestLoad && model.idRank[e]! < model.idRank[best]!)) {
          best = e;
          bestLoad = load;
        }
      }
      return best;
    },
  });

  // random's order() is a Fisher–Yates shuffle of the eligible nodes (from the last) with its coin;
  // the same swaps on their positions, with the same coin, leave the same node first.
  const shuffle = new Int32Array(cluster.scanPosition.length);
  const random: Decider = {
    choose(v, stream) {
      const first = cluster.firstRegion(v, stream);
      if (first < 0) return -1;
      const n = cluster.scan(first, stream);
      for (let i = 0; i < n; i++) shuffle[i] = i;
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(coin() * (i + 1));
        const t = shuffle[i]!;
        shuffle[i] = shuffle[j]!;
        shuffle[j] = t;
      }
      return n > 0 ? model.regions[first]!.edges[cluster.scanPosition[shuffle[0]!]!]! : -1;
    },
  };

  const counters = new Float64Array(model.regions.length);
  // A region's eligible edges in id order: scan() order when the region's edges are in id order (the model
  // makes them so), else sorted.
  const inIdOrder = model.regions.map((r) => r.edges.every((e, k) => k === 0 || model.idRank[e]! > model.idRank[r.edges[k - 1]!]!));
  const roundRobin: Decider = {
    choose(v, stream) {
      const first = cluster.firstRegion(v, stream);
      if (first < 0) return -1;
      const edges = model.regions[first]!.edges;
      const n = cluster.scan(first, stream);
      if (n === 0) return -1;
      const start = counters[first]! % n;
      counters[first] = start + 1;
      if (inIdOrder[first]) return edges[cluster.scanPosition[start]!]!;
      const eligible = Array.from(cluster.scanPosition.subarray(0, n), (k) => edges[k]!);
      return eligible.sort((a, b) => model.idRank[a]! - model.idRank[b]!)[start]!;
    },
  };

  // stream-affinity orders a region's eligible nodes by score (highest first), ties by id: one
  // number per node says both, score × 2^20 + (2^20 − 1 − id rank), computed once per stream and region.
  if (model.edgeCount > 1 << 20) throw new RangeError('at most 2^20 edges');
  const keys = new Map<number, Float64Array>();
  const R = model.regions.length;
  const affinityKeys = (stream: number, region: number): Float64Array => {
    const key = stream * R + region;
    let found = keys.get(key);
    if (!found) {
      const edges = model.regions[region]!.edges;
      const name = model.streams[stream]!.name;
      found = Float64Array.from(edges, (e) => rendezvousScore(name, model.nodes[e]!.id) * 2 ** 20 + (2 ** 20 - 1 - model.idRank[e]!));
      keys.set(key, found);
    }
    return found;
  };
  const affinity: Decider = {
    choose(v, stream) {
      const first = cluster.firstRegion(v, stream);
      if (first < 0) return -1;
      const edges = model.regions[first]!.edges;
      const n = cluster.scan(first, stream);
      const position = cluster.scanPosition;
      // As policies.ts: the bound is the eligible nodes' mean load (summed in their order) × 1.25 + one viewer.
      let sum = 0;
      let maxCapacity = -Infinity;
      for (let i = 0; i < n; i++) {
        sum += cluster.scanLoad[i]!;
        maxCapacity = Math.max(maxCapacity, cluster.capacity[edges[position[i]!]!]!);
      }
      const bound = (sum / n) * (1 + AFFINITY_SLACK) + 1 / maxCapacity;
      // The first in hash order under the bound; when none is, the first in hash order.
      const order = affinityKeys(stream, first);
      let under = -1;
      let any = -1;
      for (let i = 0; i < n; i++) {
        const key = order[position[i]!]!;
        if (any < 0 || key > order[any]!) any = position[i]!;
        if (cluster.scanLoad[i]! <= bound && (under < 0 || key > order[under]!)) under = position[i]!;
      }
      return edges[under >= 0 ? under : any]!;
    },
  };

  // compact: k from the summed load of all the region's edges (in id order, as policies.ts sums
  // it); the eligible ones among the first k by id are open; among them those relaying the stream
  // first, then the rest under the bound (over the open ones) before those over it, each by hash
  // order; when none is open, the first eligible edge past k by id.
  const byId = model.regions.map((r, i) => (inIdOrder[i] ? Int32Array.from(r.edges) : Int32Array.from(r.edges).sort((a, b) => model.idRank[a]! - model.idRank[b]!)));
  const firstK = new Uint8Array(model.nodes.length);
  const compact: Decider = {
    choose(v, stream) {
      const first = cluster.firstRegion(v, stream);
      if (first < 0) return -1;
      const edges = model.regions[first]!.edges;
      const all = byId[first]!;
      let demand = 0;
      for (let i = 0; i < all.length; i++) demand += cluster.load(all[i]!);
      const k = Math.max(1, Math.ceil(demand / COMPACT_TARGET));
      for (let i = 0; i < all.length; i++) firstK[all[i]!] = i < k ? 1 : 0;
      const n = cluster.scan(first, stream);
      // The open edges' load bound: their loads summed in the nodes' order, as policies.ts sums them.
      let sum = 0;
      let open = 0;
      let maxCapacity = -Infinity;
      let rest = -1;
      for (let i = 0; i < n; i++) {
        const e = edges[cluster.scanPosition[i]!]!;
        if (!firstK[e]) {
          if (rest < 0 || model.idRank[e]! < model.idRank[rest]!) rest = e;
          continue;
        }
        open++;
        sum += cluster.scanLoad[i]!;
        maxCapacity = Math.max(maxCapacity, cluster.capacity[e]!);
      }
      if (open === 0) return rest;
      const bound = (sum / open) * (1 + AFFINITY_SLACK) + 1 / maxCapacity;
      const order = affinityKeys(stream, first);
      // Rank within the open edges: relaying (2), else under the bound (1), else over it (0).
      let best = -1;
      let bestClass = -1;
      for (let i = 0; i < n; i++) {
        const position = cluster.scanPosition[i]!;
        const e = edges[position]!;
        if (!firstK[e]) continue;
        const klass = cluster.relayViewers[e]!.has(stream) ? 2 : cluster.scanLoad[i]! <= bound ? 1 : 0;
        if (klass > bestClass || (klass === bestClass && order[position]! > order[best]!)) {
          best = position;
          bestClass = klass;
        }
      }
      return edges[best]!;
    },
  };

  const fast: Record<PolicyName, Decider> = {
    compact,
    packing: byLoad(true),
    'least-used': byLoad(false),
    'round-robin': roundRobin,
    random,
    'stream-affinity': affinity,
  };
  return fast[policy.name];
}
