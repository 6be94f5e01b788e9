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
 * Part 3: the edge's CPU per viewer of a simulcast stream, its layers chosen by estimate and by
 * loss, against a single-layer stream, in one run. Two Chromium pages publish: the three-layer
 * stream, and the same camera as its top layer alone. Libwebrtc viewers (kit/clients/wrtc.ts view,
 * receive-only: they receive and report but do not decode) join one kind at a time on the host:
 * one viewer, a window, then `viewers` more, a second window. The edge's process and worker CPU
 * (/proc) between the two windows, over the viewers added, is the CPU a viewer costs; the first
 * viewer holds the relay, so the relay's own cost and the edge's idle work fall out.
 *
 * The kinds (KINDS): simulcast viewers that take the edge's counter-offer (transport-cc: mediasoup
 * estimates their links, and their layers follow the transport's `bwe` trace events, no polling),
 * simulcast viewers with ordinary offers (loss-driven: the edge reads each one's stats once a
 * second), single-layer viewers with ordinary offers; and on request single-layer viewers that take
 * the counter-offer (mediasoup's estimation without layers to choose: what the estimate itself
 * costs a transport). edge/LayerSelector.ts says what each simulcast kind costs the edge.
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
/**
 * How long simulcast viewers may take to reach the top layer before a window (a wait, not a
 * figure): the windows compare viewers receiving the same layer. Loss-driven viewers start on it;
 * estimated ones start below it: this libwebrtc (@roamhq/wrtc 0.10, M106) reports every one of
 * mediasoup's probe packets as lost in its transport-cc feedback, so mediasoup's loss-based
 * controller holds the estimate at what was acknowledged at the first feedback (1,000 → 211
 * kbit/s; 230–400 seen under load) and each later probe keeps it there, 10–20 kbit/s a second at
 * most; the edge's tries of the layer above (EstimatePolicy.tryUp) lift it. Chromium reports the
 * probes received and starts on the top layer (issue 33).
 */
const TOP_LAYER_WAIT_MS = 60_000;

/** What is measured, one kind at a time: which stream the viewers watch, and whether they take the counter-offer. */
export const KINDS = {
  estimate: { stream: 'simulcast', counterOffer: true, label: 'simulcast, by estimate (counter-offer)' },
  loss: { stream: 'simulcast', counterOffer: false, label: 'simulcast, by loss (ordinary offer)' },
  single: { stream: 'single', counterOffer: false, label: 'single layer (ordinary offer)' },
  'single-estimate': { stream: 'single', counterOffer: true, label: 'single layer, estimated (counter-offer)' },
} as const;
export type Kind = keyof typeof KINDS;
/** The kinds measured unless told otherwise (bench/layers.ts --cpu-kinds). */
export const DEFAULT_KINDS: Kind[] = ['estimate', 'loss', 'single'];
/** What the others are set against. */
const REFERENCE: Kind = 'single';

interface Window {
  /** Cores the edge process and its worker used (1 = one core busy). */
  cores: number;
  /** Of them, the edge's Node process alone (the rest is its mediasoup worker). */
  nodeCores: number;
  viewers: number;
  /** Viewers that received packets during the window. */
  receiving: number;
  kbpsPerViewer: number;
  /** The edge's bwe trace events (relaycast_bwe_traces_total) per viewer per second in the window. */
  tracesPerViewerSecond: number;
  load: string;
}

export interface CpuRun {
  kind: Kind;
  round: number;
  base: Window;
  loaded: Window;
  /** CPU-seconds per viewer per second (cores per viewer added). */
  perViewer: number;
  /** The same, of the edge's Node process alone. */
  nodePerViewer: number;
  /** Simulcast viewers on the top layer at the end of the loaded window (relaycast_viewer_layers). */
  onTopLayer?: number;
  /** How long the viewers added took to be all on the top layer before the loaded window, ms (null: not within TOP_LAYER_WAIT_MS). */
  topLayerMs?: number | null;
  failedJoins: number;
}

export interface CpuOptions {
  viewers: number;
  seconds: number;
  rounds: number;
  kinds: Kind[];
}

export async function cpuPerViewer(rig: LayersRig, options: CpuOptions, progress: Progress): Promise<{ table: Table; runs: CpuRun[]; ratios: Partial<Record<Kind, number>> }> {
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
      // Each round starts with the next kind, so that none always meets the machine in the same state.
      const shift = (round - 1) % options.kinds.length;
      const order = [...options.kinds.slice(shift), ...options.kinds.slice(0, shift)];
      for (const kind of order) {
        progress.note(`cpu: round ${round} of ${options.rounds}, ${kind}: 1 + ${options.viewers} viewers`);
        const run = await measure(rig, kind, round, options);
        runs.push(run);
        progress.log(
          `cpu: round ${round}, ${kind}: edge ${fmt(run.base.cores * 100)} % → ${fmt(run.loaded.cores * 100)} % of a core, ${fmt(run.perViewer * 100, 3)} % per viewer ` +
            `(Node ${fmt(run.nodePerViewer * 100, 3)} %), ${fmt(run.loaded.kbpsPerViewer, 0)} kbit/s each, ${fmt(run.loaded.tracesPerViewerSecond, 2)} bwe traces per viewer per s` +
            (run.topLayerMs === undefined ? '' : `, all on the top layer ${run.topLayerMs === null ? 'not within the wait' : `after ${fmt(run.topLayerMs / 1000)} s`}`),
        );
        progress.step();
      }
    }
  } finally {
    await stopPublishing(page, token).catch(() => undefined);
    await page.close().catch(() => undefined);
  }
  const ratios = Object.fromEntries(options.kinds.filter((k) => k !== REFERENCE).map((kind) => [kind, perViewer(runs, kind) / perViewer(runs, REFERENCE)]));
  return { table: cpuTable(runs, options, ratios), runs, ratios };
}

const perViewer = (runs: CpuRun[], kind: Kind) => median(runs.filter((r) => r.kind === kind).map((r) => r.perViewer));

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
  const { stream: streamKind, counterOffer } = KINDS[kind];
  const stream = streamKind === 'simulcast' ? SIMULCAST_STREAM : SINGLE_STREAM;
  const generator = startChild(WRTC_CLIENT, ['view', '--url', rig.whep(stream), '--receive-only', ...(counterOffer ? ['--counter-offer'] : [])]);
  try {
    await generator.next('ready', 30_000);
    const tracesBefore = await bweTraces(rig);
    const first = await generator.ask(`add 1 1`, 'added', 120_000);
    if (Number(first.playing) !== 1) throw new Error(`the first viewer of ${stream} receives nothing: ${JSON.stringify(first)}`);
    let topLayerMs: number | null | undefined;
    const settle = async (viewers: number) => {
      if (streamKind === 'simulcast') topLayerMs = await reachTopLayer(rig, viewers);
      await sleep(SETTLE_MS);
    };
    await settle(1);
    const base = await cpuWindow(rig, generator, options.seconds);
    const added = await generator.ask(`add ${options.viewers} ${JOIN_CONCURRENCY}`, 'added', 180_000);
    await settle(Number(added.total));
    const loaded = await cpuWindow(rig, generator, options.seconds);
    // Estimated simulcast viewers, and they alone, get the estimate's trace events: at least as
    // their estimates start (mediasoup sends one only when the estimate or its state changes, so
    // a window on a quiet machine may see none).
    const estimated = counterOffer && streamKind === 'simulcast';
    const traced = (await bweTraces(rig)) - tracesBefore;
    if (estimated !== traced > 0) throw new Error(`${kind}: ${traced} bwe trace events since the viewers joined: the edge ${estimated ? 'does not estimate' : 'estimates'} these viewers' links`);
    const onTopLayer = streamKind === 'simulcast' ? await metric(rig.edge.url, 'relaycast_viewer_layers', { layer: '2' }) : undefined;
    const more = loaded.viewers - base.viewers;
    const per = (cores: (w: Window) => number) => (more > 0 ? (cores(loaded) - cores(base)) / more : NaN);
    return { kind, round, base, loaded, perViewer: per((w) => w.cores), nodePerViewer: per((w) => w.nodeCores), onTopLayer, topLayerMs, failedJoins: Number(added.failed ?? 0) };
  } finally {
    await stopGenerator(generator);
    // The stream's relay goes RELAY_LINGER_MS after its last viewer: the next measurement starts without it.
    await waitFor('the relay to close', async () => (await metric(rig.edge.url, 'relaycast_relays', { direction: 'in' })) === 0, 15_000, 100).catch(() => undefined);
  }
}

/**
 * Waits (at most TOP_LAYER_WAIT_MS) until `viewers` simulcast viewers receive the top layer
 * (relaycast_viewer_layers); returns how long that took in ms (null: they did not within the wait).
 */
async function reachTopLayer(rig: LayersRig, viewers: number): Promise<number | null> {
  const started = performance.now();
  const top = async () => (await metric(rig.edge.url, 'relaycast_viewer_layers', { layer: '2' })) ?? 0;
  return waitFor(`${viewers} viewers on the top layer`, async () => (await top()) >= viewers, TOP_LAYER_WAIT_MS, 500).then(
    () => Math.round(performance.now() - started),
    () => null,
  );
}

async function stopGenerator(generator: Child): Promise<void> {
  await generator.ask('stop', 'stopped', 60_000).catch(() => undefined);
  await generator.stop();
}

interface Snapshot extends Line {
  at: number;
  viewers: Array<{ bytesReceived: number; packetsReceived: number }>;
}

/** The bwe trace events the edge has had so far (relaycast_bwe_traces_total). */
async function bweTraces(rig: LayersRig): Promise<number> {
  return (await metric(rig.edge.url, 'relaycast_bwe_traces_total')) ?? 0;
}

/** The edge's CPU (its process and its mediasoup worker) over `seconds`, and what the viewers received meanwhile. */
async function cpuWindow(rig: LayersRig, generator: Child, seconds: number): Promise<Window> {
  const edgePid = rig.edge.child.pid!;
  const cpu = new CpuWindow(() => processTree([edgePid]));
  const node = new CpuWindow(() => [edgePid], { children: false });
  const a = (await generator.ask('snapshot a', 'snapshot', 60_000)) as Snapshot;
  const tracesBefore = await bweTraces(rig);
  cpu.start();
  node.start();
  await sleep(seconds * 1000);
  const cores = cpu.read();
  const nodeCores = node.read();
  const traced = (await bweTraces(rig)) - tracesBefore;
  const b = (await generator.ask('snapshot b', 'snapshot', 60_000)) as Snapshot;
  let bytes = 0;
  let receiving = 0;
  b.viewers.forEach((v, i) => {
    const before = a.viewers[i] ?? { bytesReceived: 0, packetsReceived: 0 };
    bytes += v.bytesReceived - before.bytesReceived;
    if (v.packetsReceived > before.packetsReceived) receiving++;
  });
  const windowSeconds = Math.max(0.001, (b.at - a.at) / 1000);
  const viewers = Math.max(1, b.viewers.length);
  return {
    cores,
    nodeCores,
    viewers: b.viewers.length,
    receiving,
    kbpsPerViewer: (bytes * 8) / 1000 / windowSeconds / viewers,
    tracesPerViewerSecond: traced / seconds / viewers,
    load: loadavg(),
  };
}

function cpuTable(runs: CpuRun[], options: CpuOptions, ratios: Partial<Record<Kind, number>>): Table {
  const row = (kind: Kind) => {
    const mine = runs.filter((r) => r.kind === kind);
    const pct = (f: (r: CpuRun) => number, digits = 1) => spread(mine.map((r) => f(r) * 100), digits);
    return [
      KINDS[kind].label,
      String(options.viewers + 1),
      pct((r) => r.base.cores),
      pct((r) => r.loaded.cores),
      spread(mine.map((r) => r.perViewer), 4),
      pct((r) => r.perViewer, 3),
      pct((r) => r.nodePerViewer, 3),
      spread(mine.map((r) => r.loaded.kbpsPerViewer), 0),
      KINDS[kind].stream === 'simulcast' ? spread(mine.map((r) => r.onTopLayer ?? NaN), 0) : '',
      spread(mine.map((r) => r.loaded.receiving), 0),
      spread(mine.map((r) => r.loaded.tracesPerViewerSecond), 2),
    ];
  };
  const against = options.kinds.filter((k) => k !== REFERENCE);
  const perRound = (kind: Kind) =>
    [...new Set(runs.map((r) => r.round))].map((round) => {
      const of = (k: Kind) => runs.find((r) => r.round === round && r.kind === k)?.perViewer ?? NaN;
      return fmt(of(kind) / of(REFERENCE), 2);
    });
  // The same per kbit/s delivered: what is left when the streams' bitrates differ a little.
  const perKbit = (kind: Kind) => median(runs.filter((r) => r.kind === kind).map((r) => r.perViewer / r.loaded.kbpsPerViewer));
  const failed = runs.reduce((sum, r) => sum + r.failedJoins, 0);
  const loads = [...new Set(runs.flatMap((r) => [r.base.load, r.loaded.load]))];
  return {
    title:
      `Edge CPU per viewer by kind (${options.viewers} libwebrtc viewers added to one); against ${REFERENCE}: ` +
      against.map((k) => `${k} ${fmt(ratios[k] ?? NaN, 2)}×`).join(', '),
    head: [
      'viewers of',
      'viewers',
      'edge CPU, 1 viewer (%)',
      'edge CPU, all (%)',
      'CPU-s per viewer per s',
      '% of a core per viewer',
      'of which Node (%)',
      'kbit/s per viewer',
      'on the top layer',
      'receiving',
      'bwe traces per viewer per s',
    ],
    rows: options.kinds.map(row),
    how: [
      `medians of ${options.rounds} round(s) (range in brackets), kinds in rotating order; ${options.seconds} s windows, ${SETTLE_MS / 1000} s after the viewers joined (simulcast: after they all reached the top layer, within ${TOP_LAYER_WAIT_MS / 1000} s)`,
      'edge CPU: user + system time of the edge process and its mediasoup worker (/proc), in % of one core; per viewer: (all − 1 viewer) / viewers added; "of which Node": the edge process alone, the rest is its worker',
      'publishers: Chromium\'s fake camera at 960x540, as three VP8 layers (135/270/540 lines at ≤150/500/1,200 kbit/s) and as its top layer alone (one VP8 layer, no simulcast), both all the time',
      'viewers: receive-only libwebrtc (they receive and send receiver reports, never decode) in one process on this host; by estimate: they take the counter-offer (transport-cc feedback, the probe stream), and their layers follow the bwe trace; by loss: the edge reads each one\'s stats once a second',
      'bwe traces: relaycast_bwe_traces_total over the loaded window, per viewer per second',
      `ratio per round against ${REFERENCE}: ${against.map((k) => `${k} ${perRound(k).join(', ')}`).join('; ')}; per kbit/s delivered: ` +
        `${against.map((k) => `${k} ${fmt(perKbit(k) / perKbit(REFERENCE), 2)}×`).join(', ')}; load average at the windows: ${loads.slice(0, 8).join(' | ')}` +
        (failed ? `; ${failed} join(s) failed` : ''),
    ],
  };
}
