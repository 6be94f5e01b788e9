import { distanceKm } from '../../balancer/policies.ts';
import { orderUpstreams, UPSTREAMS_PER_ROUND } from '../../edge/RelayTree.ts';
import type { Model } from './model.ts';

/**
 * Relay tiers (issue 18) in the simulator: per stream, the tree of relays from its origin. An
 * edge that opens a relay asks the product's upstreams in the product's order
 * (edge/RelayTree.ts orderUpstreams, the edge's own code): the origin, which feeds at most
 * `originMaxRelays` edges a stream, then the edges relaying the stream in the edge's own region,
 * then the nearest others (ties: lowest tier, fewest children, node id), each of which feeds at
 * most `edgeMaxChildren`. Only relays already
 * open can be parents, so a parent always opened before its children and the tree has no loop.
 *
 * The product asks the origin and UPSTREAMS_PER_ROUND − 1 parents per round; when all of them
 * are full the round fails (the viewer is told 503 and retries). The simulator counts those opens
 * (`refusedRounds`) and attaches the relay to the nearest relay with room, as a retry finding a
 * free parent would.
 *
 * A relay with children but no viewers of its own is kept (it still feeds them, as edge/Relay.ts
 * does), and goes with its last child; a parent never goes before its children, so re-attaching
 * is not modelled. Without limits every relay is fed by the origin, as before tiers.
 */

/** Tier limits, as the product's --origin-max-relays and --edge-max-children; undefined: no limit. */
export interface TierLimits {
  originMaxRelays?: number;
  edgeMaxChildren?: number;
}

/** The parent of a relay fed by its stream's origin. */
export const ORIGIN = -1;

/** A relay, as the product lists it to an edge choosing a parent (db/repositories/relays.ts ParentCandidate) and more. */
export interface TreeRelay {
  edge: number;
  edgeNodeId: string;
  publicUrl: string;
  region: string;
  lat: number;
  lon: number;
  stream: number;
  /** The edge it pulls from, or ORIGIN. */
  parent: number;
  /** Edges it feeds this stream to. */
  children: number;
  /** As ParentCandidate's: the simulator's parents are never full by egress. */
  bitrateOut: number;
  egressCapacity: number;
  /** 0: pulls from the origin; 1: from an edge that pulls from the origin; … */
  tier: number;
  /** Opening order, over the run: a parent's is smaller than its children's (the product's tree key). */
  treeKey: number;
}

export class RelayTrees {
  readonly limits: TierLimits;
  /** Per stream: edges its origin feeds it to now. */
  readonly originFeeds: Int32Array;
  /** Per edge: child relays it feeds, over all streams. */
  readonly edgeChildren: Int32Array;
  /** Live relays per tier (index = tier). */
  readonly atTier: number[] = [];
  /** Peaks over the run: edges an origin fed one stream to; children of one relay; child relays of one edge. */
  originFeedsPeak = 0;
  /** Opens whose first round the product would fail: the origin and the parents it asks all full. */
  refusedRounds = 0;
  childrenPeak = 0;
  edgeChildrenPeak = 0;
  readonly #streams: number;
  readonly #model: Model;
  readonly #relays = new Map<number, TreeRelay>();
  /** Per stream: its relays by region. */
  readonly #byRegion: Map<number, Set<TreeRelay>>[];
  /** Per region: every region, nearest centre first (itself first), and the distances between centres. */
  readonly #regionOrder: Int32Array[];
  readonly #centreKm: Float64Array[];
  /** The largest distance from a region's centre to one of its edges: bounds edge distances by centre distances. */
  readonly #maxRadiusKm: number;
  readonly #regionOf: Int32Array;
  #opened = 0;

  constructor(model: Model, limits: TierLimits) {
    this.limits = limits;
    this.#streams = model.streams.length;
    this.originFeeds = new Int32Array(model.streams.length);
    this.edgeChildren = new Int32Array(model.edgeCount);
    this.#model = model;
    this.#byRegion = Array.from(model.streams, () => new Map());
    this.#regionOf = new Int32Array(model.edgeCount);
    for (const r of model.regions) for (const e of r.edges) this.#regionOf[e] = r.index;
    this.#centreKm = model.regions.map((from) => Float64Array.from(model.regions, (to) => distanceKm(from, to)));
    this.#regionOrder = model.regions.map((from) =>
      Int32Array.from(model.regions, (to) => to.index).sort((a, b) => this.#centreKm[from.index]![a]! - this.#centreKm[from.index]![b]! || a - b),
    );
    this.#maxRadiusKm = Math.max(...model.regions.map((r) => r.radiusKm));
  }

  get(edge: number, stream: number): TreeRelay | undefined {
    return this.#relays.get(edge * this.#streams + stream);
  }

  /** Every live relay (for checks). */
  relays(): IterableIterator<TreeRelay> {
    return this.#relays.values();
  }

  /** Edge `edge` opens a relay of `stream`: attaches it to the origin or a parent; returns it. */
  open(edge: number, stream: number): TreeRelay {
    const { originMaxRelays } = this.limits;
    let parent: TreeRelay | undefined;
    if (originMaxRelays !== undefined && this.originFeeds[stream]! >= originMaxRelays) {
      parent = this.#askedParent(edge, stream);
      if (!parent) {
        this.refusedRounds++;
        // A tree always has room: each relay adds edgeMaxChildren ≥ 1 places and takes one.
        parent = this.#nearestWithRoom(edge, stream);
        if (!parent) throw new Error(`no parent with room for stream ${stream}`);
      }
    }
    const node = this.#model.nodes[edge]!;
    const relay: TreeRelay = {
      edge,
      edgeNodeId: node.id,
      publicUrl: node.publicUrl,
      region: node.region,
      lat: node.lat,
      lon: node.lon,
      stream,
      parent: parent ? parent.edge : ORIGIN,
      children: 0,
      bitrateOut: 0,
      egressCapacity: Infinity,
      tier: parent ? parent.tier + 1 : 0,
      treeKey: ++this.#opened,
    };
    this.#relays.set(edge * this.#streams + stream, relay);
    this.atTier[relay.tier] = (this.atTier[relay.tier] ?? 0) + 1;
    const byRegion = this.#byRegion[stream]!;
    const region = this.#regionOf[edge]!;
    if (!byRegion.has(region)) byRegion.set(region, new Set());
    byRegion.get(region)!.add(relay);
    if (parent) {
      parent.children++;
      this.edgeChildren[parent.edge]!++;
      this.childrenPeak = Math.max(this.childrenPeak, parent.children);
      this.edgeChildrenPeak = Math.max(this.edgeChildrenPeak, this.edgeChildren[parent.edge]!);
    } else {
      this.originFeedsPeak = Math.max(this.originFeedsPeak, ++this.originFeeds[stream]!);
    }
    return relay;
  }

  /** Closes a relay with no children; returns its parent's edge, or ORIGIN. */
  close(edge: number, stream: number): number {
    const relay = this.get(edge, stream)!;
    if (relay.children > 0) throw new Error(`relay of stream ${stream} on edge ${edge} still feeds ${relay.children} edges`);
    this.#relays.delete(edge * this.#streams + stream);
    this.atTier[relay.tier]!--;
    const byRegion = this.#byRegion[stream]!;
    const region = this.#regionOf[edge]!;
    const set = byRegion.get(region)!;
    set.delete(relay);
    if (set.size === 0) byRegion.delete(region);
    if (relay.parent === ORIGIN) {
      this.originFeeds[stream]!--;
    } else {
      const parent = this.get(relay.parent, stream)!;
      parent.children--;
      this.edgeChildren[parent.edge]!--;
    }
    return relay.parent;
  }

  #hasRoom(relay: TreeRelay): boolean {
    const { edgeMaxChildren } = this.limits;
    return edgeMaxChildren === undefined || relay.children < edgeMaxChildren;
  }

  /**
   * The parent the product's first round finds: orderUpstreams() over the stream's relays nearest
   * `edge` (whole regions, nearest centre first, until no edge of a farther region can be nearer
   * than the last one asked), the first with room among the parents it asks; undefined if none.
   */
  #askedParent(edge: number, stream: number): TreeRelay | undefined {
    const asked = UPSTREAMS_PER_ROUND - 1;
    const byRegion = this.#byRegion[stream]!;
    const home = this.#regionOf[edge]!;
    const self = this.#model.nodes[edge]!;
    const near: TreeRelay[] = [];
    const distances: number[] = [];
    for (const region of this.#regionOrder[home]!) {
      if (near.length >= asked) {
        const farthestAsked = distances.sort((a, b) => a - b)[asked - 1]!;
        if (this.#centreKm[home]![region]! - 2 * this.#maxRadiusKm > farthestAsked) break;
      }
      for (const r of byRegion.get(region) ?? []) {
        if (!this.#hasRoom(r)) continue; // the edge leaves them out (orderUpstreams' maxChildren)
        near.push(r);
        distances.push(distanceKm(self, r));
      }
    }
    const origin = { nodeId: 'origin', url: '' };
    const order = orderUpstreams({ origin, parents: near, self: { id: self.id, region: self.region, lat: self.lat, lon: self.lon }, maxChildren: this.limits.edgeMaxChildren }).filter((t) => t !== origin);
    for (const target of order) {
      const r = near.find((n) => n.edgeNodeId === target.nodeId)!;
      if (this.#hasRoom(r)) return r;
    }
    return undefined;
  }

  /** The nearest relay with room (ties: fewest children, then node id), as a later round would find. */
  #nearestWithRoom(edge: number, stream: number): TreeRelay | undefined {
    const byRegion = this.#byRegion[stream]!;
    const self = this.#model.nodes[edge]!;
    let best: TreeRelay | undefined;
    let bestKm = Infinity;
    const home = this.#regionOf[edge]!;
    for (const region of this.#regionOrder[home]!) {
      if (best && this.#centreKm[home]![region]! - 2 * this.#maxRadiusKm > bestKm) break;
      for (const r of byRegion.get(region) ?? []) {
        if (!this.#hasRoom(r)) continue;
        const km = distanceKm(self, r);
        if (km < bestKm || (km === bestKm && (r.children < best!.children || (r.children === best!.children && r.edge < best!.edge)))) {
          best = r;
          bestKm = km;
        }
      }
    }
    return best;
  }
}
