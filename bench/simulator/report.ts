import type { SimOptions } from './model.ts';
import type { PolicyResult } from './run.ts';
import { STRETCH_BINS } from './tiers.ts';
import { renderTable, type BarsPanel } from '../lib/report.ts';
import { renderSvg } from '../lib/svg.ts';

/** The policies side by side: a text table, a JSON document and one SVG chart. */

interface Metric {
  label: string;
  /** The figure as printed in the table. */
  text(r: PolicyResult): string;
  /** The figure the chart draws, in `unit`. */
  value(r: PolicyResult): number;
  unit: string;
  /** Which way is better, for the chart's legend. */
  better: 'higher' | 'lower';
  chart: boolean;
}

const int = (n: number) => Math.round(n).toLocaleString('en');
const pct = (share: number, digits = 1) => `${(share * 100).toFixed(digits)} %`;
/** Tiers shown one by one in the table; the deeper ones together (the JSON has them all). */
const TIERS_SHOWN = 4;
/** Counts per tier as `a / b / c / d / ≥4 e (deepest k)`, with `format` for each count. */
const byTier = (counts: number[], format: (n: number) => string) => {
  const shown = counts.slice(0, TIERS_SHOWN).map(format);
  if (counts.length > TIERS_SHOWN) shown.push(`≥${TIERS_SHOWN}: ${format(counts.slice(TIERS_SHOWN).reduce((a, b) => a + b, 0))} (deepest ${counts.length - 1})`);
  return shown.join(' / ');
};
const tierShares = (counts: number[]) => {
  const sum = counts.reduce((a, b) => a + b, 0);
  return byTier(counts, (n) => pct(sum > 0 ? n / sum : 0));
};

/** Shares of a histogram, one by one. */
const tierSharesFlat = (counts: number[]) => {
  const sum = counts.reduce((a, b) => a + b, 0);
  return counts.map((n) => pct(sum > 0 ? n / sum : 0)).join(' / ');
};

export const METRICS: Metric[] = [
  { label: 'packing efficiency (mean load of edges in use)', text: (r) => pct(r.packingEfficiency), value: (r) => r.packingEfficiency * 100, unit: '%', better: 'higher', chart: true },
  { label: 'rejected joins', text: (r) => `${int(r.rejected)} (${pct(r.rejectedShare, 2)})`, value: (r) => r.rejectedShare * 100, unit: '%', better: 'lower', chart: true },
  { label: 'served in own region', text: (r) => pct(r.ownRegionShare), value: (r) => r.ownRegionShare * 100, unit: '%', better: 'higher', chart: true },
  { label: 'client–edge distance, mean (km)', text: (r) => int(r.meanKm), value: (r) => r.meanKm, unit: 'km', better: 'lower', chart: true },
  { label: 'client–edge distance, p95 (km)', text: (r) => int(r.p95Km), value: (r) => r.p95Km, unit: 'km', better: 'lower', chart: true },
  { label: 'relays (edges pulling a stream), peak', text: (r) => int(r.relaysPeak), value: (r) => r.relaysPeak, unit: 'relays', better: 'lower', chart: true },
  { label: 'relays, mean over time', text: (r) => int(r.relaysMean), value: (r) => r.relaysMean, unit: 'relays', better: 'lower', chart: true },
  { label: 'busiest origin egress, peak', text: (r) => int(r.originEgressPeak), value: (r) => r.originEgressPeak, unit: 'streams', better: 'lower', chart: true },
  { label: 'origin egress, all origins, peak (relays)', text: (r) => `${r.originGbitsPeak.toFixed(1)} Gbit/s (${int(r.originRelaysPeak)})`, value: (r) => r.originGbitsPeak, unit: 'Gbit/s', better: 'lower', chart: true },
  { label: 'edges an origin feeds one stream to, peak', text: (r) => `${int(r.streamOriginRelaysPeak)} (${int(r.streamOriginGbitsPeak * 1000)} Mbit/s)`, value: (r) => r.streamOriginRelaysPeak, unit: 'edges', better: 'lower', chart: false },
  { label: 'edges one relay feeds; one edge over its streams, peak', text: (r) => `${int(r.childrenPeak)}; ${int(r.edgeChildrenPeak)}`, value: (r) => r.childrenPeak, unit: 'edges', better: 'lower', chart: false },
  { label: 'relay opens whose first round of upstreams is full', text: (r) => int(r.refusedRounds), value: (r) => r.refusedRounds, unit: 'opens', better: 'lower', chart: false },
  { label: 'relays by tier at peak (0: from the origin)', text: (r) => byTier(r.relaysByTier, int), value: (r) => r.relaysByTier.length, unit: 'tiers', better: 'lower', chart: false },
  { label: 'joins by tier of their relay', text: (r) => tierShares(r.viewersByTier), value: (r) => r.viewersByTier.length, unit: 'tiers', better: 'lower', chart: false },
  { label: 'joins by tier, p95', text: (r) => String(r.p95Tier), value: (r) => r.p95Tier, unit: 'tiers', better: 'lower', chart: false },
  {
    label: `path / great circle from the origin, joins ≥ 200 km from it (${STRETCH_BINS.map((b) => (b === Infinity ? '>3' : `≤${b === 1.0001 ? 1 : b}`)).join(' / ')}; max)`,
    text: (r) => `${tierSharesFlat(r.stretchByJoins)}; ${r.stretchMax.toFixed(2)}`,
    value: (r) => r.stretchMax,
    unit: '×',
    better: 'lower',
    chart: false,
  },
  { label: 'joins whose path passes 2 × great circle + 200 km', text: (r) => int(r.joinsUnbounded), value: (r) => r.joinsUnbounded, unit: 'joins', better: 'lower', chart: false },
  { label: 'edges by egress / capacity at peak (10 % bins, last > 100 %)', text: (r) => (r.egressByEdges.length > 0 ? r.egressByEdges.map(int).join(' / ') : 'not modelled'), value: (r) => r.egressByEdges.length, unit: 'bins', better: 'lower', chart: false },
  { label: 'busiest edge egress, peak (share of capacity; Gbit/s)', text: (r) => `${pct(r.egressPeakShare)}; ${r.egressPeakGbits.toFixed(2)}`, value: (r) => r.egressPeakShare * 100, unit: '%', better: 'lower', chart: false },
  { label: 'busiest origin egress, peak (Gbit/s)', text: (r) => r.busiestOriginGbits.toFixed(1), value: (r) => r.busiestOriginGbits, unit: 'Gbit/s', better: 'lower', chart: false },
  {
    label: 'relay opens that asked the full origin: a relay of its moved below them; none could',
    text: (r) => `${int(r.demotions)}; ${int(r.noDemotion)}`,
    value: (r) => r.demotions,
    unit: 'opens',
    better: 'lower',
    chart: false,
  },
  { label: 'relay opens no upstream would take', text: (r) => int(r.overflows), value: (r) => r.overflows, unit: 'opens', better: 'lower', chart: false },
  {
    label: 'parents killed at the peak: relays orphaned (viewers below); re-attached 1st round / later / none',
    text: (r) => (r.reattach ? `${int(r.reattach.orphans)} (${int(r.reattach.viewersBelow)}); ${int(r.reattach.firstRound)} / ${int(r.reattach.laterRound)} / ${int(r.reattach.none)}` : 'none killed'),
    value: (r) => r.reattach?.none ?? 0,
    unit: 'relays',
    better: 'lower',
    chart: false,
  },
  {
    label: 're-attached: to the origin; by tier; path / great circle (bins as above); past the bound; deepest below',
    text: (r) => (r.reattach ? `${int(r.reattach.toOrigin)}; ${r.reattach.byTier.map(int).join(' / ')}; ${r.reattach.stretch.map(int).join(' / ')}; ${int(r.reattach.unbounded)}; ${r.reattach.deepestAfter}` : '–'),
    value: (r) => r.reattach?.deepestAfter ?? 0,
    unit: 'tiers',
    better: 'lower',
    chart: false,
  },
  {
    label: 'HAProxy only: joins passed over by bounded load; second relays they opened; in flight, most on one edge / backend',
    text: (r) => (r.haproxy ? `${int(r.haproxy.passedOver)}; ${int(r.haproxy.secondRelays)}; ${r.haproxy.inFlightPeakEdge} / ${r.haproxy.inFlightPeakBackend}` : '–'),
    value: (r) => r.haproxy?.secondRelays ?? 0,
    unit: 'relays',
    better: 'lower',
    chart: false,
  },
  { label: 'edges in use, peak', text: (r) => int(r.edgesPeak), value: (r) => r.edgesPeak, unit: 'edges', better: 'lower', chart: true },
  { label: 'edges ever used', text: (r) => int(r.edgesTouched), value: (r) => r.edgesTouched, unit: 'edges', better: 'lower', chart: false },
  { label: 'edges wanted (planCapacity, at peak)', text: (r) => int(r.edgesWanted), value: (r) => r.edgesWanted, unit: 'edges', better: 'lower', chart: true },
  { label: 'peak concurrent viewers', text: (r) => int(r.peakViewers), value: (r) => r.peakViewers, unit: 'viewers', better: 'higher', chart: false },
  { label: 'wall time (s)', text: (r) => r.seconds.toFixed(1), value: (r) => r.seconds, unit: 's', better: 'lower', chart: false },
  { label: 'CPU time (s)', text: (r) => r.cpuSeconds.toFixed(1), value: (r) => r.cpuSeconds, unit: 's', better: 'lower', chart: true },
  { label: 'joins checked against rank(), differing', text: (r) => `${int(r.checked)}, ${int(r.mismatches)}`, value: (r) => r.mismatches, unit: 'joins', better: 'lower', chart: false },
];

function tierText({ originMaxRelays, edgeMaxChildren }: SimOptions['tiers']): string {
  if (originMaxRelays === undefined) return 'off (every edge pulls from its origin)';
  return `origin feeds ≤ ${originMaxRelays} edges per stream, an edge ≤ ${edgeMaxChildren ?? 'any number of'} children`;
}

export function describe(options: SimOptions, origins: number): string {
  const o = options;
  return (
    `${int(o.edges)} edges (capacity ${o.capacity}) and ${int(origins)} origins in ${o.regions} regions, ${int(o.streams)} streams (Zipf ${o.zipf}), ` +
    `${int(o.viewers)} viewers arriving over ${o.arrivalMinutes} min, watching ${o.watchMinutes} min on average; ` +
    `thresholds ${o.thresholds.streams}/${o.thresholds.viewers}, seed ${o.seed}, engine ${o.engine}; ` +
    `${int(o.streamKbps)} kbit/s per stream; egress capacity ${o.egressGbps > 0 ? `${o.egressGbps} Gbit/s per edge` : 'not modelled'}, ${o.originEgressGbps > 0 ? `${o.originEgressGbps} Gbit/s` : 'unlimited'} per origin; relay tiers: ${tierText(o.tiers)}`
  );
}

export function table(results: PolicyResult[]): string {
  return renderTable({
    title: 'Policies side by side',
    head: ['', ...results.map((r) => r.label)],
    rows: METRICS.map((m) => [m.label, ...results.map((r) => m.text(r))]),
    how: [],
  });
}

export function json(options: SimOptions, results: PolicyResult[], generated: Date): string {
  return JSON.stringify({ generated: generated.toISOString(), options, results }, null, 2) + '\n';
}

/** One bar chart per metric, a bar per policy, in the benchmark suite's picture format. */
export function chart(results: PolicyResult[], subtitle: string): string {
  const panels: BarsPanel[] = METRICS.filter((m) => m.chart).map((m) => ({
    kind: 'bars',
    title: `${m.label} ${m.better === 'higher' ? '↑' : '↓'}`,
    unit: m.unit,
    bars: results.map((r) => ({ label: r.label, value: m.value(r), series: r.label })),
  }));
  return renderSvg('Relaycast simulator: balancer policies side by side (↑ higher is better, ↓ lower)', subtitle, panels);
}
