import { nodeLoad } from '../../core/Role.ts';
import { distanceKm, type NodeSnapshot } from '../../balancer/policies.ts';
import { fastKm, type Model } from './model.ts';
import { ORIGIN, RelayTrees } from './tiers.ts';

/**
 * The cluster's state during one run (viewers and relays per edge, kept in the NodeSnapshots the
 * policies read), and the part of rank() that picks the region: which edges may take a viewer of
 * a stream, and which region rank() would order first for a viewer at a given position.
 *
 * rank(nodes, request, policy, thresholds, 1), the 307 redirect's call, keeps the role's
 * non-draining nodes under their threshold, orders the regions that have any by the distance from
 * the client to their nearest such node (ties: region name), and returns the first node of the
 * first region as the policy orders that region's eligible nodes. Computing that distance for all
 * 10,000 edges at every join is what makes rank() slow here; a region's edges all lie within
 * `radiusKm` of its centre, so |client–centre| ± radius bounds it, and only regions whose lower
 * bound is not above the best upper bound can come first. Those few are resolved with distanceKm.
 *
 * Egress (--egress-gbps): an edge sends each of its viewers and each child relay the stream's
 * bitrate, and the balancer's load of a node is max(viewers / capacity, cpu, bitrateOut /
 * egressCapacity). The simulated edges use no CPU, so the egress share is kept in the snapshot's
 * `cpu` field: rank() and the policies read the same load as the product's, and the simulator's
 * checks against rank() over all nodes still hold.
 */

const RAD = Math.PI / 180;
/** Slack on the distance bounds, far above floating-point error (km). */
const EPSILON_KM = 1e-3;

export class Cluster {
  readonly model: Model;
  /** Viewers per edge (mirrors NodeSnapshot.viewers). */
  readonly viewers: Int32Array;
  /**
   * Per edge: viewers per stream index; a key present is a relay (the edge pulls that stream from
   * its origin or, with relay tiers, from a parent edge). 0 viewers: a relay kept for its children.
   */
  readonly relayViewers: Map<number, number>[];
  /** Per region: edges under both thresholds, which any viewer may join. */
  readonly open: Int32Array;
  /** Per origin (index into nodes − edgeCount): relays it feeds. */
  readonly originEgress: Int32Array;
  /** Each stream's relay tree (bench/simulator/tiers.ts). */
  readonly trees: RelayTrees;
  relays = 0;
  /** Relays the origins feed, all together. */
  originRelays = 0;
  totalViewers = 0;
  /** Edges with at least one viewer. */
  inUse = 0;
  /** The largest egress / egress capacity of any edge over the run, and which edge. */
  egressPeakShare = 0;
  egressPeakEdge = -1;
  /** Bits/s per viewer or child relay, and an edge's egress capacity (Infinity: not modelled). */
  readonly streamBps: number;
  readonly edgeEgressBps: number;
  readonly #lowThreshold: number;
  readonly #highThreshold: number;
  /** Per edge (mirrors NodeSnapshot.capacity). */
  readonly capacity: Float64Array;
  readonly #cpu: Float64Array;
  readonly #region: Int32Array;
  readonly #centre: { latRad: Float64Array; cosLat: Float64Array; lonRad: Float64Array };
  readonly #candidates: Int32Array;
  readonly #candidateLow: Float64Array;
  readonly #edge: { latRad: Float64Array; cosLat: Float64Array; lonRad: Float64Array };
  readonly #fastKm: Float64Array;
  /** scan()'s answer: positions in the region's `edges` of its eligible edges, and their loads. */
  readonly scanPosition: Int32Array;
  readonly scanLoad: Float64Array;

  constructor(model: Model) {
    this.model = model;
    const E = model.edgeCount;
    const R = model.regions.length;
    this.viewers = new Int32Array(E);
    this.relayViewers = Array.from({ length: E }, () => new Map());
    this.open = Int32Array.from(model.regions, (r) => r.edges.length);
    this.originEgress = new Int32Array(model.nodes.length - E);
    const o = model.options;
    this.streamBps = o.streamKbps * 1000;
    this.edgeEgressBps = o.egressGbps > 0 ? o.egressGbps * 1e9 : Infinity;
    for (let e = 0; e < E; e++) model.nodes[e]!.cpu = 0;
    this.trees = new RelayTrees(
      model,
      o.tiers,
      { edgeBps: this.edgeEgressBps, originBps: o.originEgressGbps > 0 ? o.originEgressGbps * 1e9 : Infinity, streamBps: this.streamBps },
      { egressOf: (e) => this.egressOf(e), childrenChanged: (e) => this.#childrenChanged(e) },
    );
    const { streams, viewers } = model.options.thresholds;
    this.#lowThreshold = Math.min(streams, viewers);
    this.#highThreshold = Math.max(streams, viewers);
    this.capacity = Float64Array.from(model.nodes.slice(0, E), (n) => n.capacity);
    this.#cpu = Float64Array.from(model.nodes.slice(0, E), (n) => n.cpu);
    this.#region = new Int32Array(E);
    for (const r of model.regions) for (const e of r.edges) this.#region[e] = r.index;
    this.#centre = {
      latRad: Float64Array.from(model.regions, (r) => r.lat * RAD),
      cosLat: Float64Array.from(model.regions, (r) => Math.cos(r.lat * RAD)),
      lonRad: Float64Array.from(model.regions, (r) => r.lon * RAD),
    };
    this.#candidates = new Int32Array(R);
    const edges = model.nodes.slice(0, E);
    this.#edge = {
      latRad: Float64Array.from(edges, (n) => n.lat * RAD),
      cosLat: Float64Array.from(edges, (n) => Math.cos(n.lat * RAD)),
      lonRad: Float64Array.from(edges, (n) => n.lon * RAD),
    };
    this.#fastKm = new Float64Array(E);
    this.#candidateLow = new Float64Array(R);
    const largest = Math.max(...model.regions.map((r) => r.edges.length));
    this.scanPosition = new Int32Array(largest);
    this.scanLoad = new Float64Array(largest);
    for (let e = 0; e < E; e++) {
      model.nodes[e]!.viewers = 0;
      model.streamSets[e]!.clear();
    }
  }

  /** Bits/s the edge sends: its viewers and child relays, the stream's bitrate each. */
  egressOf(edge: number): number {
    return (this.viewers[edge]! + this.trees.edgeChildren[edge]!) * this.streamBps;
  }

  /** The edge's egress changed: its load (the snapshot's cpu field, see above) follows. */
  #refreshEgress(edge: number): void {
    if (this.edgeEgressBps === Infinity) return;
    const share = this.egressOf(edge) / this.edgeEgressBps;
    this.#cpu[edge] = share;
    this.model.nodes[edge]!.cpu = share;
    if (share > this.egressPeakShare) {
      this.egressPeakShare = share;
      this.egressPeakEdge = edge;
    }
  }

  #childrenChanged(edge: number): void {
    const wasOpen = this.load(edge) < this.#lowThreshold;
    this.#refreshEgress(edge);
    const isOpen = this.load(edge) < this.#lowThreshold;
    if (wasOpen !== isOpen) this.open[this.#region[edge]!]! += isOpen ? 1 : -1;
  }

  load(edge: number): number {
    return nodeLoad(this.viewers[edge]!, this.capacity[edge]!, this.#cpu[edge]!);
  }

  /** rank()'s test: `loadOf(n) >= (n.streams.has(stream) ? thresholds.viewers : thresholds.streams)` excludes. */
  eligible(edge: number, stream: number): boolean {
    const load = this.load(edge);
    if (load < this.#lowThreshold) return true;
    if (!(load < this.#highThreshold)) return false;
    const { thresholds } = this.model.options;
    return load < (this.relayViewers[edge]!.has(stream) ? thresholds.viewers : thresholds.streams);
  }

  /**
   * The eligible edges of a region, in the nodes' order, into scanPosition/scanLoad (valid until
   * the next scan); returns how many. The same test as eligible(), in one pass.
   */
  scan(region: number, stream: number): number {
    const edges = this.model.regions[region]!.edges;
    const { thresholds } = this.model.options;
    const low = this.#lowThreshold;
    const high = this.#highThreshold;
    let n = 0;
    for (let k = 0; k < edges.length; k++) {
      const e = edges[k]!;
      const load = nodeLoad(this.viewers[e]!, this.capacity[e]!, this.#cpu[e]!);
      if (load < low || (load < high && load < (this.relayViewers[e]!.has(stream) ? thresholds.viewers : thresholds.streams))) {
        this.scanPosition[n] = k;
        this.scanLoad[n++] = load;
      }
    }
    return n;
  }

  #anyEligible(region: number, stream: number): boolean {
    if (this.open[region]! > 0) return true;
    for (const e of this.model.regions[region]!.edges) if (this.eligible(e, stream)) return true;
    return false;
  }

  /** The eligible edges of a region, in the nodes' order: what rank() hands the policy. */
  members(region: number, stream: number): NodeSnapshot[] {
    const edges = this.model.regions[region]!.edges;
    const n = this.scan(region, stream);
    return Array.from(this.scanPosition.subarray(0, n), (k) => this.model.nodes[edges[k]!]!);
  }

  /**
   * The regions that may come first in rank() for viewer `v` (indices into the returned buffer,
   * `count` of them): every region with an eligible edge whose distance lower bound is not above
   * the smallest upper bound. A region left out has no eligible edge, or all its eligible edges
   * are farther than some region's, so rank() orders it after the first.
   */
  contenders(v: number, stream: number): { regions: Int32Array; count: number } {
    const { workload: w, nearOrder, nearKeys, regions } = this.model;
    const home = w.home[v]!;
    const order = nearOrder[home]!;
    const keys = nearKeys[home]!;
    const fromHome = w.fromHome[v]! + EPSILON_KM;
    const latRad = w.lat[v]! * RAD;
    const cosLat = Math.cos(latRad);
    const lonRad = w.lon[v]! * RAD;
    const c = this.#centre;
    let best = Infinity;
    let n = 0;
    for (let k = 0; k < order.length; k++) {
      if (keys[k]! - fromHome > best) break; // this region and all after it are farther than `best`
      const r = order[k]!;
      if (!this.#anyEligible(r, stream)) continue;
      const centreKm = fastKm(latRad, cosLat, lonRad, c.latRad[r]!, c.cosLat[r]!, c.lonRad[r]!);
      const radius = regions[r]!.radiusKm + EPSILON_KM;
      if (centreKm - radius > best) continue;
      best = Math.min(best, centreKm + radius);
      this.#candidates[n] = r;
      this.#candidateLow[n++] = centreKm - radius;
    }
    let kept = 0;
    for (let i = 0; i < n; i++) if (this.#candidateLow[i]! <= best) this.#candidates[kept++] = this.#candidates[i]!;
    return { regions: this.#candidates, count: kept };
  }

  /** The region rank() orders first for viewer `v`, or -1 when no edge may take the viewer. */
  firstRegion(v: number, stream: number): number {
    const { regions, count } = this.contenders(v, stream);
    if (count <= 1) return count === 1 ? regions[0]! : -1;
    // Near a border: the distance to each contender's nearest edge (eligible or not), as rank() computes it
    // with distanceKm. fastKm (within EPSILON_KM / 2 of it) finds the few edges that may be nearest.
    const { workload: w, regionNameRank } = this.model;
    const latRad = w.lat[v]! * RAD;
    const cosLat = Math.cos(latRad);
    const lonRad = w.lon[v]! * RAD;
    const e = this.#edge;
    const fast = this.#fastKm;
    let nearestFast = Infinity;
    for (let i = 0; i < count; i++) {
      const edges = this.model.regions[regions[i]!]!.edges;
      for (let k = 0; k < edges.length; k++) {
        const n = edges[k]!;
        fast[n] = fastKm(latRad, cosLat, lonRad, e.latRad[n]!, e.cosLat[n]!, e.lonRad[n]!);
        nearestFast = Math.min(nearestFast, fast[n]!);
      }
    }
    const anchor = { lat: w.lat[v]!, lon: w.lon[v]! };
    let first = -1;
    let firstKm = Infinity;
    for (let i = 0; i < count; i++) {
      const r = regions[i]!;
      let km = Infinity;
      // An edge more than EPSILON_KM beyond the nearest (by fastKm) is farther than it by distanceKm too.
      for (const n of this.model.regions[r]!.edges) if (fast[n]! <= nearestFast + EPSILON_KM) km = Math.min(km, distanceKm(anchor, this.model.nodes[n]!));
      if (km < firstKm || (km === firstKm && km < Infinity && regionNameRank[r]! < regionNameRank[first]!)) {
        first = r;
        firstKm = km;
      }
    }
    return first;
  }

  join(edge: number, stream: number): void {
    const wasOpen = this.load(edge) < this.#lowThreshold;
    const n = ++this.viewers[edge]!;
    this.model.nodes[edge]!.viewers = n;
    this.totalViewers++;
    if (n === 1) this.inUse++;
    this.#refreshEgress(edge);
    const relay = this.relayViewers[edge]!;
    const count = relay.get(stream);
    relay.set(stream, (count ?? 0) + 1);
    if (count === undefined) {
      this.relays++;
      // A demotion swaps one of the origin's relays for this one: its egress is unchanged.
      const demotions = this.trees.demotions;
      if (this.trees.open(edge, stream).parent === ORIGIN && this.trees.demotions === demotions) this.#originFeeds(stream, 1);
      this.model.streamSets[edge]!.add(this.model.streams[stream]!.name);
    }
    if (wasOpen && !(this.load(edge) < this.#lowThreshold)) this.open[this.#region[edge]!]!--;
  }

  leave(edge: number, stream: number): void {
    const wasOpen = this.load(edge) < this.#lowThreshold;
    const n = --this.viewers[edge]!;
    this.model.nodes[edge]!.viewers = n;
    this.totalViewers--;
    if (n === 0) this.inUse--;
    this.#refreshEgress(edge);
    const relay = this.relayViewers[edge]!;
    relay.set(stream, relay.get(stream)! - 1);
    this.#closeIdle(edge, stream);
    if (!wasOpen && this.load(edge) < this.#lowThreshold) this.open[this.#region[edge]!]!++;
  }

  /**
   * Closes the relay of `stream` on `edge` if it has neither viewers nor children, then its parent
   * on the same terms, up the tree. (The edge's linger of a few seconds is not modelled.)
   */
  #closeIdle(edge: number, stream: number): void {
    while (edge !== ORIGIN && this.relayViewers[edge]!.get(stream) === 0 && this.trees.get(edge, stream)!.children === 0) {
      this.relayViewers[edge]!.delete(stream);
      this.relays--;
      this.model.streamSets[edge]!.delete(this.model.streams[stream]!.name);
      edge = this.trees.close(edge, stream);
      if (edge === ORIGIN) this.#originFeeds(stream, -1);
    }
  }

  #originFeeds(stream: number, change: 1 | -1): void {
    this.originRelays += change;
    this.originEgress[this.model.streams[stream]!.origin - this.model.edgeCount]! += change;
  }

  regionOf(edge: number): number {
    return this.#region[edge]!;
  }
}
