import { distanceKm } from '../core/geo.ts';

/**
 * What every node of a relay tree agrees on, the origin and edges alike (edge/RelayTree.ts has
 * the edge's order of upstreams): the bound on a relay's path, tree keys, and the room an origin
 * at its relay limit makes for a newcomer.
 */

/**
 * How much longer than the great circle from the origin a path may be: 2×. A detour through a
 * parent that doubles the distance doubles the propagation delay (a path across the globe, 20,000
 * km, is ~100 ms one way in fibre); beyond that pulling from the origin is clearly the better trade.
 */
export const MAX_STRETCH = 2;

/**
 * Slack on the stretch bound, and the reach of "near" (km): a metro area. An edge next to the
 * origin could otherwise take no parent at all (2 × 10 km), while a hop within a metro costs well
 * under a millisecond of propagation (1 ms ≈ 200 km of fibre).
 */
export const LOCAL_KM = 200;

/** The key a relay that feeds no one takes when it attaches below an upstream with `parentKey`. */
export function childKey(parentKey: number, now = Date.now()): number {
  return Math.max(now, parentKey + 1);
}

/** A relay the origin feeds, as the origin knows it (from its request): where its edge is, and its tree key. */
export interface OriginFedRelay {
  nodeId: string;
  lat: number;
  lon: number;
  treeKey: number;
  /**
   * Tiers of relays below it (0: it feeds no one), from the placement table's upstream links;
   * undefined: not known, not checked.
   */
  depthBelow?: number;
}

/**
 * The deepest tier a relay moved below a newcomer may take its subtree to: one past the deepest
 * bounded tier (edge/RelayTree.ts MAX_TIER, 3). A move takes the whole subtree one tier down, and
 * a newcomer that took a relay's place can itself be moved below a later one; unchecked, at full
 * size in the simulator 12 % of joins ended at tier 4 or deeper (p95 5). Held to MAX_TIER, the
 * origin refused 2.7× as many newcomers (4.0 % of joins past the path bound, against 1.3 %); one
 * tier more keeps p95 at 3 (4.6 % of joins deeper).
 */
export const DEMOTED_MAX_TIER = 4;

/** The relay the origin asks to move below a newcomer (media/RelayServer.ts), and its path through it. */
export interface Demotion<R extends OriginFedRelay = OriginFedRelay> {
  relay: R;
  /** The relay's path from the origin through the newcomer (km). */
  pathKm: number;
}

/**
 * The origin at its --origin-max-relays for a stream, asked by `newcomer`: which relay it feeds
 * could move below the newcomer, so that the newcomer takes its place. An edge asks the origin
 * after every bounded parent (rankUpstreams), so a full origin leaves it only unbounded paths,
 * while the origin's relays went to the first edges to come, wherever they were (in the
 * simulator at full size, 97 % of such edges had a relay of the origin's that would stay bounded
 * below them). A relay R can move below the newcomer N when its path through N stays bounded:
 * d(O, N) + d(N, R) ≤ MAX_STRETCH × d(O, R) + LOCAL_KM; of those, the one whose path grows least
 * (N nearest the way from the origin to R), then the farthest. It must have a tree key above 1, so
 * that N can take a smaller one (demotionKey) and R, which may feed others, can attach below it;
 * and its subtree, one tier down, must stay within DEMOTED_MAX_TIER (R at tier 1 below N): of
 * those, the shallowest subtree first, so that trees stay shallow as relays move.
 * undefined: none can (the origin refuses the newcomer, relay-full).
 */
export function chooseDemotion<R extends OriginFedRelay>(origin: { lat: number; lon: number }, newcomer: { lat: number; lon: number }, fed: readonly R[]): Demotion<R> | undefined {
  const toNewcomer = distanceKm(origin, newcomer);
  let best: (Demotion<R> & { depth: number; growth: number; directKm: number }) | undefined;
  for (const relay of fed) {
    if (relay.treeKey < 2) continue;
    const depth = relay.depthBelow ?? 0;
    if (1 + depth > DEMOTED_MAX_TIER) continue;
    const directKm = distanceKm(origin, relay);
    const pathKm = toNewcomer + distanceKm(newcomer, relay);
    if (pathKm > MAX_STRETCH * directKm + LOCAL_KM) continue;
    const growth = pathKm - directKm;
    if (!best || depth < best.depth || (depth === best.depth && (growth < best.growth || (growth === best.growth && directKm > best.directKm)))) best = { relay, pathKm, depth, growth, directKm };
  }
  return best && { relay: best.relay, pathKm: best.pathKm };
}

/** The key a newcomer takes when it takes the place of a relay with `demotedKey`: smaller, so that the demoted relay can attach below it. */
export function demotionKey(demotedKey: number): number {
  return Math.floor(demotedKey / 2);
}
