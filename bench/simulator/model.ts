import { compareNames, distanceKm, type NodeSnapshot, type PolicyName, type Thresholds } from '../../balancer/policies.ts';
import type { TierLimits } from './tiers.ts';
import { derive, exponential, gaussian, rng, WeightedPicker, zipfWeights, type Rng } from './random.ts';

/**
 * The simulated world: regions over the globe, edges and origins in them, streams with their
 * publishers, and the viewers who will arrive (the same viewers for every policy).
 */

export interface SimOptions {
  edges: number;
  regions: number;
  /** Viewer arrivals in the whole run. */
  viewers: number;
  streams: number;
  /** Zipf exponent of stream popularity. */
  zipf: number;
  /** Zipf exponent of the regions' population shares (0: every region alike). */
  regionZipf: number;
  /** 0: the same number of edges in every region; 1: edges in proportion to population. */
  edgeSkew: number;
  /** Viewers an edge takes at full load. */
  capacity: number;
  originsPerRegion: number;
  /** How far viewers live from their region's centre (standard deviation, km). */
  spreadKm: number;
  /** Simulated minutes over which the viewers arrive (Poisson), and their mean watch time (exponential). */
  arrivalMinutes: number;
  watchMinutes: number;
  /** Simulated seconds between samples of the cluster (utilisation, relays, edges in use). */
  sampleSeconds: number;
  seed: number;
  thresholds: Thresholds;
  policies: PolicyName[];
  /** fast: rank()'s region choice replayed over typed arrays; rank: rank() over the candidate regions' nodes. */
  engine: 'fast' | 'rank';
  /** Relay tiers (bench/simulator/tiers.ts); {}: every edge pulls from the origin, as without tiers. */
  tiers: TierLimits;
  /**
   * Bitrate of every stream, all layers a relay carries (kbit/s): origin egress in bit/s = relays it
   * feeds × this; an edge's = (viewers + child relays) × this (the product counts each producer's
   * bitrate per receiver: edge/Relay.ts bitrateOut).
   */
  streamKbps: number;
  /** Egress capacity of every edge (Gbit/s, the product's --egress-capacity); 0: not modelled (load is viewers alone). */
  egressGbps: number;
  /** Egress capacity of every origin (Gbit/s); 0: not limited. */
  originEgressGbps: number;
  /**
   * Edges killed at the end of the arrivals (about the peak) to measure re-attachment: the ones
   * feeding the most child relays (bench/simulator/tiers.ts reattach(); the run goes on unchanged).
   */
  kill: number;
  /** HAProxy's hashing in place of the 307, once per factor (hash-balance-factor; 0: unbounded); []: not run. */
  hashBalanceFactors: number[];
  /** How long a WHEP request is in flight at an edge that relays the stream, and at one that opens the relay first (ms). */
  haproxyTiming: { joinMs: number; openMs: number };
  /** Every join also goes through rank() over all nodes, and must choose the same edge (slow; for tests). */
  verify: boolean;
  /** Joins per policy cross-checked against rank() over all nodes when not verifying every join. */
  checks: number;
}

export const DEFAULT_OPTIONS: SimOptions = {
  edges: 10_000,
  regions: 100,
  viewers: 1_000_000,
  streams: 2_000,
  zipf: 1.0,
  regionZipf: 1.0,
  edgeSkew: 0,
  capacity: 500,
  originsPerRegion: 1,
  spreadKm: 300,
  arrivalMinutes: 120,
  watchMinutes: 60,
  sampleSeconds: 60,
  seed: 1,
  thresholds: { streams: 0.8, viewers: 0.95 },
  policies: [],
  engine: 'fast',
  tiers: {},
  // A 720p simulcast publish: ~2,000 kbit/s top layer + 500 + 150 (the layers bench's), + Opus.
  streamKbps: 2_700,
  // The product's default --egress-capacity (1 Gbit/s) for edges. Origins unlimited: their NIC is
  // the operator's choice, and a limit would turn "tiers off" into trees (the busiest origin at full
  // size needs 64 Gbit/s without tiers, 3.8 with tiers 4 / 8).
  egressGbps: 1,
  originEgressGbps: 0,
  kill: 10,
  hashBalanceFactors: [],
  // Assumed: an answer from a new WebRTC transport; a relay opened first adds a round trip or two
  // to its upstream and the pipe's setup.
  haproxyTiming: { joinMs: 50, openMs: 250 },
  verify: false,
  checks: 20,
};

const RAD = Math.PI / 180;
const KM_PER_DEGREE = 111.2;

export interface Region {
  index: number;
  name: string;
  lat: number;
  lon: number;
  /** Share of the viewers who live here. */
  share: number;
  /** Its edges, as indices into `Model.nodes`, in the nodes' order. */
  edges: Int32Array;
  /** Distance from the centre to the farthest of its edges. */
  radiusKm: number;
}

export interface Stream {
  name: string;
  /** Index of its origin in `Model.nodes`. */
  origin: number;
}

/** The viewers, in order of arrival: column arrays, one entry per viewer. */
export interface Workload {
  count: number;
  arrive: Float64Array;
  leave: Float64Array;
  lat: Float64Array;
  lon: Float64Array;
  home: Int32Array;
  stream: Int32Array;
  /** Distance to the centre of the home region (km), for the region lower bounds. */
  fromHome: Float64Array;
}

export interface Model {
  options: SimOptions;
  regions: Region[];
  /** Every node the balancer would see: the edges (0 … edgeCount-1), then the origins. */
  nodes: NodeSnapshot[];
  edgeCount: number;
  /** The edges' stream sets, which the run mutates (NodeSnapshot.streams is read-only). */
  streamSets: Set<string>[];
  /** Rank of each edge's id in compareNames order (the policies' tie-break). */
  idRank: Int32Array;
  /** Rank of each region's name in compareNames order (rank()'s tie-break between regions). */
  regionNameRank: Int32Array;
  /**
   * For each home region: all regions ordered by `distance between centres − radius`, a lower bound
   * on how close their edges can be to a viewer of that home (less the viewer's own `fromHome`).
   */
  nearOrder: Int32Array[];
  nearKeys: Float64Array[];
  streams: Stream[];
  workload: Workload;
}

/** Great-circle distance from precomputed radians and cosines: for bounds only (rank() uses distanceKm). */
export function fastKm(latRad1: number, cosLat1: number, lonRad1: number, latRad2: number, cosLat2: number, lonRad2: number): number {
  const s1 = Math.sin((latRad2 - latRad1) / 2);
  const s2 = Math.sin((lonRad2 - lonRad1) / 2);
  return 12742 * Math.asin(Math.min(1, Math.sqrt(s1 * s1 + cosLat1 * cosLat2 * s2 * s2)));
}

/** A point about `sigmaKm` from (lat, lon), normally distributed. */
function near(random: Rng, lat: number, lon: number, sigmaKm: number): { lat: number; lon: number } {
  const nLat = Math.max(-89, Math.min(89, lat + (gaussian(random) * sigmaKm) / KM_PER_DEGREE));
  const nLon = lon + (gaussian(random) * sigmaKm) / (KM_PER_DEGREE * Math.max(0.1, Math.cos(nLat * RAD)));
  return { lat: nLat, lon: ((((nLon + 180) % 360) + 360) % 360) - 180 };
}

/** Splits `total` in proportion to `weights`, in whole numbers (largest remainders), at least `floor` each. */
function apportion(total: number, weights: number[], floor: number): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => floor + ((total - floor * weights.length) * w) / sum);
  const counts = exact.map(Math.floor);
  let left = total - counts.reduce((a, b) => a + b, 0);
  const byRemainder = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of byRemainder) {
    if (left-- <= 0) break;
    counts[i]!++;
  }
  return counts;
}

export function buildModel(options: SimOptions): Model {
  const { regions: R, edges: E, streams: S, viewers: V } = options;
  if (!(R >= 1 && E >= R && S >= 1 && V >= 1 && options.capacity >= 1)) throw new RangeError('need regions >= 1, edges >= regions, streams >= 1, viewers >= 1, capacity >= 1');
  const random = rng(derive(options.seed, 'model'));
  const pad = (n: number, of: number) => String(n).padStart(String(of - 1).length, '0');

  // Regions: centres uniform over the sphere between 55° S and 70° N; population Zipf over a shuffled order.
  const sinMin = Math.sin(-55 * RAD);
  const sinMax = Math.sin(70 * RAD);
  const centres = Array.from({ length: R }, () => ({ lat: Math.asin(sinMin + random() * (sinMax - sinMin)) / RAD, lon: random() * 360 - 180 }));
  const popularity = zipfWeights(R, options.regionZipf);
  const ranks = Array.from({ length: R }, (_, i) => i);
  for (let i = R - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ranks[i], ranks[j]] = [ranks[j]!, ranks[i]!];
  }
  const popSum = popularity.reduce((a, b) => a + b, 0);
  const shares = ranks.map((r) => popularity[r]! / popSum);
  const edgeCounts = apportion(E, shares.map((s) => (1 - options.edgeSkew) / R + options.edgeSkew * s), 1);

  const nodes: NodeSnapshot[] = [];
  const streamSets: Set<string>[] = [];
  const regions: Region[] = [];
  for (let r = 0; r < R; r++) {
    const name = `region-${pad(r, R)}`;
    const { lat, lon } = centres[r]!;
    const first = nodes.length;
    for (let k = 0; k < edgeCounts[r]!; k++) {
      // Edges sit in the region's metro area, within about 30 km of its centre.
      const eLat = lat + (random() - 0.5) * 0.5;
      const eLon = lon + ((random() - 0.5) * 0.5) / Math.cos(eLat * RAD);
      const streams = new Set<string>();
      streamSets.push(streams);
      const i = nodes.length;
      nodes.push({ id: `edge-${pad(i, E)}`, roles: ['edge'], region: name, lat: eLat, lon: eLon, publicUrl: `https://edge-${pad(i, E)}.example`, capacity: options.capacity, viewers: 0, cpu: 0, draining: false, streams });
    }
    const edges = Int32Array.from({ length: nodes.length - first }, (_, k) => first + k);
    const radiusKm = Math.max(0, ...Array.from(edges, (i) => distanceKm({ lat, lon }, nodes[i]!)));
    regions.push({ index: r, name, lat, lon, share: shares[r]!, edges, radiusKm });
  }
  const edgeCount = nodes.length;

  // Origins: `originsPerRegion` near each centre; a stream is published on the origin nearest its publisher.
  for (const region of regions) {
    for (let k = 0; k < options.originsPerRegion; k++) {
      const p = near(random, region.lat, region.lon, 20);
      nodes.push({ id: `origin-${region.name.slice(7)}-${k}`, roles: ['origin'], region: region.name, lat: p.lat, lon: p.lon, publicUrl: `https://origin-${region.name}-${k}.example`, capacity: options.capacity, viewers: 0, cpu: 0, draining: false, streams: new Set() });
    }
  }
  const homePicker = new WeightedPicker(shares);
  const streams: Stream[] = Array.from({ length: S }, (_, s) => {
    const home = regions[homePicker.pick(random)]!;
    const publisher = near(random, home.lat, home.lon, options.spreadKm);
    let origin = edgeCount;
    for (let o = edgeCount + 1; o < nodes.length; o++) if (distanceKm(publisher, nodes[o]!) < distanceKm(publisher, nodes[origin]!)) origin = o;
    const name = `stream-${pad(s, S)}`;
    (nodes[origin]!.streams as Set<string>).add(name);
    return { name, origin };
  });

  const idRank = new Int32Array(edgeCount);
  Array.from({ length: edgeCount }, (_, i) => i)
    .sort((a, b) => compareNames(nodes[a]!.id, nodes[b]!.id))
    .forEach((i, k) => (idRank[i] = k));
  const regionNameRank = new Int32Array(R);
  Array.from({ length: R }, (_, r) => r)
    .sort((a, b) => compareNames(regions[a]!.name, regions[b]!.name))
    .forEach((r, k) => (regionNameRank[r] = k));

  const nearOrder: Int32Array[] = [];
  const nearKeys: Float64Array[] = [];
  for (const home of regions) {
    const keyed = regions.map((x) => ({ r: x.index, key: distanceKm(home, x) - x.radiusKm })).sort((a, b) => a.key - b.key || a.r - b.r);
    nearOrder.push(Int32Array.from(keyed, (k) => k.r));
    nearKeys.push(Float64Array.from(keyed, (k) => k.key));
  }

  return { options, regions, nodes, edgeCount, streamSets, idRank, regionNameRank, nearOrder, nearKeys, streams, workload: buildWorkload(options, regions, homePicker) };
}

/** The viewers: Poisson arrivals over `arrivalMinutes`, exponential watch times, Zipf streams. */
function buildWorkload(options: SimOptions, regions: Region[], homePicker: WeightedPicker): Workload {
  const V = options.viewers;
  const random = rng(derive(options.seed, 'viewers'));
  const streamPicker = new WeightedPicker(zipfWeights(options.streams, options.zipf));
  const meanGap = (options.arrivalMinutes * 60) / V;
  const watch = options.watchMinutes * 60;
  const w: Workload = {
    count: V,
    arrive: new Float64Array(V),
    leave: new Float64Array(V),
    lat: new Float64Array(V),
    lon: new Float64Array(V),
    home: new Int32Array(V),
    stream: new Int32Array(V),
    fromHome: new Float64Array(V),
  };
  let t = 0;
  for (let v = 0; v < V; v++) {
    t += exponential(random, meanGap);
    const home = regions[homePicker.pick(random)]!;
    const p = near(random, home.lat, home.lon, options.spreadKm);
    w.arrive[v] = t;
    w.leave[v] = t + exponential(random, watch);
    w.lat[v] = p.lat;
    w.lon[v] = p.lon;
    w.home[v] = home.index;
    w.stream[v] = streamPicker.pick(random);
    w.fromHome[v] = fastKm(p.lat * RAD, Math.cos(p.lat * RAD), p.lon * RAD, home.lat * RAD, Math.cos(home.lat * RAD), home.lon * RAD);
  }
  return w;
}
