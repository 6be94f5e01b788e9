import { distanceKm } from '../../balancer/policies.ts';
import type { ParentCandidate } from '../../db/repositories/relays.ts';
import { MAX_TIER, rankUpstreams, UPSTREAMS_PER_ROUND, type RankedUpstream } from '../../edge/RelayTree.ts';
import { chooseDemotion, demotionKey, LOCAL_KM, MAX_STRETCH, type Demotion } from '../../media/treePaths.ts';
import type { Model } from './model.ts';

/**
 * Relay tiers (issues 18, 34) in the simulator: per stream, the tree of relays from its origin. An
 * edge that opens a relay ranks its upstreams with the product's own code (edge/RelayTree.ts
 * rankUpstreams, what orderUpstreams returns the first UPSTREAMS_PER_ROUND of): near parents with
 * a bounded path (when the origin has a relay budget), the origin, other parents with a bounded
 * path by cost, the rest. It takes the first that accepts, as a parent answers: the origin while
 * it feeds fewer than `originMaxRelays` edges the stream and its egress has room for one more
 * relay; a parent while it feeds fewer than `edgeMaxChildren` and its egress (viewers + child
 * relays, × the stream's bitrate) has room. The figures an edge ranks by are live here (the
 * product's are as of the last heartbeat), so the edge leaves out the parents that would refuse;
 * only parents already open can be chosen, so a parent always opened before its children.
 *
 * The product asks UPSTREAMS_PER_ROUND per round (orderUpstreams: the first of that order, the
 * origin always among them); when none of them accepts the round fails (the viewer is told 503
 * and retries). Here the figures are live, so the first in the order that accepts is the first of
 * the order, or the origin when it is first and full. The simulator counts those opens (`refusedRounds`) and takes the
 * first in the whole order that accepts, as a later round would; when none does (every parent and
 * the origin full) it attaches to the origin over its limits and counts it (`overflows`, 0 is the
 * aim).
 *
 * The origin at --origin-max-relays makes room for an edge that asks it to (rankUpstreams' makeRoom,
 * media/treePaths.ts chooseDemotion): one of its relays R that would stay bounded below the newcomer N moves below
 * it, and N takes R's place with a smaller tree key (demotionKey), so R, which may feed others,
 * can attach below N. The product's origin feeds N over its limit for a moment and R moves make
 * before break when N takes it (N's own --edge-max-children and egress); here both happen at once,
 * as one open (`demotions`). When no relay would stay bounded below N, or N has no room for R, the
 * origin refuses as before and N goes on down its order (`noDemotion`). Only the origin's relay
 * limit is relieved so: at its egress capacity the origin refuses as before.
 *
 * A relay with children but no viewers of its own is kept (it still feeds them, as edge/Relay.ts
 * does), and goes with its last child. Re-attachment after a parent dies is measured aside
 * (reattach()): the run goes on as if nothing died. Without limits every relay is fed by the
 * origin, as before tiers, unless the origin's egress is full.
 */

/** Tier limits, as the product's --origin-max-relays and --edge-max-children; undefined: no limit. */
export interface TierLimits {
  originMaxRelays?: number;
  edgeMaxChildren?: number;
}

/** What the trees need from the cluster: each edge's egress, and to be told when an edge's child relays change. */
export interface TreeHooks {
  /** Bits/s the edge sends now (viewers and child relays). */
  egressOf(edge: number): number;
  /** The edge's child relays (over all streams) changed by `delta`. */
  childrenChanged(edge: number, delta: 1 | -1): void;
}

/** Egress capacities and the stream's bitrate (bits/s); Infinity: not limited. */
export interface EgressLimits {
  edgeBps: number;
  originBps: number;
  streamBps: number;
}

/** The parent of a relay fed by its stream's origin. */
export const ORIGIN = -1;

/** A relay, as the product lists it to an edge choosing a parent (db/repositories/relays.ts ParentCandidate) and more. */
export interface TreeRelay extends ParentCandidate {
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
  /** 0: pulls from the origin; 1: from an edge that pulls from the origin; … */
  tier: number;
  /** Opening order, over the run: a parent's is smaller than its children's (the product's tree key). */
  treeKey: number;
  /** The media's path from the origin (great-circle hops summed, km), and the great circle itself. */
  pathKm: number;
  directKm: number;
  /** Its place in its stream's list. */
  slot: number;
  /** ParentCandidate's egress figures: its edge's, written when it is listed as a candidate. */
  bitrateOut: number;
  egressCapacity: number;
}

/** A relay the origin feeds, as chooseDemotion takes it, with the simulator's relay. */
interface DemotionCandidate {
  nodeId: string;
  lat: number;
  lon: number;
  treeKey: number;
  depthBelow: number;
  relay: TreeRelay;
}

/** Re-attachment after parents die (reattach()). */
export interface ReattachResult {
  killed: string[];
  /** Relays that lost their parent (on live edges), and the viewers on them and below them (they keep their sessions). */
  orphans: number;
  viewersBelow: number;
  /** Viewers on the killed edges themselves (their sessions end; they rejoin through the balancer). */
  viewersLost: number;
  /** Orphans that found a parent (or the origin) in their first round, in a later one, or none at all. */
  firstRound: number;
  laterRound: number;
  none: number;
  /** Of those that re-attached: to the origin; their new tier (index = tier); path / great circle (histogram by STRETCH_BINS). */
  toOrigin: number;
  byTier: number[];
  stretch: number[];
  /** Path beyond the product's bound (MAX_STRETCH × great circle + LOCAL_KM) after re-attaching. */
  unbounded: number;
  /** The deepest relay below a re-attached one, after (its subtree moves with it). */
  deepestAfter: number;
  /** Path lengths of the re-attached relays before and after, means (km). */
  meanPathKmBefore: number;
  meanPathKmAfter: number;
}

/** Upper bounds of the path / great-circle histogram's bins (the last: anything above 3). */
export const STRETCH_BINS = [1.0001, 1.1, 1.25, 1.5, 2, 3, Infinity];

export function stretchBin(pathKm: number, directKm: number): number {
  const ratio = pathKm / Math.max(directKm, 1e-9);
  return STRETCH_BINS.findIndex((bound) => ratio <= bound);
}

export class RelayTrees {
  readonly limits: TierLimits;
  readonly egress: EgressLimits;
  /** Per stream: edges its origin feeds it to now. */
  readonly originFeeds: Int32Array;
  /** Per origin (index into nodes − edgeCount): relays it feeds now, over all streams. */
  readonly originRelays: Int32Array;
  /** Per edge: child relays it feeds, over all streams. */
  readonly edgeChildren: Int32Array;
  /** Live relays per tier (index = tier). */
  readonly atTier: number[] = [];
  /** Peaks over the run: edges an origin fed one stream to; children of one relay; child relays of one edge. */
  originFeedsPeak = 0;
  /** Opens whose first round the product would fail: the origin and the parents it asks all full. */
  refusedRounds = 0;
  /** Opens no upstream would take (attached to the origin over its limits): 0 is the aim. */
  overflows = 0;
  /** Opens that asked the origin at --origin-max-relays and took a relay's place, it moving below them (chooseDemotion). */
  demotions = 0;
  /** Opens that asked the origin at --origin-max-relays when none of its relays could move below them (none bounded there, or no room for it). */
  noDemotion = 0;
  childrenPeak = 0;
  edgeChildrenPeak = 0;
  readonly #streams: number;
  readonly #model: Model;
  readonly #hooks: TreeHooks;
  readonly #relays = new Map<number, TreeRelay>();
  /** Per stream: its live relays. */
  readonly #ofStream: TreeRelay[][];
  readonly #originTarget: Array<{ nodeId: string; url: string; lat: number; lon: number }>;
  #opened = 0;

  constructor(model: Model, limits: TierLimits, egress: EgressLimits, hooks: TreeHooks) {
    this.limits = limits;
    this.egress = egress;
    this.#hooks = hooks;
    this.#streams = model.streams.length;
    this.originFeeds = new Int32Array(model.streams.length);
    this.originRelays = new Int32Array(model.nodes.length - model.edgeCount);
    this.edgeChildren = new Int32Array(model.edgeCount);
    this.#model = model;
    this.#ofStream = Array.from(model.streams, () => []);
    this.#originTarget = model.streams.map((s) => {
      const o = model.nodes[s.origin]!;
      return { nodeId: o.id, url: o.publicUrl, lat: o.lat, lon: o.lon };
    });
  }

  get(edge: number, stream: number): TreeRelay | undefined {
    return this.#relays.get(edge * this.#streams + stream);
  }

  /** Every live relay (for checks). */
  relays(): IterableIterator<TreeRelay> {
    return this.#relays.values();
  }

  /** Whether the origin of `stream` takes one more relay. */
  #originAccepts(stream: number, extraFeeds = 0, extraRelays = 0): boolean {
    const { originMaxRelays } = this.limits;
    const o = this.#model.streams[stream]!.origin - this.#model.edgeCount;
    if (originMaxRelays !== undefined && this.originFeeds[stream]! + extraFeeds >= originMaxRelays) return false;
    return (this.originRelays[o]! + extraRelays + 1) * this.egress.streamBps <= this.egress.originBps;
  }

  /** Whether a relay takes one more child: under --edge-max-children and its edge's egress capacity. */
  #accepts(relay: TreeRelay, extraChildren = 0, extraBps = 0): boolean {
    const { edgeMaxChildren } = this.limits;
    if (edgeMaxChildren !== undefined && relay.children + extraChildren >= edgeMaxChildren) return false;
    return this.#hooks.egressOf(relay.edge) + extraBps + this.egress.streamBps <= this.egress.edgeBps;
  }

  /** The stream's relays as the product lists them (ParentCandidate, with their edges' egress now), those that would accept only, `skip` left out. */
  #candidates(stream: number, accepts: (r: TreeRelay) => boolean, skip?: (r: TreeRelay) => boolean): TreeRelay[] {
    const out: TreeRelay[] = [];
    for (const r of this.#ofStream[stream]!) {
      if (skip?.(r) || !accepts(r)) continue;
      r.bitrateOut = this.#hooks.egressOf(r.edge);
      out.push(r);
    }
    return out;
  }

  #rank(edge: number, stream: number, parents: ParentCandidate[], extra: { lost?: string; treeKey?: number } = {}): RankedUpstream[] {
    const self = this.#model.nodes[edge]!;
    return rankUpstreams({
      origin: this.#originTarget[stream]!,
      parents,
      self: { id: self.id, region: self.region, lat: self.lat, lon: self.lon },
      maxChildren: this.limits.edgeMaxChildren,
      originMaxRelays: this.limits.originMaxRelays,
      relayBitrate: this.egress.streamBps,
      ...extra,
    });
  }

  /** Edge `edge` opens a relay of `stream`: attaches it to the origin or a parent; returns it. */
  open(edge: number, stream: number): TreeRelay {
    // Without --origin-max-relays the origin comes first in the order: when it accepts, nothing to rank.
    const originFirst = this.limits.originMaxRelays === undefined && this.#originAccepts(stream);
    const candidates = originFirst ? [] : this.#candidates(stream, (r) => this.#accepts(r));
    const byId = new Map(candidates.map((c) => [c.edgeNodeId, c]));
    const order = this.#rank(edge, stream, candidates);
    let chosen: RankedUpstream | undefined;
    let demotion: Demotion<DemotionCandidate> | undefined;
    for (let k = 0; k < order.length && !chosen; k++) {
      if (k === UPSTREAMS_PER_ROUND) this.refusedRounds++;
      const t = order[k]!;
      if (byId.has(t.nodeId) || this.#originAccepts(stream)) chosen = t;
      else if (t.origin && t.makeRoom && this.#atRelayLimit(stream)) {
        demotion = this.#demotion(edge, stream);
        if (demotion) chosen = t;
        else this.noDemotion++;
      }
    }
    const self = this.#model.nodes[edge]!;
    const origin = this.#originTarget[stream]!;
    const directKm = distanceKm(origin, self);
    if (!chosen) {
      this.overflows++;
      chosen = { nodeId: origin.nodeId, url: origin.url, pathKm: directKm, tier: 0 };
    }
    const parent = byId.get(chosen.nodeId);
    const relay: TreeRelay = {
      edge,
      edgeNodeId: self.id,
      publicUrl: self.publicUrl,
      region: self.region,
      lat: self.lat,
      lon: self.lon,
      stream,
      parent: parent ? parent.edge : ORIGIN,
      children: 0,
      tier: parent ? parent.tier + 1 : 0,
      treeKey: demotion ? demotionKey(demotion.relay.relay.treeKey) : ++this.#opened,
      pathKm: chosen.pathKm,
      directKm,
      slot: this.#ofStream[stream]!.length,
      bitrateOut: 0,
      egressCapacity: this.egress.edgeBps,
    };
    this.#relays.set(edge * this.#streams + stream, relay);
    this.#ofStream[stream]!.push(relay);
    this.atTier[relay.tier] = (this.atTier[relay.tier] ?? 0) + 1;
    if (parent) {
      parent.children++;
      this.edgeChildren[parent.edge]!++;
      this.#hooks.childrenChanged(parent.edge, 1);
      this.childrenPeak = Math.max(this.childrenPeak, parent.children);
      this.edgeChildrenPeak = Math.max(this.edgeChildrenPeak, this.edgeChildren[parent.edge]!);
    } else if (demotion) {
      this.#demote(demotion.relay.relay, relay, demotion.pathKm);
    } else {
      this.originFeedsPeak = Math.max(this.originFeedsPeak, ++this.originFeeds[stream]!);
      this.originRelays[this.#model.streams[stream]!.origin - this.#model.edgeCount]!++;
    }
    return relay;
  }

  /**
   * Whether the origin of `stream` refuses one more relay for its --origin-max-relays only (its
   * egress has room): it may then make room (chooseDemotion). Exactly at the limit: past it (after
   * an overflow, a few opens a run) it refuses, where the product's origin would still look.
   */
  #atRelayLimit(stream: number): boolean {
    return this.limits.originMaxRelays !== undefined && !this.#originAccepts(stream) && this.#originAccepts(stream, -1);
  }

  /**
   * The relay the origin of `stream` would move below `edge` (about to open a relay), as the
   * product's origin chooses it over the relays it feeds, if `edge` has room for it as a parent
   * (#accepts, for a relay with no children yet).
   */
  #demotion(edge: number, stream: number): Demotion<DemotionCandidate> | undefined {
    // The depth below each relay the origin feeds, as the origin reads it from the placement table.
    const list = this.#ofStream[stream]!;
    const childrenOf = this.#childrenOf(list);
    const fed: DemotionCandidate[] = [];
    for (const r of list) {
      if (r.parent !== ORIGIN) continue;
      let depthBelow = 0;
      const stack = [...(childrenOf.get(r.edge) ?? [])];
      for (let guard = 0; stack.length > 0 && guard <= list.length; guard++) {
        const c = stack.pop()!;
        depthBelow = Math.max(depthBelow, c.tier - r.tier);
        stack.push(...(childrenOf.get(c.edge) ?? []));
      }
      fed.push({ nodeId: r.edgeNodeId, lat: r.lat, lon: r.lon, treeKey: r.treeKey, depthBelow, relay: r });
    }
    const demotion = chooseDemotion(this.#originTarget[stream]!, this.#model.nodes[edge]!, fed);
    if (!demotion) return undefined;
    const { edgeMaxChildren } = this.limits;
    if (edgeMaxChildren !== undefined && edgeMaxChildren < 1) return undefined;
    return this.#hooks.egressOf(edge) + this.egress.streamBps <= this.egress.edgeBps ? demotion : undefined;
  }

  /** A stream's relays by their parent's edge (the origin's left out). */
  #childrenOf(list: TreeRelay[]): Map<number, TreeRelay[]> {
    const childrenOf = new Map<number, TreeRelay[]>();
    for (const r of list) {
      if (r.parent === ORIGIN) continue;
      if (!childrenOf.has(r.parent)) childrenOf.set(r.parent, []);
      childrenOf.get(r.parent)!.push(r);
    }
    return childrenOf;
  }

  /**
   * `demoted`, fed by the origin until now, moves below `newcomer` (just attached to the origin in
   * its place) with the path `pathKm`; everything below it moves one tier down and its path grows
   * as much. The origin's counts are unchanged: the newcomer in, the demoted relay out.
   */
  #demote(demoted: TreeRelay, newcomer: TreeRelay, pathKm: number): void {
    const growth = pathKm - demoted.pathKm;
    const list = this.#ofStream[demoted.stream]!;
    const childrenOf = this.#childrenOf(list);
    // Down the subtree first (by the old links), then the demoted relay's own link.
    const stack = [...(childrenOf.get(demoted.edge) ?? [])];
    for (let guard = 0; stack.length > 0 && guard <= list.length; guard++) {
      const r = stack.pop()!;
      this.atTier[r.tier]!--;
      r.tier++;
      this.atTier[r.tier] = (this.atTier[r.tier] ?? 0) + 1;
      r.pathKm += growth;
      stack.push(...(childrenOf.get(r.edge) ?? []));
    }
    this.atTier[demoted.tier]!--;
    demoted.parent = newcomer.edge;
    demoted.tier = newcomer.tier + 1;
    demoted.pathKm = pathKm;
    this.atTier[demoted.tier] = (this.atTier[demoted.tier] ?? 0) + 1;
    newcomer.children++;
    this.edgeChildren[newcomer.edge]!++;
    this.#hooks.childrenChanged(newcomer.edge, 1);
    this.childrenPeak = Math.max(this.childrenPeak, newcomer.children);
    this.edgeChildrenPeak = Math.max(this.edgeChildrenPeak, this.edgeChildren[newcomer.edge]!);
    this.demotions++;
  }

  /** Closes a relay with no children; returns its parent's edge, or ORIGIN. */
  close(edge: number, stream: number): number {
    const relay = this.get(edge, stream)!;
    if (relay.children > 0) throw new Error(`relay of stream ${stream} on edge ${edge} still feeds ${relay.children} edges`);
    this.#relays.delete(edge * this.#streams + stream);
    this.atTier[relay.tier]!--;
    const list = this.#ofStream[stream]!;
    const last = list.pop()!;
    if (last !== relay) {
      list[relay.slot] = last;
      last.slot = relay.slot;
    }
    if (relay.parent === ORIGIN) {
      this.originFeeds[stream]!--;
      this.originRelays[this.#model.streams[stream]!.origin - this.#model.edgeCount]!--;
    } else {
      const parent = this.get(relay.parent, stream)!;
      parent.children--;
      this.edgeChildren[parent.edge]!--;
      this.#hooks.childrenChanged(parent.edge, -1);
    }
    return relay.parent;
  }

  /**
   * What happens when the edges `dead` die at once, without changing the run: every relay they fed
   * (on a live edge) re-attaches as the product's would (edge/Relay.ts #reattach: the order from
   * rankUpstreams with the lost parent left out and, for a relay that feeds others, only parents
   * with a smaller tree key), one after another, each taking the first upstream that accepts;
   * the relays on the dead edges are gone as parents. `viewersOf(edge, stream)` gives a relay's own viewers.
   * Re-attachment does not demote (the origin's making room, chooseDemotion, is modelled for
   * opens only): an orphan that finds the origin full takes the next upstream in its order.
   */
  reattach(dead: number[], viewersOf: (edge: number, stream: number) => number): ReattachResult {
    const deadSet = new Set(dead);
    const result: ReattachResult = {
      killed: dead.map((e) => this.#model.nodes[e]!.id),
      orphans: 0,
      viewersBelow: 0,
      viewersLost: 0,
      firstRound: 0,
      laterRound: 0,
      none: 0,
      toOrigin: 0,
      byTier: [],
      stretch: STRETCH_BINS.map(() => 0),
      unbounded: 0,
      deepestAfter: 0,
      meanPathKmBefore: 0,
      meanPathKmAfter: 0,
    };
    // Children lists of the affected streams, and the orphans.
    const orphans: TreeRelay[] = [];
    const childrenOf = new Map<TreeRelay, TreeRelay[]>();
    const streams = new Set<number>();
    for (const r of this.#relays.values()) {
      if (deadSet.has(r.edge)) {
        result.viewersLost += viewersOf(r.edge, r.stream);
        streams.add(r.stream);
      }
    }
    for (const s of streams) {
      for (const r of this.#ofStream[s]!) {
        if (r.parent === ORIGIN) continue;
        const p = this.get(r.parent, s)!;
        if (!childrenOf.has(p)) childrenOf.set(p, []);
        childrenOf.get(p)!.push(r);
        if (deadSet.has(r.parent) && !deadSet.has(r.edge)) orphans.push(r);
      }
    }
    /** Relays between upstreams (the orphans and everything below them): they take no children meanwhile. */
    const moving = new Set<TreeRelay>();
    const below = (r: TreeRelay): { viewers: number; depth: number } => {
      let viewers = 0;
      let depth = 0;
      const stack: Array<[TreeRelay, number]> = [[r, 0]];
      for (let guard = 0; stack.length > 0 && guard <= this.#relays.size; guard++) {
        const [at, d] = stack.pop()!;
        moving.add(at);
        viewers += viewersOf(at.edge, at.stream);
        depth = Math.max(depth, d);
        for (const c of childrenOf.get(at) ?? []) if (!deadSet.has(c.edge)) stack.push([c, d + 1]);
      }
      return { viewers, depth };
    };
    const subtrees = new Map(orphans.map((r) => [r, below(r)]));
    // What the re-attachments add to parents and origins as they go.
    const extraChildren = new Map<TreeRelay, number>();
    const extraBps = new Map<number, number>();
    const extraFeeds = new Map<number, number>();
    const extraOrigin = new Map<number, number>();
    orphans.sort((a, b) => a.treeKey - b.treeKey);
    let before = 0;
    let after = 0;
    for (const r of orphans) {
      result.orphans++;
      const sub = subtrees.get(r)!;
      result.viewersBelow += sub.viewers;
      const feeds = r.children > 0;
      const accepts = (p: TreeRelay) => this.#accepts(p, extraChildren.get(p) ?? 0, extraBps.get(p.edge) ?? 0);
      // Its own subtree cannot take it: with children it asks only smaller keys; without, it has no subtree.
      const candidates = this.#candidates(r.stream, accepts, (p) => deadSet.has(p.edge) || moving.has(p));
      const byId = new Map(candidates.map((c) => [c.edgeNodeId, c]));
      const order = this.#rank(r.edge, r.stream, candidates, { lost: this.#model.nodes[r.parent]!.id, treeKey: feeds ? r.treeKey : undefined });
      const o = this.#model.streams[r.stream]!.origin - this.#model.edgeCount;
      let chosen = -1;
      for (let k = 0; k < order.length && chosen < 0; k++) {
        const t = order[k]!;
        if (byId.has(t.nodeId) || this.#originAccepts(r.stream, extraFeeds.get(r.stream) ?? 0, extraOrigin.get(o) ?? 0)) chosen = k;
      }
      if (chosen < 0) {
        result.none++;
        continue;
      }
      if (chosen < UPSTREAMS_PER_ROUND) result.firstRound++;
      else result.laterRound++;
      const t = order[chosen]!;
      const parent = byId.get(t.nodeId);
      if (parent) {
        extraChildren.set(parent, (extraChildren.get(parent) ?? 0) + 1);
        extraBps.set(parent.edge, (extraBps.get(parent.edge) ?? 0) + this.egress.streamBps);
      } else {
        result.toOrigin++;
        extraFeeds.set(r.stream, (extraFeeds.get(r.stream) ?? 0) + 1);
        extraOrigin.set(o, (extraOrigin.get(o) ?? 0) + 1);
      }
      result.byTier[t.tier] = (result.byTier[t.tier] ?? 0) + 1;
      result.stretch[stretchBin(t.pathKm, r.directKm)]!++;
      if (t.pathKm > MAX_STRETCH * r.directKm + LOCAL_KM || t.tier > MAX_TIER) result.unbounded++;
      result.deepestAfter = Math.max(result.deepestAfter, t.tier + sub.depth);
      before += r.pathKm;
      after += t.pathKm;
    }
    result.byTier = Array.from(result.byTier, (n) => n ?? 0);
    const moved = result.firstRound + result.laterRound;
    result.meanPathKmBefore = moved > 0 ? before / moved : 0;
    result.meanPathKmAfter = moved > 0 ? after / moved : 0;
    return result;
  }
}
