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
  this.timeout(300_000);
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
    const timer = setTimeout(() => child.kill('SIGKILL'), 280_000);
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
      'Latency per tier',
      'Time to first frame on a cold edge',
      'Route decisions per second',
      'HAProxy for 50 edges',
      'HAProxy kept live: 50 edges',
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
    assert.deepEqual(Object.keys(report.sections).sort(), ['balancer', 'fanout', 'haproxy', 'latency', 'postgres', 'tiers', 'ttff']);
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

describe('start-up benchmark (bench/startup.ts, one start each)', function () {
  this.timeout(180_000);

  it('starts a balancer and an edge, reports their figures, and counts the edge\'s worker and no balancer worker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-startup-smoke-'));
    try {
      const out = join(dir, 'startup.json');
      const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../bench/startup.ts', import.meta.url)), '--runs', '1', '--only', 'balancer,edge', '--no-warmup', '--out', out], {
        env: { ...process.env, DATABASE_URL: SERVER_URL },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      assert.equal(code, 0, output.slice(-4000));
      assert.match(output, /Start-up per configuration/);
      const report = JSON.parse(readFileSync(out, 'utf8')) as { runs: Array<{ config: string; readyMs: number; atReady: { nodeRssKb: number; workers: number } }> };
      const run = (config: string) => report.runs.find((r) => r.config === config)!;
      assert.equal(run('balancer').atReady.workers, 0, 'a balancer has no mediasoup worker');
      assert.equal(run('edge').atReady.workers, 1, 'an edge has its one');
      for (const r of report.runs) assert.ok(r.readyMs > 0 && r.atReady.nodeRssKb > 0, `${r.config}: figures measured`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('simulcast layer benchmark (bench/layers.ts, shaped links only, 1 s each)', function () {
  this.timeout(120_000);

  it('plays the three-layer stream on every shaped link and prints the table (or says why it cannot shape)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-layers-smoke-'));
    try {
      const out = join(dir, 'layers.json');
      const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../bench/layers.ts', import.meta.url)), '--only', 'profiles', '--seconds', '1', '--settle', '0', '--out', out], {
        env: { ...process.env, DATABASE_URL: SERVER_URL },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const timer = setTimeout(() => child.kill('SIGINT'), 100_000);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      assert.equal(code, 0, output.slice(-4000));
      const report = JSON.parse(readFileSync(out, 'utf8')) as { skipped?: { reason: string }; profiles?: { results: Array<{ profile: string; seconds?: number }> } };
      if (report.skipped) {
        assert.match(output, /profiles: skipped: /);
        console.log(`      skipped: ${report.skipped.reason}`);
        return;
      }
      assert.match(output, /Simulcast layers on shaped links/);
      assert.deepEqual(report.profiles!.results.map((r) => r.profile), ['clean', '2 % loss', '1000 kbit/s', '500 kbit/s', '250 kbit/s']);
      assert.ok(report.profiles!.results[0]!.seconds! > 0, 'the clean link was measured');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Runs `bench/{script} --quick --out {out}` against the suite's Postgres (SIGINT after 220 s); asserts exit 0 and returns its output. */
async function runQuick(script: string, out: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(`../bench/${script}`, import.meta.url)), '--quick', '--out', out], {
    env: { ...process.env, DATABASE_URL: SERVER_URL },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const timer = setTimeout(() => child.kill('SIGINT'), 220_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  assert.equal(code, 0, output.slice(-4000));
  return output;
}

describe('LL-HLS benchmark (bench/hls.ts --quick)', function () {
  this.timeout(240_000);

  it('measures every figure once and writes them: latency per client, first frames, edge steps, packager CPU', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-hls-smoke-'));
    try {
      const out = join(dir, 'hls.json');
      const output = await runQuick('hls.ts', out);
      for (const title of ['LL-HLS glass-to-glass latency', 'LL-HLS time to first frame', 'An edge serving N viewers', 'Origin packager CPU per stream']) {
        assert.ok(output.includes(title), `no "${title}" in the output:\n${output.slice(-3000)}`);
      }
      const report = JSON.parse(readFileSync(out, 'utf8')) as {
        latency: Array<{ label: string; frames: number; unreadable: number; stalls: number }>;
        odd: string[];
        firstFrame: { packaged: number[]; notPackaged: number[] };
        edge: { steps: Array<{ kind: string; viewers: number }> };
        packagers: { rtmpCopyCores: number[]; whipVp8ToX264Cores: number[] };
        load: { start: string };
      };
      // That each figure was measured, not what it came to.
      assert.equal(report.latency.length, 3);
      for (const l of report.latency) {
        assert.ok(l.frames > 0, `${l.label}: no stamped frame read (${l.unreadable} unreadable, ${l.stalls} stalls); the bench found odd: ${report.odd.join(' | ')}\n${output.slice(-3000)}`);
      }
      assert.equal(report.firstFrame.packaged.length, 1);
      assert.equal(report.firstFrame.notPackaged.length, 1);
      assert.deepEqual(report.edge.steps.map((s) => s.kind), ['LL-HLS', 'WebRTC']);
      assert.equal(report.packagers.rtmpCopyCores.length, 1);
      assert.equal(report.packagers.whipVp8ToX264Cores.length, 1);
      assert.match(report.load.start, /^\d/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('recording benchmark (bench/recording.ts --quick)', function () {
  this.timeout(240_000);

  it('measures every figure once and writes them: CPU per stream, the index at scale, kill -9 loss, an export', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-recording-smoke-'));
    try {
      const out = join(dir, 'recording.json');
      const output = await runQuick('recording.ts', out);
      for (const title of ['Recording cost per stream on the origin', 'Media lost on kill -9 of the recording origin', 'Export of a 1-minute recording as one MP4', 'Recordings index over 1 day(s)']) {
        assert.ok(output.includes(title), `no "${title}" in the output:\n${output.slice(-3000)}`);
      }
      const report = JSON.parse(readFileSync(out, 'utf8')) as {
        cpu: { samples: Array<{ publish: string; setting: string; cores: number }> };
        kill: { runs: Array<{ lossMs: number; segments: number }> };
        export: { build: { segments: number }; runs: Array<{ bytes: number; totalMs: number }>; probe: { duration: number } };
        index: { counts: { archiveSegments: number }; timings: Array<{ what: string; ms: number[]; items: number }> };
        odd: string[];
        load: { start: string };
      };
      // That each figure was measured, not what it came to.
      const odd = `the bench found odd: ${report.odd.join(' | ')}`;
      assert.deepEqual(report.cpu.samples.map((s) => `${s.publish} ${s.setting}`).sort(), ['RTMP not recorded', 'RTMP recorded', 'WHIP not recorded', 'WHIP recorded'], odd);
      assert.ok(report.cpu.samples.every((s) => s.cores > 0), odd);
      assert.equal(report.kill.runs.length, 1, odd);
      assert.ok(report.kill.runs[0]!.segments > 0 && Number.isFinite(report.kill.runs[0]!.lossMs), odd);
      assert.ok(report.export.build.segments > 0, odd);
      assert.equal(report.export.runs.length, 1, odd);
      assert.ok(report.export.runs[0]!.bytes > 0 && report.export.probe.duration > 0, odd);
      assert.ok(report.index.counts.archiveSegments > 0);
      assert.equal(report.index.timings.length, 4);
      for (const t of report.index.timings) assert.ok(t.ms.length > 0 && t.items > 0, `${t.what}: not measured`);
      assert.match(report.load.start, /^\d/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('webhook benchmarks (bench/admission.ts, bench/webhooks.ts --quick)', function () {
  this.timeout(240_000);

  it('times joins with no admission, admission uncached and cached, and writes them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-admission-smoke-'));
    try {
      const out = join(dir, 'admission.json');
      const output = await runQuick('admission.ts', out);
      assert.ok(output.includes('Admission webhook: WHEP join latency'), output.slice(-3000));
      const report = JSON.parse(readFileSync(out, 'utf8')) as { summary: Array<{ config: string; joins: number; p50: number }>; calls: number; unverified: number };
      // That each figure was measured, not what it came to.
      assert.deepEqual(report.summary.map((s) => s.config), ['none', 'uncached', 'cached']);
      for (const s of report.summary) assert.ok(s.joins > 0 && s.p50 > 0, `${s.config}: not measured`);
      assert.ok(report.calls > 0);
      assert.equal(report.unverified, 0, 'every call was signed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('times the outbox: an event\'s write, its lag to the receiver, and backlogs drained', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-webhooks-smoke-'));
    try {
      const out = join(dir, 'webhooks.json');
      const output = await runQuick('webhooks.ts', out);
      for (const title of ['What an event adds to the change it reports', 'Event lag from the change to the receiver', 'Outbox throughput']) {
        assert.ok(output.includes(title), `no "${title}" in the output:\n${output.slice(-3000)}`);
      }
      const report = JSON.parse(readFileSync(out, 'utf8')) as { write: { withEvent: number[] }; lag: { ms: number[] }; drain: Array<{ perSecond: number }>; odd: string[] };
      // That each figure was measured, not what it came to.
      assert.ok(report.write.withEvent.length > 0 && report.lag.ms.length > 0, report.odd.join(' | '));
      assert.equal(report.drain.length, 4);
      assert.ok(report.drain.every((d) => d.perSecond > 0));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
