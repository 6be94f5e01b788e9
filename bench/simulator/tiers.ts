import { distanceKm } from '../../balancer/policies.ts';
import type { Model } from './model.ts';

/**
 * Relay tiers (issue 18) in the simulator: per stream, the tree of relays from its origin. An
 * edge that opens a relay attaches to the origin while the origin feeds fewer than
 * `originMaxRelays` edges that stream; past that, to a parent: an edge already relaying the stream
 * that feeds fewer than `edgeMaxChildren` edges, in the region nearest the child's (distance
 * between region centres; its own region first), and within it the one with fewest children
 * (ties: the one opened first). Only relays already open can be parents, so a parent always opened
 * before its children and the tree has no loop, as the product's tree keys guarantee.
 *
 * A relay with children but no viewers of its own is kept (it still feeds them), and goes with
 * its last child; a parent never goes before its children, so re-attaching is not modelled.
 * Without limits every relay is fed by the origin, as before tiers.
 */

/** Tier limits, as the product's --origin-max-relays and --edge-max-children; undefined: no limit. */
export interface TierLimits {
  originMaxRelays?: number;
  edgeMaxChildren?: number;
}

/** The parent of a relay fed by its stream's origin. */
export const ORIGIN = -1;

export interface TreeRelay {
  edge: number;
  stream: number;
  /** The edge it pulls from, or ORIGIN. */
  parent: number;
  /** Edges it feeds this stream to. */
  children: number;
  /** 0: pulls from the origin; 1: from an edge that pulls from the origin; … */
  tier: number;
  /** Opening order, over the run: a parent's is smaller than its children's. */
  key: number;
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
  childrenPeak = 0;
  edgeChildrenPeak = 0;
  readonly #streams: number;
  readonly #relays = new Map<number, TreeRelay>();
  /** Per stream: its relays with room for a child, by region. */
  readonly #open: Map<number, Set<TreeRelay>>[];
  /** Per region: every region, nearest centre first (itself first). */
  readonly #regionOrder: Int32Array[];
  readonly #regionOf: Int32Array;
  #opened = 0;

  constructor(model: Model, limits: TierLimits) {
    this.limits = limits;
    this.#streams = model.streams.length;
    this.originFeeds = new Int32Array(model.streams.length);
    this.edgeChildren = new Int32Array(model.edgeCount);
    this.#open = Array.from(model.streams, () => new Map());
    this.#regionOf = new Int32Array(model.edgeCount);
    for (const r of model.regions) for (const e of r.edges) this.#regionOf[e] = r.index;
    this.#regionOrder = model.regions.map((from) =>
      Int32Array.from(
        model.regions.map((to) => ({ r: to.index, km: to === from ? -1 : distanceKm(from, to) })).sort((a, b) => a.km - b.km || a.r - b.r),
        (x) => x.r,
      ),
    );
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
      parent = this.#nearestParent(edge, stream);
      // A tree always has room: each relay adds edgeMaxChildren ≥ 1 places and takes one.
      if (!parent) throw new Error(`no parent with room for stream ${stream}`);
    }
    const relay: TreeRelay = { edge, stream, parent: parent ? parent.edge : ORIGIN, children: 0, tier: parent ? parent.tier + 1 : 0, key: this.#opened++ };
    this.#relays.set(edge * this.#streams + stream, relay);
    this.atTier[relay.tier] = (this.atTier[relay.tier] ?? 0) + 1;
    this.#setOpen(relay, true);
    if (parent) {
      parent.children++;
      this.edgeChildren[parent.edge]!++;
      this.childrenPeak = Math.max(this.childrenPeak, parent.children);
      this.edgeChildrenPeak = Math.max(this.edgeChildrenPeak, this.edgeChildren[parent.edge]!);
      if (!this.#hasRoom(parent)) this.#setOpen(parent, false);
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
    this.#setOpen(relay, false);
    if (relay.parent === ORIGIN) {
      this.originFeeds[stream]!--;
    } else {
      const parent = this.get(relay.parent, stream)!;
      parent.children--;
      this.edgeChildren[parent.edge]!--;
      this.#setOpen(parent, true);
    }
    return relay.parent;
  }

  #hasRoom(relay: TreeRelay): boolean {
    const { edgeMaxChildren } = this.limits;
    return edgeMaxChildren === undefined || relay.children < edgeMaxChildren;
  }

  #setOpen(relay: TreeRelay, open: boolean): void {
    const byRegion = this.#open[relay.stream]!;
    const region = this.#regionOf[relay.edge]!;
    let set = byRegion.get(region);
    if (open && this.#hasRoom(relay)) {
      if (!set) byRegion.set(region, (set = new Set()));
      set.add(relay);
    } else if (set?.delete(relay) && set.size === 0) byRegion.delete(region);
  }

  /** The parent rule: nearest region with a relay that has room, then fewest children, then opened first. */
  #nearestParent(edge: number, stream: number): TreeRelay | undefined {
    const byRegion = this.#open[stream]!;
    if (byRegion.size === 0) return undefined;
    for (const region of this.#regionOrder[this.#regionOf[edge]!]!) {
      const set = byRegion.get(region);
      if (!set) continue;
      let best: TreeRelay | undefined;
      for (const r of set) if (!best || r.children < best.children || (r.children === best.children && r.key < best.key)) best = r;
      return best;
    }
    return undefined;
  }
}
