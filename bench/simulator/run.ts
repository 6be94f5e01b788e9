import { planCapacity, type CapacitySettings } from '../../balancer/capacity.ts';
import { createPolicy, distanceKm, rank, type NodeSnapshot, type Policy, type PolicyName, type RouteRequest } from '../../balancer/policies.ts';
import { Cluster } from './cluster.ts';
import { createDecider } from './deciders.ts';
import { haproxyDecider, type HaproxyStats } from './haproxy.ts';
import type { Model } from './model.ts';
import { derive, rng } from './random.ts';
import { LOCAL_KM, MAX_STRETCH } from '../../media/treePaths.ts';
import { STRETCH_BINS, stretchBin, type ReattachResult } from './tiers.ts';

/** One policy's run: the event loop (arrivals in order, departures from a heap, samples every minute) and its figures. */

export interface PolicyResult {
  policy: PolicyName;
  /** The column's name: the policy, or `haproxy F` for HAProxy's hashing with hash-balance-factor F (bench/simulator/haproxy.ts). */
  label: string;
  /** HAProxy's hashing only: joins passed over by bounded load, second relays that made, requests in flight. */
  haproxy: HaproxyStats | null;
  joins: number;
  rejected: number;
  /** Shares are 0..1. */
  rejectedShare: number;
  /** Joins served by an edge of the viewer's own region, of the joins served. */
  ownRegionShare: number;
  meanKm: number;
  p95Km: number;
  /** Mean load of the edges with at least one viewer, averaged over the samples. */
  packingEfficiency: number;
  /** Distinct (stream, edge) pairs: each is one stream of origin egress. */
  relaysPeak: number;
  relaysMean: number;
  /** The most relays one origin fed at once. */
  originEgressPeak: number;
  /** The most relays all origins fed at once (without tiers, relaysPeak), and that × the stream bitrate. */
  originRelaysPeak: number;
  originGbitsPeak: number;
  /** The most edges an origin fed one stream to at once (at most --origin-max-relays), and that × the stream bitrate. */
  streamOriginRelaysPeak: number;
  streamOriginGbitsPeak: number;
  /** Relay tiers: the most edges one relay fed its stream to, and one edge fed over all its streams. */
  childrenPeak: number;
  edgeChildrenPeak: number;
  /** Relay opens whose first round of upstreams the product would fail (bench/simulator/tiers.ts). */
  refusedRounds: number;
  /** Live relays per tier (0: from the origin) at the sample with most viewers. */
  relaysByTier: number[];
  /** Joins served per tier of their edge's relay. */
  viewersByTier: number[];
  /** The 95th percentile of that tier (edge → edge hops above the viewer's edge). */
  p95Tier: number;
  /**
   * Joins by their relay's path / great circle from the origin (bins: STRETCH_BINS), for edges at
   * least LOCAL_KM from the origin; the largest ratio among those; joins whose path passes the
   * product's bound (MAX_STRETCH × great circle + LOCAL_KM), all edges.
   */
  stretchByJoins: number[];
  stretchMax: number;
  joinsUnbounded: number;
  /** Edges by egress / capacity at the sample with most viewers (bins of 10 %, the last above 100 %), edges with any egress. */
  egressByEdges: number[];
  /** The largest egress / capacity of an edge over the run, and its egress then (Gbit/s) and child relays at the peak sample. */
  egressPeakShare: number;
  egressPeakGbits: number;
  /** The busiest origin's egress, peak (Gbit/s). */
  busiestOriginGbits: number;
  /** Opens that no upstream would take (bench/simulator/tiers.ts overflows; 0 is the aim). */
  overflows: number;
  /** Opens that asked the full origin: it moved one of its relays below them (bench/simulator/tiers.ts demotions), or none could move (noDemotion). */
  demotions: number;
  noDemotion: number;
  /** Re-attachment after the `kill` edges feeding the most child relays die at the end of the arrivals. */
  reattach: ReattachResult | null;
  /** Most edges with a viewer at once; edges that ever had one. */
  edgesPeak: number;
  edgesTouched: number;
  /** Edges planCapacity (the autoscaling signal) wants, summed over regions, at the sample with most viewers. */
  edgesWanted: number;
  peakViewers: number;
  /** Wall-clock and CPU time of the run (the CPU time is what counts on a shared machine). */
  seconds: number;
  cpuSeconds: number;
  /** Joins compared with rank() over all nodes, and how many chose otherwise (must be 0). */
  checked: number;
  mismatches: number;
  mismatchExamples: string[];
}

/** The balancer's defaults (core/config.ts, balancer/Balancer.ts). */
export const CAPACITY_SETTINGS: CapacitySettings = { targetUtilisation: 0.7, slackViewers: 200, minEdges: 1, defaultCapacity: 500 };

/** Policies with no state: rank() over all nodes may be asked again without disturbing the run. */
const STATELESS: ReadonlySet<PolicyName> = new Set(['compact', 'packing', 'least-used', 'stream-affinity']);

/**
 * `observe`, when given, is called with the cluster after every join (for tests' invariants).
 * `hashBalanceFactor`, when given, routes the joins as HAProxy's region backends would instead of
 * the balancer's 307 (bench/simulator/haproxy.ts; `name` is then only a label and no join is
 * checked against rank()).
 */
export function runPolicy(
  model: Model,
  name: PolicyName,
  onProgress?: (done: number, total: number) => void,
  observe?: (cluster: Cluster) => void,
  hashBalanceFactor?: number,
): PolicyResult {
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  const { options, workload: w, nodes, edgeCount } = model;
  const V = w.count;
  const cluster = new Cluster(model);
  const coin = () => rng(derive(options.seed, `coin:${name}`));
  const decisions = coin();
  const policy = createPolicy(name, decisions);
  const viaHaproxy = hashBalanceFactor === undefined ? undefined : haproxyDecider(cluster, hashBalanceFactor, options.haproxyTiming);
  const decider = viaHaproxy ?? createDecider(options.engine, cluster, policy, decisions);
  // With --verify, a second instance of the policy answers rank() over all nodes in lockstep.
  const reference = options.verify && !viaHaproxy ? createPolicy(name, coin()) : undefined;
  const checkEvery = viaHaproxy || options.verify || options.checks <= 0 ? 0 : Math.max(1, Math.floor(V / options.checks));

  const heap = new DepartureHeap(V);
  const edgeOf = new Int32Array(V);
  const distances = new Float64Array(V);
  const touched = new Uint8Array(edgeCount);
  let served = 0;
  let own = 0;
  let kmSum = 0;
  let checked = 0;
  const mismatchExamples: string[] = [];
  let mismatches = 0;
  let relaysPeak = 0;
  let edgesPeak = 0;
  let peakViewers = 0;
  const atPeak = new Int32Array(edgeCount);
  const atPeakCpu = new Float64Array(edgeCount);
  let originEgressPeak = 0;
  let originRelaysPeak = 0;
  let relaysByTier: number[] = [];
  const viewersByTier: number[] = [];
  const stretchByJoins = STRETCH_BINS.map(() => 0);
  let stretchMax = 0;
  let joinsUnbounded = 0;
  let egressByEdges: number[] = [];
  let reattach: ReattachResult | null = null;
  const killAt = options.arrivalMinutes * 60;
  let samples = 0;
  let efficiencySum = 0;
  let efficiencySamples = 0;
  let relaysSum = 0;

  const sample = () => {
    samples++;
    relaysSum += cluster.relays;
    for (const egress of cluster.originEgress) originEgressPeak = Math.max(originEgressPeak, egress);
    if (cluster.inUse > 0) {
      let loadSum = 0;
      for (let e = 0; e < edgeCount; e++) if (cluster.viewers[e]! > 0) loadSum += cluster.load(e);
      efficiencySum += loadSum / cluster.inUse;
      efficiencySamples++;
    }
    if (cluster.totalViewers > peakViewers) {
      peakViewers = cluster.totalViewers;
      atPeak.set(cluster.viewers);
      for (let e = 0; e < edgeCount; e++) atPeakCpu[e] = nodes[e]!.cpu;
      relaysByTier = [...cluster.trees.atTier];
      if (cluster.edgeEgressBps < Infinity) {
        egressByEdges = Array.from({ length: 11 }, () => 0);
        for (let e = 0; e < edgeCount; e++) {
          const share = cluster.egressOf(e) / cluster.edgeEgressBps;
          if (share > 0) egressByEdges[Math.min(10, Math.ceil(share * 10) - 1)]!++;
        }
      }
    }
    if (reattach === null && options.kill > 0 && nextSample >= killAt) {
      const parents = Array.from({ length: edgeCount }, (_, e) => e)
        .filter((e) => cluster.trees.edgeChildren[e]! > 0)
        .sort((a, b) => cluster.trees.edgeChildren[b]! - cluster.trees.edgeChildren[a]! || a - b)
        .slice(0, options.kill);
      reattach = cluster.trees.reattach(parents, (e, s) => cluster.relayViewers[e]!.get(s) ?? 0);
    }
  };
  const mismatch = (v: number, what: string) => {
    mismatches++;
    if (mismatchExamples.length < 5) mismatchExamples.push(`join ${v} (${name}): ${what}`);
  };
  const idOf = (e: number) => (e < 0 ? 'none' : nodes[e]!.id);

  const interval = options.sampleSeconds;
  let nextSample = interval;
  const progressEvery = Math.max(1, Math.floor(V / 200));
  for (let v = 0; v < V; v++) {
    const t = w.arrive[v]!;
    for (;;) {
      const departure = heap.size > 0 ? heap.peekTime() : Infinity;
      if (departure <= t && departure <= nextSample) {
        const gone = heap.pop();
        cluster.leave(edgeOf[gone]!, w.stream[gone]!);
      } else if (nextSample <= t) {
        sample();
        nextSample += interval;
      } else break;
    }

    const stream = w.stream[v]!;
    const request: RouteRequest = { stream: model.streams[stream]!.name, role: 'edge', location: { lat: w.lat[v]!, lon: w.lon[v]! } };
    const edge = decider.choose(v, stream, request);
    if (reference) {
      checked++;
      const [choice] = rank(nodes, request, reference, options.thresholds, 1);
      const expected = choice ? nodes.indexOf(choice.node) : -1;
      if (expected !== edge) mismatch(v, `chose ${idOf(edge)}, rank() over all nodes ${idOf(expected)}`);
    } else if (checkEvery > 0 && v % checkEvery === 0) {
      checked++;
      const problem = check(cluster, policy, v, stream, request, edge);
      if (problem) mismatch(v, problem);
    }

    if (edge < 0) continue;
    cluster.join(edge, stream);
    edgeOf[v] = edge;
    heap.push(w.leave[v]!, v);
    touched[edge] = 1;
    const km = distanceKm(request.location as { lat: number; lon: number }, nodes[edge]!);
    distances[served++] = km;
    kmSum += km;
    if (cluster.regionOf(edge) === w.home[v]) own++;
    if (cluster.relays > relaysPeak) relaysPeak = cluster.relays;
    if (cluster.originRelays > originRelaysPeak) originRelaysPeak = cluster.originRelays;
    const relay = cluster.trees.get(edge, stream)!;
    const tier = relay.tier;
    viewersByTier[tier] = (viewersByTier[tier] ?? 0) + 1;
    if (relay.directKm >= LOCAL_KM) {
      stretchByJoins[stretchBin(relay.pathKm, relay.directKm)]!++;
      stretchMax = Math.max(stretchMax, relay.pathKm / relay.directKm);
    }
    if (relay.pathKm > MAX_STRETCH * relay.directKm + LOCAL_KM + 1e-6) joinsUnbounded++;
    if (cluster.inUse > edgesPeak) edgesPeak = cluster.inUse;
    observe?.(cluster);
    if (onProgress && v % progressEvery === 0) onProgress(v, V);
  }
  sample();
  onProgress?.(V, V);
  const edgesAtPeak = nodes.slice(0, edgeCount).map((n, e) => ({ ...n, viewers: atPeak[e]!, cpu: atPeakCpu[e]! }));
  const edgesWanted = planCapacity(edgesAtPeak, CAPACITY_SETTINGS, model.regions.map((r) => r.name)).reduce((sum, r) => sum + r.desiredEdges, 0);

  const sorted = distances.subarray(0, served).sort();
  return {
    policy: name,
    label: viaHaproxy ? `haproxy ${hashBalanceFactor}` : name,
    haproxy: viaHaproxy?.stats ?? null,
    joins: V,
    rejected: V - served,
    rejectedShare: (V - served) / V,
    ownRegionShare: served > 0 ? own / served : 0,
    meanKm: served > 0 ? kmSum / served : 0,
    p95Km: served > 0 ? sorted[Math.min(served - 1, Math.ceil(0.95 * served) - 1)]! : 0,
    packingEfficiency: efficiencySamples > 0 ? efficiencySum / efficiencySamples : 0,
    relaysPeak,
    relaysMean: samples > 0 ? relaysSum / samples : 0,
    originEgressPeak,
    originRelaysPeak,
    originGbitsPeak: (originRelaysPeak * options.streamKbps) / 1e6,
    streamOriginRelaysPeak: cluster.trees.originFeedsPeak,
    streamOriginGbitsPeak: (cluster.trees.originFeedsPeak * options.streamKbps) / 1e6,
    childrenPeak: cluster.trees.childrenPeak,
    edgeChildrenPeak: cluster.trees.edgeChildrenPeak,
    refusedRounds: cluster.trees.refusedRounds,
    relaysByTier,
    viewersByTier: Array.from(viewersByTier, (n) => n ?? 0),
    p95Tier: percentileIndex(Array.from(viewersByTier, (n) => n ?? 0), 0.95),
    stretchByJoins,
    stretchMax,
    joinsUnbounded,
    egressByEdges,
    egressPeakShare: cluster.egressPeakShare,
    egressPeakGbits: cluster.edgeEgressBps < Infinity ? (cluster.egressPeakShare * cluster.edgeEgressBps) / 1e9 : 0,
    busiestOriginGbits: (originEgressPeak * options.streamKbps) / 1e6,
    overflows: cluster.trees.overflows,
    demotions: cluster.trees.demotions,
    noDemotion: cluster.trees.noDemotion,
    reattach,
    edgesPeak,
    edgesTouched: touched.reduce((a, b) => a + b, 0),
    edgesWanted,
    peakViewers,
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: ((cpu) => (cpu.user + cpu.system) / 1e6)(process.cpuUsage(cpuStarted)),
    checked,
    mismatches,
    mismatchExamples,
  };
}

/**
 * One sampled join against rank() over all nodes: rank() must hand the policy the same eligible
 * nodes of the same region (a probe policy records them), and a stateless policy must choose the
 * same edge. (Round-robin and random keep state, a counter and a coin, that asking again would move
 * on; --verify, which the test suite runs, keeps a second instance in lockstep for them.)
 */
function check(cluster: Cluster, policy: Policy, v: number, stream: number, request: RouteRequest, edge: number): string | undefined {
  const { model } = cluster;
  const { nodes, options } = model;
  let seen: NodeSnapshot[] = [];
  const probe: Policy = {
    name: policy.name,
    order: (members) => (seen = members),
  };
  rank(nodes, request, probe, options.thresholds, 1);
  const first = cluster.firstRegion(v, stream);
  const members = first < 0 ? [] : cluster.members(first, stream);
  if (seen.length !== members.length || seen.some((n, i) => n !== members[i])) {
    return `rank() orders ${seen.length} nodes of ${seen[0]?.region ?? 'no region'}, the simulator ${members.length} of ${members[0]?.region ?? 'none'}`;
  }
  if (STATELESS.has(policy.name)) {
    const [choice] = rank(nodes, request, policy, options.thresholds, 1);
    if ((choice?.node ?? null) !== (edge < 0 ? null : nodes[edge])) return `chose ${edge < 0 ? 'none' : nodes[edge]!.id}, rank() ${choice?.node.id ?? 'none'}`;
  }
  return undefined;
}

/** The smallest index whose cumulative count reaches `share` of the total (a histogram's percentile). */
function percentileIndex(counts: number[], share: number): number {
  const total = counts.reduce((a, b) => a + b, 0);
  let sum = 0;
  for (let i = 0; i < counts.length; i++) {
    sum += counts[i]!;
    if (sum >= share * total) return i;
  }
  return 0;
}

/** A binary min-heap of departure times (viewer indices alongside). */
class DepartureHeap {
  readonly #time: Float64Array;
  readonly #viewer: Int32Array;
  size = 0;

  constructor(capacity: number) {
    this.#time = new Float64Array(capacity);
    this.#viewer = new Int32Array(capacity);
  }

  peekTime(): number {
    return this.#time[0]!;
  }

  push(time: number, viewer: number): void {
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.#time[parent]! <= time) break;
      this.#time[i] = this.#time[parent]!;
      this.#viewer[i] = this.#viewer[parent]!;
      i = parent;
    }
    this.#time[i] = time;
    this.#viewer[i] = viewer;
  }

  pop(): number {
    const top = this.#viewer[0]!;
    const n = --this.size;
    const time = this.#time[n]!;
    const viewer = this.#viewer[n]!;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.#time[child + 1]! < this.#time[child]!) child++;
      if (this.#time[child]! >= time) break;
      this.#time[i] = this.#time[child]!;
      this.#viewer[i] = this.#viewer[child]!;
      i = child;
    }
    this.#time[i] = time;
    this.#viewer[i] = viewer;
    return top;
  }
}
