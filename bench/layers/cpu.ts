import type { Page } from 'playwright-core';
import { publishSimulcast, stopPublishing } from '../../kit/browser.ts';
import { CpuWindow, loadavg, processTree } from '../../kit/cpu.ts';
import { metric } from '../../kit/metrics.ts';
import { startChild, waitFor, type Child, type Line } from '../../kit/processes.ts';
import { fmt, median, sleep, spread } from '../../kit/stats.ts';
import { WRTC_CLIENT } from '../../kit/wrtc.ts';
import type { Progress } from '../lib/progress.ts';
import type { Table } from '../lib/report.ts';
import { SIMULCAST_STREAM, type LayersRig } from './rig.ts';

/**
 * Part 3: the edge's CPU per viewer of a simulcast stream against a single-layer one, in one run.
 * Two Chromium pages publish: the three-layer stream, and the same camera as its top layer alone.
 * Libwebrtc viewers (kit/clients/wrtc.ts view, receive-only: they receive and report but do not
 * decode) join one stream at a time on the host: one viewer, a window, then `viewers` more, a
 * second window. The edge's process and worker CPU (/proc) between the two windows, over the
 * viewers added, is the CPU a viewer costs; the first viewer holds the relay, so the relay's own
 * cost and the edge's idle work fall out. A simulcast viewer's share includes the edge's
 * once-a-second getStats request for it (edge/LayerSelector.ts).
 */

export const SINGLE_STREAM = 'single';

/**
 * The single-layer stream: the publisher's top layer alone (kit/browser.ts publishSimulcast, 960x540
 * at ≤1,200 kbit/s). Chromium offers no simulcast for a lone encoding (checked below), so this is
 * an ordinary single-layer publish of the same picture, and both streams' viewers get about the
 * same bitrate: the difference is what simulcast costs, not what more bits cost.
 */
const SINGLE_LAYER = [{ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 }];
/** The single-layer publisher counts as ramped up at this share of the top layer's bitrate (a wait, bounded by RAMP_MS). */
const RAMP_SHARE = 0.8;
const RAMP_MS = 30_000;
/** After viewers join, before a window: their first key frames, layer choices and retransmissions pass. */
const SETTLE_MS = 5000;
/** WHEP joins at a time, as bench/sections/fanout.ts adds its viewers. */
const JOIN_CONCURRENCY = 8;

type Kind = 'simulcast' | 'single';

interface Window {
  /** Cores the edge process and its worker used (1 = one core busy). */
  cores: number;
  viewers: number;
  /** Viewers that received packets during the window. */
  receiving: number;
  kbpsPerViewer: number;
  load: string;
}

export interface CpuRun {
  kind: Kind;
  round: number;
  base: Window;
  loaded: Window;
  /** CPU-seconds per viewer per second (cores per viewer added). */
  perViewer: number;
  /** Simulcast viewers on the top layer at the end of the loaded window (relaycast_viewer_layers). */
  onTopLayer?: number;
  failedJoins: number;
}

export async function cpuPerViewer(rig: LayersRig, options: { viewers: number; seconds: number; rounds: number }, progress: Progress): Promise<{ table: Table; runs: CpuRun[]; ratio: number }> {
  progress.note('cpu: Chromium publishing the single-layer stream');
  const page = await rig.publisherBrowser.page(rig.origin.url);
  const token = await rig.publishToken(SINGLE_STREAM);
  const runs: CpuRun[] = [];
  try {
    const published = await publishSimulcast(page, `${rig.origin.url}/whip/${SINGLE_STREAM}`, token, { layers: SINGLE_LAYER });
    if (published.status !== 201) throw new Error(`WHIP publish of ${SINGLE_STREAM} answered ${published.status}: ${published.body.slice(0, 300)}`);
    if (/^a=simulcast/m.test(published.offer)) throw new Error('Chromium offered simulcast for one encoding: the single-layer stream would not be one');
    const { single, top } = await rampUp(page, rig.simulcastPublisher);
    if (single < top * RAMP_SHARE) progress.log(`cpu: the single-layer publisher sends ${Math.round(single)} kbit/s after ${RAMP_MS / 1000} s, the top layer ${Math.round(top)}`);

    for (let round = 1; round <= options.rounds; round++) {
      // Alternate which stream goes first, so that neither always meets the machine in the same state.
      const order: Kind[] = round % 2 === 1 ? ['simulcast', 'single'] : ['single', 'simulcast'];
      for (const kind of order) {
        progress.note(`cpu: round ${round} of ${options.rounds}, ${kind}: 1 + ${options.viewers} viewers`);
        const run = await measure(rig, kind, round, options);
        runs.push(run);
        progress.log(`cpu: round ${round}, ${kind}: edge ${fmt(run.base.cores * 100)} % → ${fmt(run.loaded.cores * 100)} % of a core, ${fmt(run.perViewer * 100, 2)} % per viewer, ${fmt(run.loaded.kbpsPerViewer, 0)} kbit/s each`);
        progress.step();
      }
    }
  } finally {
    await stopPublishing(page, token).catch(() => undefined);
    await page.close().catch(() => undefined);
  }
  const perViewer = (kind: Kind) => median(runs.filter((r) => r.kind === kind).map((r) => r.perViewer));
  const ratio = perViewer('simulcast') / perViewer('single');
  return { table: cpuTable(runs, options, ratio), runs, ratio };
}

/** Video bytes the page's publisher has sent so far: of the layer `rid`, or of all its video. */
async function videoBytesSent(page: Page, rid?: string): Promise<number> {
  return page.evaluate(async (rid) => {
    let bytes = 0;
    (await ((window as any).publisher as RTCPeerConnection).getStats()).forEach((s: any) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && (rid === undefined || s.rid === rid)) bytes += s.bytesSent ?? 0;
    });
    return bytes;
  }, rid);
}

/**
 * Waits (at most RAMP_MS) until the single-layer page sends RAMP_SHARE of what the simulcast page's
 * top layer sends: Chromium starts low and ramps up with its bandwidth estimate. Their kbit/s over
 * the last second.
 */
async function rampUp(single: Page, simulcast: Page): Promise<{ single: number; top: number }> {
  const deadline = Date.now() + RAMP_MS;
  for (;;) {
    const a = [await videoBytesSent(single), await videoBytesSent(simulcast, 'f')];
    const t = performance.now();
    await sleep(1000);
    const ms = performance.now() - t;
    const kbps = { single: ((await videoBytesSent(single)) - a[0]!) * 8 / ms, top: ((await videoBytesSent(simulcast, 'f')) - a[1]!) * 8 / ms };
    if (kbps.single >= kbps.top * RAMP_SHARE || Date.now() > deadline) return kbps;
  }
}

async function measure(rig: LayersRig, kind: Kind, round: number, options: { viewers: number; seconds: number }): Promise<CpuRun> {
  const stream = kind === 'simulcast' ? SIMULCAST_STREAM : SINGLE_STREAM;
  const generator = startChild(WRTC_CLIENT, ['view', '--url', rig.whep(stream), '--receive-only']);
  try {
    await generator.next('ready', 30_000);
    const first = await generator.ask(`add 1 1`, 'added', 120_000);
    if (Number(first.playing) !== 1) throw new Error(`the first viewer of ${stream} receives nothing: ${JSON.stringify(first)}`);
    await sleep(SETTLE_MS);
    const base = await cpuWindow(rig, generator, options.seconds);
    const added = await generator.ask(`add ${options.viewers} ${JOIN_CONCURRENCY}`, 'added', 180_000);
    await sleep(SETTLE_MS);
    const loaded = await cpuWindow(rig, generator, options.seconds);
    const onTopLayer = kind === 'simulcast' ? await metric(rig.edge.url, 'relaycast_viewer_layers', { layer: '2' }) : undefined;
    const more = loaded.viewers - base.viewers;
    return { kind, round, base, loaded, perViewer: more > 0 ? (loaded.cores - base.cores) / more : NaN, onTopLayer, failedJoins: Number(added.failed ?? 0) };
  } finally {
    await stopGenerator(generator);
    // The stream's relay goes RELAY_LINGER_MS after its last viewer: the next measurement starts without it.
    await waitFor('the relay to close', async () => (await metric(rig.edge.url, 'relaycast_relays', { direction: 'in' })) === 0, 15_000, 100).catch(() => undefined);
  }
}

async function stopGenerator(generator: Child): Promise<void> {
  await generator.ask('stop', 'stopped', 60_000).catch(() => undefined);
  await generator.stop();
}

interface Snapshot extends Line {
  at: number;
  viewers: Array<{ bytesReceived: number; packetsReceived: number }>;
}

/** The edge's CPU (its process and its mediasoup worker) over `seconds`, and what the viewers received meanwhile. */
async function cpuWindow(rig: LayersRig, generator: Child, seconds: number): Promise<Window> {
  const edgePid = rig.edge.child.pid!;
  const cpu = new CpuWindow(() => processTree([edgePid]));
  const a = (await generator.ask('snapshot a', 'snapshot', 60_000)) as Snapshot;
  cpu.start();
  await sleep(seconds * 1000);
  const cores = cpu.read();
  const b = (await generator.ask('snapshot b', 'snapshot', 60_000)) as Snapshot;
  let bytes = 0;
  let receiving = 0;
  b.viewers.forEach((v, i) => {
    const before = a.viewers[i] ?? { bytesReceived: 0, packetsReceived: 0 };
    bytes += v.bytesReceived - before.bytesReceived;
    if (v.packetsReceived > before.packetsReceived) receiving++;
  });
  const windowSeconds = Math.max(0.001, (b.at - a.at) / 1000);
  return { cores, viewers: b.viewers.length, receiving, kbpsPerViewer: (bytes * 8) / 1000 / windowSeconds / Math.max(1, b.viewers.length), load: loadavg() };
}

function cpuTable(runs: CpuRun[], options: { viewers: number; seconds: number; rounds: number }, ratio: number): Table {
  const row = (kind: Kind) => {
    const mine = runs.filter((r) => r.kind === kind);
    const pct = (f: (r: CpuRun) => number, digits = 1) => spread(mine.map((r) => f(r) * 100), digits);
    return [
      kind === 'simulcast' ? 'simulcast (3 layers)' : 'single layer',
      String(options.viewers + 1),
      pct((r) => r.base.cores),
      pct((r) => r.loaded.cores),
      spread(mine.map((r) => r.perViewer), 4),
      pct((r) => r.perViewer, 2),
      spread(mine.map((r) => r.loaded.kbpsPerViewer), 0),
      kind === 'simulcast' ? spread(mine.map((r) => r.onTopLayer ?? NaN), 0) : '',
      spread(mine.map((r) => r.loaded.receiving), 0),
    ];
  };
  const ratios = [...new Set(runs.map((r) => r.round))].map((round) => {
    const of = (kind: Kind) => runs.find((r) => r.round === round && r.kind === kind)?.perViewer ?? NaN;
    return fmt(of('simulcast') / of('single'), 2);
  });
  // The same per kbit/s delivered: what is left when the two streams' bitrates differ a little.
  const perKbit = (kind: Kind) => median(runs.filter((r) => r.kind === kind).map((r) => r.perViewer / r.loaded.kbpsPerViewer));
  const failed = runs.reduce((sum, r) => sum + r.failedJoins, 0);
  return {
    title: `Edge CPU per viewer, simulcast vs single layer (${options.viewers} libwebrtc viewers added to one; ratio simulcast / single ${fmt(ratio, 2)}×)`,
    head: ['stream', 'viewers', 'edge CPU, 1 viewer (%)', 'edge CPU, all (%)', 'CPU-s per viewer per s', '% of a core per viewer', 'kbit/s per viewer', 'on the top layer', 'receiving'],
    rows: [row('simulcast'), row('single')],
    how: [
      `medians of ${options.rounds} round(s) (range in brackets), streams in alternating order; ${options.seconds} s windows, ${SETTLE_MS / 1000} s after the viewers joined`,
      'edge CPU: user + system time of the edge process and its mediasoup worker (/proc), in % of one core; per viewer: (all − 1 viewer) / viewers added',
      'publishers: Chromium\'s fake camera at 960x540, as three VP8 layers (135/270/540 lines at ≤150/500/1,200 kbit/s) and as its top layer alone (one VP8 layer, no simulcast), both all the time',
      'viewers: receive-only libwebrtc (they receive and send receiver reports, never decode) in one process on this host; simulcast viewers include the edge\'s getStats request for each once a second',
      `ratio per round: ${ratios.join(', ')}; per kbit/s delivered: ${fmt(perKbit('simulcast') / perKbit('single'), 2)}×; load average at the windows: ${[...new Set(runs.flatMap((r) => [r.base.load, r.loaded.load]))].slice(0, 6).join(' | ')}` +
        (failed ? `; ${failed} join(s) failed` : ''),
    ],
  };
}
