/** What a section returns, and how it is printed. */

export type SectionId = 'fanout' | 'ttff' | 'latency' | 'tiers' | 'balancer' | 'haproxy' | 'postgres';
export const SECTION_IDS: SectionId[] = ['fanout', 'ttff', 'latency', 'tiers', 'balancer', 'haproxy', 'postgres'];

export interface Table {
  title: string;
  head: string[];
  rows: string[][];
  /** How the figures were measured: one line each, printed under the table. */
  how: string[];
}

export interface BarsPanel {
  kind: 'bars';
  title: string;
  unit: string;
  bars: Array<{ label: string; value: number; series?: string }>;
}

export interface LinesPanel {
  kind: 'lines';
  title: string;
  xLabel: string;
  yLabel: string;
  series: Array<{ name: string; points: Array<{ x: number; y: number }> }>;
}

export type Panel = BarsPanel | LinesPanel;

export interface SectionResult {
  id: SectionId;
  title: string;
  tables: Table[];
  /** Everything measured, for the JSON file: per-run values and the medians. */
  data: Record<string, unknown>;
  panels: Panel[];
  /** The section's main figures, for the summary at the end: one line each. */
  headline: Array<{ figure: string; value: string }>;
  /** /proc/loadavg while the section ran (1, 5, 15 min), sampled at each measurement. */
  load: string[];
}

export function renderTable(table: Table): string {
  const widths = table.head.map((h, i) => Math.max(h.length, ...table.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [table.title, `  ${line(table.head)}`, `  ${widths.map((w) => '─'.repeat(w)).join('  ')}`];
  for (const row of table.rows) out.push(`  ${line(row)}`);
  for (const how of table.how) out.push(`  · ${how}`);
  return out.join('\n');
}
