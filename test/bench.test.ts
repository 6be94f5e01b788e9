import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_URL } from '../kit/postgres.ts';

/**
 * Smoke test of the benchmark suite: `npm run bench -- --quick` (every section at a tiny size, one
 * run) prints each section's table and a summary and writes its JSON and SVG. It asserts that the
 * suite works, never what it measured: no timing assertions.
 */

const SUITE = fileURLToPath(new URL('../bench/index.ts', import.meta.url));

describe('benchmark suite (bench/, --quick)', function () {
  this.timeout(240_000);
  let out: string;
  let stdout = '';
  let stderr = '';
  let code: number | null;

  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'relaycast-bench-smoke-'));
    const child = spawn(process.execPath, ['--import', 'tsx', SUITE, '--quick', '--out', out], {
      env: { ...process.env, DATABASE_URL: SERVER_URL },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 220_000);
    [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
  });

  after(() => rmSync(out, { recursive: true, force: true }));

  it('runs every section to the end', () => {
    assert.equal(code, 0, `bench exited with ${code}\n--- stdout ---\n${stdout.slice(-4000)}\n--- stderr ---\n${stderr.slice(-4000)}`);
  });

  it('prints a table per section and the summary', () => {
    for (const title of [
      'Edge fan-out: one 600 kbit/s',
      'Edge fan-out summary',
      'Time to first frame',
      'Latency publisher → viewer',
      'Route decisions per second',
      'HAProxy for 50 edges',
      'Postgres',
      'Summary',
    ]) {
      assert.ok(stdout.includes(title), `no "${title}" in the output:\n${stdout.slice(-3000)}`);
    }
    // Each figure comes with how it was measured.
    assert.ok((stdout.match(/^ {2}· /gm) ?? []).length >= 10);
    // Progress went to stderr, as plain lines when not on a terminal.
    assert.match(stderr, /bench \[ *\d+% /);
  });

  it('writes the results as JSON and as an SVG picture', () => {
    const files = readdirSync(out);
    const json = files.find((f) => /^bench-.*\.json$/.test(f));
    const svg = files.find((f) => /^bench-.*\.svg$/.test(f));
    assert.ok(json && svg, `files written: ${files.join(', ')}`);
    const report = JSON.parse(readFileSync(join(out, json), 'utf8')) as {
      machine: { cores: number };
      sections: Record<string, { headline: Array<{ figure: string; value: string }>; data: unknown }>;
      errors: Record<string, string>;
    };
    assert.deepEqual(report.errors, {});
    assert.deepEqual(Object.keys(report.sections).sort(), ['balancer', 'fanout', 'latency', 'postgres', 'ttff']);
    for (const [id, section] of Object.entries(report.sections)) {
      assert.ok(section.headline.length > 0, `${id} has no headline figures`);
      assert.ok(section.data, `${id} has no data`);
    }
    assert.ok(report.machine.cores > 0);
    const picture = readFileSync(join(out, svg), 'utf8');
    assert.match(picture, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.ok((picture.match(/<g transform=/g) ?? []).length >= 6, 'a chart panel per figure group');
    assert.ok(picture.trimEnd().endsWith('</svg>'));
  });
});
