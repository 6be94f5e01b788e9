/**
 * Great-circle distances between nodes and clients (the balancer's policies, the edges' choice of a
 * parent), and the rule that says which region a client is nearest (the route API and HAProxy's geo
 * map, which is built in a process of its own that loads this and not the policies).
 */

const EARTH_RADIUS_KM = 6371;

/** Haversine distance in km. */
export function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/**
 * The one tie-break between node ids and between region names: UTF-16 code-unit order, as `<`
 * compares. Not localeCompare, which costs a microsecond a call and would dominate a decision.
 */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A place on the globe. */
export interface Position {
  lat: number;
  lon: number;
}

/**
 * How far a client is from a region: the distance to the region's nearest node of the role asked
 * for, whatever that node's load (a full or draining node is still where it is). One rule for the
 * route API, the 307, the route index and HAProxy's geo map, so that they all send a client to
 * the same region; a region moves only when a node joins or leaves it, never when load changes.
 */
export function regionDistanceKm(point: Position, sites: readonly Position[]): number {
  let nearest = Infinity;
  for (const site of sites) nearest = Math.min(nearest, distanceKm(point, site));
  return nearest;
}

/** The region names in `sites`, nearest to `point` first; ties by name. */
export function regionsByDistance(point: Position, sites: ReadonlyMap<string, readonly Position[]>): string[] {
  return [...sites.entries()]
    .map(([name, positions]) => ({ name, distance: regionDistanceKm(point, positions) }))
    .sort((a, b) => a.distance - b.distance || compareNames(a.name, b.name))
    .map((r) => r.name);
}
