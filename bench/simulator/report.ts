import type { SimOptions } from './model.ts';
import type { PolicyResult } from './run.ts';

/** The policies side by side: a text table, a JSON document and one SVG chart. */

interface Metric {
  label: string;
  /** The figure as printed in the table. */
  text(r: PolicyResult): string;
  /** The figure the chart draws (bars are scaled to the largest policy's). */
  value(r: PolicyResult): number;
  /** Which way is better, for the chart's legend. */
  better: 'higher' | 'lower';
  chart: boolean;
}

const int = (n: number) => Math.round(n).toLocaleString('en');
const pct = (share: number, digits = 1) => `${(share * 100).toFixed(digits)} %`;

export const METRICS: Metric[] = [
  { label: 'packing efficiency (mean load of edges in use)', text: (r) => pct(r.packingEfficiency), value: (r) => r.packingEfficiency, better: 'higher', chart: true },
  { label: 'rejected joins', text: (r) => `${int(r.rejected)} (${pct(r.rejectedShare, 2)})`, value: (r) => r.rejectedShare, better: 'lower', chart: true },
  { label: 'served in own region', text: (r) => pct(r.ownRegionShare), value: (r) => r.ownRegionShare, better: 'higher', chart: true },
  { label: 'client–edge distance, mean (km)', text: (r) => int(r.meanKm), value: (r) => r.meanKm, better: 'lower', chart: true },
  { label: 'client–edge distance, p95 (km)', text: (r) => int(r.p95Km), value: (r) => r.p95Km, better: 'lower', chart: true },
  { label: 'relays = origin egress streams, peak', text: (r) => int(r.relaysPeak), value: (r) => r.relaysPeak, better: 'lower', chart: true },
  { label: 'relays, mean over time', text: (r) => int(r.relaysMean), value: (r) => r.relaysMean, better: 'lower', chart: true },
  { label: 'busiest origin egress, peak', text: (r) => int(r.originEgressPeak), value: (r) => r.originEgressPeak, better: 'lower', chart: true },
  { label: 'edges in use, peak', text: (r) => int(r.edgesPeak), value: (r) => r.edgesPeak, better: 'lower', chart: true },
  { label: 'edges ever used', text: (r) => int(r.edgesTouched), value: (r) => r.edgesTouched, better: 'lower', chart: false },
  { label: 'edges wanted (planCapacity, at peak)', text: (r) => int(r.edgesWanted), value: (r) => r.edgesWanted, better: 'lower', chart: true },
  { label: 'peak concurrent viewers', text: (r) => int(r.peakViewers), value: (r) => r.peakViewers, better: 'higher', chart: false },
  { label: 'wall time (s)', text: (r) => r.seconds.toFixed(1), value: (r) => r.seconds, better: 'lower', chart: false },
  { label: 'CPU time (s)', text: (r) => r.cpuSeconds.toFixed(1), value: (r) => r.cpuSeconds, better: 'lower', chart: true },
  { label: 'joins checked against rank(), differing', text: (r) => `${int(r.checked)}, ${int(r.mismatches)}`, value: (r) => r.mismatches, better: 'lower', chart: false },
];

export function describe(options: SimOptions, origins: number): string {
  const o = options;
  return (
    `${int(o.edges)} edges (capacity ${o.capacity}) and ${int(origins)} origins in ${o.regions} regions, ${int(o.streams)} streams (Zipf ${o.zipf}), ` +
    `${int(o.viewers)} viewers arriving over ${o.arrivalMinutes} min, watching ${o.watchMinutes} min on average; ` +
    `thresholds ${o.thresholds.streams}/${o.thresholds.viewers}, seed ${o.seed}, engine ${o.engine}`
  );
}

export function table(results: PolicyResult[]): string {
  const head = ['', ...results.map((r) => r.policy)];
  const rows = METRICS.map((m) => [m.label, ...results.map((r) => m.text(r))]);
  const widths = head.map((_, c) => Math.max(...[head, ...rows].map((row) => row[c]!.length)));
  const line = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(head), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function json(options: SimOptions, results: PolicyResult[], generated: Date): string {
  return JSON.stringify({ generated: generated.toISOString(), options, results }, null, 2) + '\n';
}

const COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948'];
const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Grouped bars: one group per metric, one bar per policy, each metric scaled to its largest value. */
export function chart(results: PolicyResult[], subtitle: string): string {
  const metrics = METRICS.filter((m) => m.chart);
  const bar = 18;
  const gap = 28;
  const group = results.length * bar + gap;
  const left = 30;
  const top = 92;
  const plot = 240;
  const width = left * 2 + metrics.length * group;
  const height = top + plot + 62;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">Relaycast simulator: balancer policies side by side</text>`,
    `<text x="${left}" y="42" font-size="11" fill="#444">${escape(subtitle)}</text>`,
    `<text x="${left}" y="58" font-size="11" fill="#444">Bars are scaled to the largest policy in each group; labels show the figures. ↑ higher is better, ↓ lower is better.</text>`,
  ];
  results.forEach((r, i) => {
    const x = left + i * 150;
    out.push(`<rect x="${x}" y="68" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`, `<text x="${x + 16}" y="78" font-size="12">${escape(r.policy)}</text>`);
  });
  const base = top + plot;
  out.push(`<line x1="${left}" y1="${base}" x2="${width - left}" y2="${base}" stroke="#888"/>`);
  metrics.forEach((m, g) => {
    const x0 = left + g * group + gap / 2;
    const values = results.map((r) => m.value(r));
    const max = Math.max(...values.filter(Number.isFinite), 0);
    values.forEach((value, i) => {
      const h = max > 0 && Number.isFinite(value) ? (value / max) * (plot - 40) : 0;
      const x = x0 + i * bar;
      out.push(`<rect x="${x + 1}" y="${(base - h).toFixed(1)}" width="${bar - 2}" height="${h.toFixed(1)}" fill="${COLOURS[i % COLOURS.length]}"><title>${escape(`${results[i]!.policy}: ${m.text(results[i]!)}`)}</title></rect>`);
      const label = m.text(results[i]!).replace(/ \(.*\)$/, '');
      out.push(`<text transform="translate(${x + bar / 2 + 3},${(base - h - 4).toFixed(1)}) rotate(-90)" font-size="9">${escape(label)}</text>`);
    });
    const words = `${m.better === 'higher' ? '↑' : '↓'} ${m.label}`.split(' ');
    const lines: string[] = [''];
    for (const word of words) {
      if ((lines[lines.length - 1]! + ' ' + word).trim().length > 20) lines.push(word);
      else lines[lines.length - 1] = (lines[lines.length - 1]! + ' ' + word).trim();
    }
    lines.slice(0, 4).forEach((text, k) => out.push(`<text x="${x0 + (results.length * bar) / 2}" y="${base + 14 + k * 12}" font-size="10" text-anchor="middle">${escape(text)}</text>`));
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
