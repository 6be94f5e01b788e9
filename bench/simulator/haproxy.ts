import { rendezvousScore } from '../../balancer/policies.ts';
import type { Cluster } from './cluster.ts';
import type { Decider } from './deciders.ts';

/**
 * HAProxy's region backends (haproxy/haproxy.cfg.hbs) in place of the balancer's 307: WHEP
 * signalling goes to the viewer's region backend (the geo map: here the region the viewer lives
 * in; the next-nearest region with room when every edge of it drains), hashed by stream
 * (`balance uri depth 2`, `hash-type consistent`) over its edges weighted by their agent-check
 * (edge/AgentCheck.ts: 100 × (1 − load / viewer threshold) %, out at the threshold), with bounded
 * load (`hash-balance-factor F`). HAProxy's rule (chash_server_is_eligible): a server takes a
 * request only while its requests in flight are below its weight's share of
 * ceil((requests in flight in the backend + 1) × F / 100), and at least 1; else the next server
 * on the ring. F = 0: no bound. The ring is modelled by weighted rendezvous hashing (the same
 * first choice for a stream whatever the other servers, and the same "next" when it is passed
 * over, as a ring gives on average).
 *
 * A request is in flight from its arrival for `joinMs` (the edge relays the stream: an answer
 * from a new WebRTC transport) or `openMs` (it opens a relay first: a round trip or two to its
 * upstream and a pipe). A join passed over (bounded load) to an edge that does not relay the
 * stream while the first edge on its ring does opens a *second relay* in the region: what this
 * counts. The viewer's later requests (PATCH, DELETE) are not modelled.
 */

export interface HaproxyStats {
  factor: number;
  /** Joins sent past the first eligible server on their ring (bounded load). */
  passedOver: number;
  /** Of those, joins that opened a relay on an edge while the first server relayed the stream. */
  secondRelays: number;
  /** The most requests in flight on one edge, and in one backend. */
  inFlightPeakEdge: number;
  inFlightPeakBackend: number;
}

export interface HaproxyTiming {
  joinMs: number;
  openMs: number;
}

export function haproxyDecider(cluster: Cluster, factor: number, timing: HaproxyTiming): Decider & { stats: HaproxyStats } {
  const { model } = cluster;
  const w = model.workload;
  const threshold = model.options.thresholds.viewers;
  const R = model.regions.length;
  const served = new Int32Array(model.edgeCount);
  const backend = new Int32Array(R);
  // Requests in flight per backend: (end time, edge), a min-heap by end time.
  const ends: Array<Array<[number, number]>> = Array.from({ length: R }, () => []);
  const stats: HaproxyStats = { factor, passedOver: 0, secondRelays: 0, inFlightPeakEdge: 0, inFlightPeakBackend: 0 };
  /** Per stream and region: the region's edges in ring order for the stream (unweighted uniform draws, weights applied per join). */
  const draws = new Map<number, Float64Array>();
  const drawsOf = (stream: number, region: number): Float64Array => {
    const key = stream * R + region;
    let found = draws.get(key);
    if (!found) {
      const name = model.streams[stream]!.name;
      // −ln(u): the weighted rendezvous score is −ln(u) / weight, the smallest first.
      found = Float64Array.from(model.regions[region]!.edges, (e) => -Math.log((rendezvousScore(name, model.nodes[e]!.id) + 0.5) / 2 ** 32));
      draws.set(key, found);
    }
    return found;
  };
  const expire = (region: number, now: number) => {
    const heap = ends[region]!;
    while (heap.length > 0 && heap[0]![0] <= now) {
      const [, edge] = popMin(heap);
      served[edge]!--;
      backend[region]!--;
    }
  };
  const weightOf = (e: number) => {
    const load = cluster.load(e);
    return load >= threshold ? 0 : Math.max(1, Math.min(100, Math.round(100 * (1 - load / threshold))));
  };
  const pick = (region: number, stream: number): { edge: number; first: number } => {
    const edges = model.regions[region]!.edges;
    const u = drawsOf(stream, region);
    const order: Array<[number, number, number]> = []; // score, edge, weight
    let totalWeight = 0;
    for (let k = 0; k < edges.length; k++) {
      const e = edges[k]!;
      const weight = weightOf(e);
      if (weight === 0) continue;
      totalWeight += weight;
      order.push([u[k]! / weight, e, weight]);
    }
    if (order.length === 0) return { edge: -1, first: -1 };
    order.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const first = order[0]![1];
    if (factor === 0) return { edge: first, first };
    const totalSlots = Math.ceil(((backend[region]! + 1) * factor) / 100);
    for (const [, e, weight] of order) {
      const slots = Math.max(1, Math.floor((weight * totalSlots) / totalWeight));
      if (served[e]! < slots) return { edge: e, first };
    }
    return { edge: first, first }; // none eligible: HAProxy keeps the first
  };
  return {
    stats,
    choose(v, stream) {
      const now = w.arrive[v]!;
      let region = w.home[v]!;
      expire(region, now);
      let { edge, first } = pick(region, stream);
      if (edge < 0) {
        // Every edge of the region drains: the backups, the next-nearest region with room.
        region = cluster.firstRegion(v, stream);
        if (region < 0) return -1;
        expire(region, now);
        ({ edge, first } = pick(region, stream));
        if (edge < 0) return -1;
      }
      const relays = cluster.relayViewers[edge]!.has(stream);
      if (edge !== first) {
        stats.passedOver++;
        if (!relays && cluster.relayViewers[first]!.has(stream)) stats.secondRelays++;
      }
      served[edge]!++;
      backend[region]!++;
      stats.inFlightPeakEdge = Math.max(stats.inFlightPeakEdge, served[edge]!);
      stats.inFlightPeakBackend = Math.max(stats.inFlightPeakBackend, backend[region]!);
      pushHeap(ends[region]!, [now + (relays ? timing.joinMs : timing.openMs) / 1000, edge]);
      return edge;
    },
  };
}

function pushHeap(heap: Array<[number, number]>, item: [number, number]): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]![0] <= item[0]) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = item;
}

function popMin(heap: Array<[number, number]>): [number, number] {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length === 0) return top;
  let i = 0;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= heap.length) break;
    if (child + 1 < heap.length && heap[child + 1]![0] < heap[child]![0]) child++;
    if (heap[child]![0] >= last[0]) break;
    heap[i] = heap[child]!;
    i = child;
  }
  heap[i] = last;
  return top;
}
