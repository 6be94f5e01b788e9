import { distanceKm, regionDistanceKm, regionsByDistance, type Position } from '../core/geo.ts';

/**
 * The nearest region to a position, by the route API's own rule (regionsByDistance: a region is as
 * far as its nearest site; ties by name), for the hundreds of thousands of positions a GeoIP
 * database holds. The globe is cut into CELL_DEGREES cells; for each cell a position falls in, the
 * regions that can be nearest anywhere in it are found once (triangle inequality: a region more
 * than the cell's diameter farther from the cell's centre than the nearest one cannot win
 * anywhere inside), so most positions need no distance at all, and the others are ranked by
 * regionsByDistance itself over those few regions.
 */

/**
 * Cells of 2° × 2° (at most ~220 km across): with 100 regions most cells have one candidate; the
 * ~16,000 cells cost one distance per site each, and only cells holding positions are computed.
 */
const CELL_DEGREES = 2;
const LAT_CELLS = 180 / CELL_DEGREES;
const LON_CELLS = 360 / CELL_DEGREES;
/**
 * Margin on the bound, in km: haversine's floating-point error is far below a metre, so a region
 * left out by more than this cannot tie or win through rounding.
 */
const SLACK_KM = 1;
/** Points along each edge of a cell where its farthest distance from the centre is measured. */
const EDGE_SAMPLES = 8;

export class NearestRegion {
  /** Sites per region, duplicates dropped (they change no minimum). */
  readonly #sites: Map<string, Position[]>;
  /** Per region: one of its sites, and how far its other sites are from it at most. */
  readonly #circles: Array<{ name: string; centre: Position; radius: number }> = [];
  readonly #code: Map<string, number>;
  readonly #fallback: number;
  /** Cell → its only candidate region's code, or the candidates' sites. */
  readonly #cells = new Map<number, number | Map<string, Position[]>>();

  /**
   * `codes`: the number given for each region name; `fallback`: the number given when there is
   * no region at all (an empty `sites`).
   */
  constructor(sites: ReadonlyMap<string, readonly Position[]>, codes: ReadonlyMap<string, number>, fallback: number) {
    this.#sites = new Map();
    for (const [name, positions] of sites) {
      if (positions.length === 0) continue;
      if (!codes.has(name)) throw new TypeError(`region ${name} has no code`);
      const seen = new Set<string>();
      const unique = positions.filter((p) => {
        const key = `${p.lat},${p.lon}`;
        return !seen.has(key) && seen.add(key);
      });
      this.#sites.set(name, unique);
    }
    for (const [name, positions] of this.#sites) {
      const centre = positions[0]!;
      this.#circles.push({ name, centre, radius: Math.max(...positions.map((p) => distanceKm(centre, p))) });
    }
    this.#code = new Map(codes);
    this.#fallback = fallback;
  }

  /** The code of the region nearest `point`. */
  codeOf(point: Position): number {
    if (this.#sites.size === 0) return this.#fallback;
    const { lat, lon } = point;
    if (!(Math.abs(lat) <= 90 && Math.abs(lon) <= 180)) return this.#rank(point, this.#sites);
    const row = Math.min(LAT_CELLS - 1, Math.floor((lat + 90) / CELL_DEGREES));
    const column = Math.min(LON_CELLS - 1, Math.floor((lon + 180) / CELL_DEGREES));
    const cell = row * LON_CELLS + column;
    let candidates = this.#cells.get(cell);
    if (candidates === undefined) {
      candidates = this.#candidates(row, column);
      this.#cells.set(cell, candidates);
    }
    return typeof candidates === 'number' ? candidates : this.#rank(point, candidates);
  }

  /** Cells computed so far. */
  get cells(): number {
    return this.#cells.size;
  }

  #rank(point: Position, sites: ReadonlyMap<string, readonly Position[]>): number {
    return this.#code.get(regionsByDistance(point, sites)[0]!)!;
  }

  #candidates(row: number, column: number): number | Map<string, Position[]> {
    const south = row * CELL_DEGREES - 90;
    const west = column * CELL_DEGREES - 180;
    const centre = { lat: south + CELL_DEGREES / 2, lon: west + CELL_DEGREES / 2 };
    let radius = 0;
    for (let i = 0; i <= EDGE_SAMPLES; i++) {
      const f = (i / EDGE_SAMPLES) * CELL_DEGREES;
      for (const p of [
        { lat: south, lon: west + f },
        { lat: south + CELL_DEGREES, lon: west + f },
        { lat: south + f, lon: west },
        { lat: south + f, lon: west + CELL_DEGREES },
      ]) {
        radius = Math.max(radius, distanceKm(centre, p));
      }
    }
    // Between samples the edge bulges a little: 5 % more covers it for cells this small.
    radius = radius * 1.05 + SLACK_KM;
    // A region's distance lies within its circle's distance ± its radius: regions whose least
    // possible distance is beyond the best greatest one by more than the cell's diameter are out
    // without measuring their sites.
    const bounds = this.#circles.map((c) => ({ name: c.name, far: distanceKm(centre, c.centre), radius: c.radius }));
    const bestFar = Math.min(...bounds.map((b) => b.far + b.radius));
    const distances = bounds
      .filter((b) => b.far - b.radius <= bestFar + 2 * radius + SLACK_KM)
      .map(({ name }) => ({ name, positions: this.#sites.get(name)!, distance: regionDistanceKm(centre, this.#sites.get(name)!) }));
    const best = Math.min(...distances.map((d) => d.distance));
    const near = distances.filter((d) => d.distance <= best + 2 * radius + SLACK_KM);
    if (near.length === 1) return this.#code.get(near[0]!.name)!;
    return new Map(near.map((d) => [d.name, d.positions]));
  }
}
