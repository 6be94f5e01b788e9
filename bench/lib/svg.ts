import type { BarsPanel, LinesPanel, Panel } from './report.ts';

/** One SVG picture of the suite's results: a grid of small bar and line charts, hand-written. */

const PANEL_W = 460;
const PANEL_H = 300;
const COLUMNS = 2;
const COLOURS = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5', '#d53f8c', '#718096'];
/** The same colour for a system in every panel. */
const NAMED: Record<string, string> = { relaycast: COLOURS[0]!, baseline: COLOURS[1]!, added: COLOURS[2]! };
const colourOf = (series: string, index: number) => NAMED[series.split(' ')[0]!.toLowerCase()] ?? COLOURS[index % COLOURS.length]!;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function label(v: number): string {
  if (v >= 10_000) return `${Math.round(v / 1000)}k`;
  if (v >= 100) return String(Math.round(v));
  if (v >= 10) return v.toFixed(1).replace(/\.0$/, '');
  return v.toFixed(2).replace(/0+$/, '').replace(/\.$/, '');
}

function axes(x0: number, y0: number, w: number, h: number, top: number): string[] {
  const out = [`<line x1="${x0}" y1="${y0}" x2="${x0 + w}" y2="${y0}" stroke="#333"/>`, `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 - h}" stroke="#333"/>`];
  for (let i = 1; i <= 4; i++) {
    const y = y0 - (h * i) / 4;
    out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + w}" y2="${y}" stroke="#e2e8f0"/>`);
    out.push(`<text x="${x0 - 4}" y="${y + 4}" text-anchor="end" font-size="10">${label((top * i) / 4)}</text>`);
  }
  out.push(`<text x="${x0 - 4}" y="${y0 + 4}" text-anchor="end" font-size="10">0</text>`);
  return out;
}

function bars(p: BarsPanel): string[] {
  const x0 = 56;
  const y0 = PANEL_H - 78;
  const w = PANEL_W - x0 - 16;
  const h = PANEL_H - 126;
  // Negative values (a difference can be) are drawn as empty bars, with their value above.
  const values = p.bars.map((b) => (Number.isFinite(b.value) ? Math.max(0, b.value) : 0));
  const top = niceMax(Math.max(...values, 0));
  const series = [...new Set(p.bars.map((b) => b.series ?? ''))];
  const out = axes(x0, y0, w, h, top);
  out.push(`<text x="14" y="${y0 - h / 2}" font-size="10" transform="rotate(-90 14 ${y0 - h / 2})" text-anchor="middle">${esc(p.unit)}</text>`);
  const slot = w / Math.max(1, p.bars.length);
  p.bars.forEach((b, i) => {
    const v = values[i]!;
    const bh = (v / top) * h;
    const x = x0 + i * slot + slot * 0.15;
    const colour = colourOf(b.series ?? '', series.indexOf(b.series ?? '') + 3);
    out.push(`<rect x="${x.toFixed(1)}" y="${(y0 - bh).toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${bh.toFixed(1)}" fill="${colour}"/>`);
    out.push(`<text x="${(x + slot * 0.35).toFixed(1)}" y="${(y0 - bh - 3).toFixed(1)}" font-size="10" text-anchor="middle">${Number.isFinite(b.value) ? label(b.value) : 'n/a'}</text>`);
    const lx = x + slot * 0.35;
    out.push(`<text x="${lx.toFixed(1)}" y="${y0 + 12}" font-size="10" text-anchor="end" transform="rotate(-30 ${lx.toFixed(1)} ${y0 + 12})">${esc(b.label)}</text>`);
  });
  return out;
}

function lines(p: LinesPanel): string[] {
  const x0 = 56;
  const y0 = PANEL_H - 50;
  const w = PANEL_W - x0 - 16;
  const h = PANEL_H - 110;
  const all = p.series.flatMap((s) => s.points).filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y));
  const xTop = niceMax(Math.max(...all.map((q) => q.x), 0));
  const top = niceMax(Math.max(...all.map((q) => q.y), 0));
  const out = axes(x0, y0, w, h, top);
  for (let i = 0; i <= 4; i++) out.push(`<text x="${x0 + (w * i) / 4}" y="${y0 + 14}" font-size="10" text-anchor="middle">${label((xTop * i) / 4)}</text>`);
  out.push(`<text x="${x0 + w / 2}" y="${y0 + 30}" font-size="11" text-anchor="middle">${esc(p.xLabel)}</text>`);
  out.push(`<text x="14" y="${y0 - h / 2}" font-size="10" transform="rotate(-90 14 ${y0 - h / 2})" text-anchor="middle">${esc(p.yLabel)}</text>`);
  p.series.forEach((s, i) => {
    const colour = colourOf(s.name, i);
    const pts = s.points.filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y)).map((q) => [x0 + (q.x / xTop) * w, y0 - (q.y / top) * h] as const);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${colour}"/>`);
    out.push(`<rect x="${x0 + 10}" y="${y0 - h + 4 + i * 14}" width="10" height="10" fill="${colour}"/>`);
    out.push(`<text x="${x0 + 24}" y="${y0 - h + 13 + i * 14}" font-size="11">${esc(s.name)}</text>`);
  });
  return out;
}

export function renderSvg(title: string, subtitle: string, panels: Panel[]): string {
  const rows = Math.max(1, Math.ceil(panels.length / COLUMNS));
  const width = PANEL_W * COLUMNS;
  const height = 50 + rows * PANEL_H;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="40" font-size="11" fill="#4a5568">${esc(subtitle)}</text>`,
  ];
  panels.forEach((p, i) => {
    const x = (i % COLUMNS) * PANEL_W;
    const y = 50 + Math.floor(i / COLUMNS) * PANEL_H;
    out.push(`<g transform="translate(${x},${y})">`);
    out.push(`<rect x="4" y="4" width="${PANEL_W - 8}" height="${PANEL_H - 8}" fill="none" stroke="#cbd5e0"/>`);
    out.push(`<text x="${PANEL_W / 2}" y="24" font-size="13" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    out.push(...(p.kind === 'bars' ? bars(p) : lines(p)));
    out.push('</g>');
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
