/**
 * Admission webhook benchmark (issue 32; reports, does not pass or fail): what asking the
 * operator's endpoint adds to a join. Three `relaycast all` nodes on this machine (embedded
 * Postgres each), one configuration each, side by side in one run:
 *
 *   none        no --admission-url;
 *   uncached    --admission-url to kit/webhookReceiver.ts (answering 200 {"allow": true}, its
 *               signature checked) with --admission-cache-ms 0: every join is one call;
 *   cached      the same with the default cache (10 s): after the first join, no call.
 *
 * Each node has a stream published (the golden Chromium WHIP offer: no media needs to flow for
 * signalling). A join = a WHEP POST of the golden Chrome offer to that stream, timed client-side
 * from the request to the 201; the session is then DELETEd (outside the timing), so no node
 * accumulates viewers. The configurations take turns, one join each per round, so that the
 * machine's load falls on all three alike. Everything on 127.0.0.1; the receiver is on the same
 * machine, so the added latency is the call's own cost (signing, HTTP, the receiver's check), not
 * a network's.
 *
 *   npm run bench:admission [-- --joins 300 --warmup 10]
 *   npm run bench:admission -- --quick     a few joins (the smoke test in test/bench.test.ts)
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { signStreamToken } from '../core/tokens.ts';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import { loadavg } from '../kit/cpu.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { fmt, median, percentile } from '../kit/stats.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../kit/webhookReceiver.ts';
import { defaultOut, integerOption, parseBenchArgs, runCommand } from './lib/options.ts';
import { renderTable } from './lib/report.ts';

const SECRET = 'bench-cluster-secret-0123456789';
const STREAM = 'bench';
const WHIP_OFFER = readFileSync(new URL('../test/fixtures/sdp/chromium-whip-offer.sdp', import.meta.url), 'utf8');
const WHEP_OFFER = readFileSync(new URL('../test/fixtures/sdp/chrome-whep-offer.sdp', import.meta.url), 'utf8');

const CONFIGS = ['none', 'uncached', 'cached'] as const;
type ConfigName = (typeof CONFIGS)[number];

const USAGE = `npm run bench:admission [-- options]

  --joins N     timed joins per configuration (default 300)
  --warmup N    joins per configuration before timing (default 10)
  --quick       10 joins, 2 warm-up (the smoke test)
  --out FILE    the JSON (default bench/figures/admission-<date>.json; --quick: bench/results/)
`;

interface Options {
  joins: number;
  warmup: number;
  out: string;
}

function parse(argv: string[]): Options | undefined {
  const args = parseBenchArgs(argv, ['joins', 'warmup']);
  if (!args) return undefined;
  return {
    joins: integerOption('joins', args.values.joins, args.quick ? 10 : 300),
    warmup: integerOption('warmup', args.values.warmup, args.quick ? 2 : 10, 0),
    out: args.out ?? defaultOut('admission', args.quick),
  };
}

/** One WHEP join: ms from the request to the 201 (the session is deleted afterwards, untimed). */
async function join(node: RelaycastProcess): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${node.url}/whep/${STREAM}`, { method: 'POST', body: WHEP_OFFER, headers: { 'content-type': 'application/sdp' } });
  const ms = performance.now() - started;
  const text = await res.text();
  if (res.status !== 201) throw new Error(`WHEP join answered ${res.status}: ${text}`);
  await fetch(res.headers.get('location')!, { method: 'DELETE' }).then((r) => r.arrayBuffer());
  return ms;
}

async function main(options: Options): Promise<number> {
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, kernel: release(), node: process.version };
  const loadAtStart = loadavg();
  process.stderr.write(`relaycast admission benchmark; load average at start ${loadAtStart}\n`);
  const webhookSecret = newWebhookSecret();
  let receiver: WebhookReceiver | undefined;
  const nodes = new Map<ConfigName, RelaycastProcess>();
  try {
    receiver = await startWebhookReceiver(webhookSecret, { quiet: true });
    await receiver.rule({ path: '/admit', body: { allow: true } });
    const admission = (cacheMs: string) => ['--admission-url', `${receiver!.url}/admit`, '--admission-secret', webhookSecret, '--admission-cache-ms', cacheMs];
    const args: Record<ConfigName, string[]> = { none: [], uncached: admission('0'), cached: admission('10000') };
    await Promise.all(
      CONFIGS.map((name) =>
        startRelaycast({ roles: ['all'], env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: ['--rtc-listen-ip', '127.0.0.1', '--post-rate-limit', '0', ...args[name]] }).then((node) => nodes.set(name, node)),
      ),
    );
    process.stderr.write(`${nodes.size} nodes ready\n`);
    const token = await signStreamToken(SECRET, { stream: STREAM, action: 'publish' });
    for (const node of nodes.values()) {
      const res = await fetch(`${node.url}/whip/${STREAM}`, { method: 'POST', body: WHIP_OFFER, headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` } });
      if (res.status !== 201) throw new Error(`WHIP publish answered ${res.status}: ${await res.text()}`);
    }
    const ms: Record<ConfigName, number[]> = { none: [], uncached: [], cached: [] };
    for (let round = 0; round < options.warmup + options.joins; round++) {
      for (const name of CONFIGS) {
        const took = await join(nodes.get(name)!);
        if (round >= options.warmup) ms[name].push(took);
      }
      if (round % 50 === 0) process.stderr.write(`bench round ${round + 1} of ${options.warmup + options.joins}\n`);
    }
    const calls = (await receiver.calls({ path: '/admit' })).filter((c) => c.body.action === 'play');
    const unverified = calls.filter((c) => !c.verified).length;
    const loadAtEnd = loadavg();

    const base = median(ms.none);
    const summary = CONFIGS.map((name) => ({ config: name, joins: ms[name].length, p50: median(ms[name]), p99: percentile(ms[name], 99), addedP50: median(ms[name]) - base }));
    process.stdout.write(
      `${renderTable({
        title: 'Admission webhook: WHEP join latency (ms, client-side, POST to 201)',
        head: ['configuration', 'joins', 'p50', 'p99', 'added p50'],
        rows: summary.map((s) => [s.config, String(s.joins), fmt(s.p50, 2), fmt(s.p99, 2), s.config === 'none' ? '' : fmt(s.addedP50, 2)]),
        how: [
          'none: no --admission-url; uncached: every join calls the receiver (--admission-cache-ms 0); cached: the decision reused (10 s)',
          'the receiver (kit/webhookReceiver.ts) on this machine answers 200 {"allow": true} and checks each signature',
          `configurations take turns, one join each per round; ${options.warmup} warm-up joins each not counted; sessions DELETEd after each join`,
          `receiver calls for plays: ${calls.length} (${unverified} unverified)`,
          `machine: ${machine.cores} × ${machine.cpu}; load average at start ${loadAtStart}, at end ${loadAtEnd}`,
        ],
      })}\n`,
    );
    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify({ date: new Date().toISOString(), machine, load: { start: loadAtStart, end: loadAtEnd }, options, summary, calls: calls.length, unverified, ms }, null, 2)}\n`);
    process.stderr.write(`wrote ${options.out}\n`);
    return 0;
  } finally {
    await Promise.all([...nodes.values()].map((node) => node.stop()));
    await receiver?.stop();
  }
}

await runCommand(parse, USAGE, main);
