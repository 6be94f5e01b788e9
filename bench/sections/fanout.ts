import { CpuWindow, MachineCpu, dropsBetween, loadavg, processTree, udpDrops } from '../../kit/cpu.ts';
import { startChild, waitFor, type Child } from '../../kit/processes.ts';
import { fmt, linearFit, median, spread, sleep } from '../../kit/stats.ts';
import { WRTC_CLIENT } from '../../kit/wrtc.ts';
import { runsFor, type BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult, Table } from '../lib/report.ts';
import { MOUNTPOINT } from '../peers/JanusServer.ts';
import { MediaRig, STREAM } from './rig.ts';

/**
 * Edge fan-out: viewers of one ~600 kbit/s stream on the Relaycast edge (one mediasoup worker),
 * stepped up, and the same viewer load on the baseline (plain mediasoup) in the same run. At each
 * step: the server's CPU (its process and its worker, from /proc), the viewers' packet loss and
 * bitrate (their inbound-rtp stats), and the load generators' CPU. On request the same on the
 * baseline with another mediasoup version and on Janus (MediaRig's peers), taking turns with them.
 */

/** One server the viewers are stepped up on. */
interface System {
  /** Its name in the tables and the JSON. */
  name: string;
  /** What it runs. */
  software: string;
  /** The load generators' arguments (kit/clients/wrtc.ts view). */
  view: string[];
  /** The publisher's target whose bitrate reaches it (MediaRig.TARGET). */
  target: number;
  /** Its CPU: its own process, and its mediasoup worker (none apart for Janus). */
  cpu: () => { process: CpuWindow; worker: CpuWindow };
  /** Whose sockets' drops count (ingest included). */
  pids: () => number[];
  /** Resolves once its last viewer has gone. */
  idle: () => Promise<void>;
}

/** How many systems the fan-out steps viewers up on with these options (Janus counted if asked for). */
export function fanoutSystemCount(options: BenchOptions): number {
  return 2 + (options.mediasoupBaseline ? 1 : 0) + (options.janus ? 1 : 0);
}

async function systemsOf(rig: MediaRig): Promise<System[]> {
  const edgePid = rig.edge.child.pid!;
  const receiveOnly = (whep: string) => ['view', '--url', whep, '--receive-only'];
  const baselineOf = (name: string, baseline: MediaRig['baseline'], target: number): System => ({
    name,
    software: `plain mediasoup ${baseline.mediasoup}`,
    view: receiveOnly(`${baseline.url}/whep/${STREAM}`),
    target,
    // Its process and its fan-out worker, not the worker that ingests (the edge's CPU does not include the origin's either).
    cpu: () => ({ process: new CpuWindow([baseline.pid], { children: false }), worker: new CpuWindow([baseline.fanoutWorkerPid]) }),
    pids: () => processTree([baseline.pid]),
    idle: () => waitFor(`${name} viewers gone`, async () => ((await (await fetch(`${baseline.url}/stats`)).json()) as { viewers: number }).viewers === 0, 15_000, 100),
  });
  const systems: System[] = [
    {
      name: 'relaycast',
      // The edge runs the project's mediasoup, as the baseline does.
      software: `Relaycast edge, mediasoup ${rig.baseline.mediasoup}`,
      view: receiveOnly(rig.edgeWhep),
      target: MediaRig.TARGET.origin,
      // The edge process and its one worker (its child process).
      cpu: () => ({
        process: new CpuWindow([edgePid], { children: false }),
        worker: new CpuWindow(() => processTree([edgePid]).filter((pid) => pid !== edgePid)),
      }),
      pids: () => processTree([edgePid, rig.origin.child.pid!]),
      idle: () => rig.relayGone(),
    },
    baselineOf('baseline', rig.baseline, MediaRig.TARGET.baseline),
  ];
  const { otherBaseline, janus } = rig.peers;
  if (otherBaseline) systems.push(baselineOf(`baseline ${otherBaseline.mediasoup}`, otherBaseline, MediaRig.TARGET.otherBaseline));
  if (janus) {
    systems.push({
      name: 'janus',
      software: `Janus ${await janus.version()} streaming plugin, ${janus.eventLoops} event loops`,
      view: ['view', '--url', janus.url, '--janus', String(MOUNTPOINT)],
      // Its mountpoint is fed by the baseline's ingest router.
      target: MediaRig.TARGET.baseline,
      // One process (every thread), its plain-RTP ingest included.
      cpu: () => ({ process: new CpuWindow([janus.pid]), worker: new CpuWindow([]) }),
      pids: () => [janus.pid],
      idle: () => waitFor('janus viewers gone', async () => (await janus.viewers()) === 0, 15_000, 100),
    });
  }
  return systems;
}

interface Step {
  system: string;
  run: number;
  viewers: number;
  receiving: number;
  failed: number;
  lossPct: number;
  kbpsPerViewer: number;
  /** The publisher's video bitrate to this system's ingest during the window. */
  publisherKbps: number;
  /** Datagrams the kernel dropped at full receive buffers: at the server's sockets, at the viewers'. */
  serverDrops: number;
  viewerDrops: number;
  /** Loss under the limit, and the stream at its bitrate (publisher and viewers). */
  clean: boolean;
  serverCores: number;
  /** The server's CPU split: its Node process, and its mediasoup worker. */
  processCores: number;
  workerCores: number;
  generatorCores: number;
  machineCores: number;
  load: string;
}

interface Snapshot {
  at: number;
  viewers: Array<{ packetsReceived: number; packetsLost: number; bytesReceived: number }>;
}

const LOSS_LIMIT_PCT = 0.1;
/** A step counts only if the publisher kept at least this share of its bitrate cap (a starved machine makes it drop). */
const BITRATE_FLOOR = 0.8;
/** Past this loss the server (or the machine) is saturated: bigger steps are skipped. */
const STOP_LOSS_PCT = 2;

async function snapshots(generators: Child[], id: string): Promise<Snapshot[]> {
  return (await Promise.all(generators.map((g) => g.ask(`snapshot ${id}`, 'snapshot', 60_000)))) as unknown as Snapshot[];
}

function deltas(a: Snapshot[], b: Snapshot[]) {
  let received = 0;
  let lost = 0;
  let bytes = 0;
  let receiving = 0;
  let seconds = 0;
  a.forEach((sa, g) => {
    const sb = b[g]!;
    seconds = Math.max(seconds, (sb.at - sa.at) / 1000);
    sb.viewers.forEach((vb, i) => {
      const va = sa.viewers[i] ?? { packetsReceived: 0, packetsLost: 0, bytesReceived: 0 };
      const r = vb.packetsReceived - va.packetsReceived;
      received += r;
      lost += Math.max(0, vb.packetsLost - va.packetsLost);
      bytes += vb.bytesReceived - va.bytesReceived;
      if (r > 0) receiving++;
    });
  });
  return { received, lost, bytes, receiving, seconds };
}

export async function fanout(rig: MediaRig, options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = runsFor(options, 'media');
  const steps = options.viewers;
  const systems = await systemsOf(rig);
  const settleMs = options.quick ? 500 : 3000;
  const results: Step[] = [];
  const publishedKbps = await rig.publishedKbps(options.quick ? 1000 : 3000);

  for (let run = 0; run < runs; run++) {
    // The systems take turns, in the opposite order every other run, so that none always meets the
    // machine in the same state (nor always comes right after the same one).
    const order = run % 2 === 0 ? systems : [...systems].reverse();
    for (const system of order) {
      const generators: Child[] = Array.from({ length: options.generators }, () => startChild(WRTC_CLIENT, system.view));
      try {
        await Promise.all(generators.map((g) => g.next('ready', 30_000)));
        let current = 0;
        let stopped = false;
        for (const n of steps) {
          if (stopped) {
            progress.step();
            continue;
          }
          progress.note(`fanout run ${run + 1}/${runs}: ${system.name}, ${n} viewers`);
          const add = n - current;
          const per = generators.map((_, i) => Math.floor(add / generators.length) + (i < add % generators.length ? 1 : 0));
          const added = await Promise.all(generators.map((g, i) => (per[i]! > 0 ? g.ask(`add ${per[i]} 8`, 'added', 180_000) : Promise.resolve({ failed: 0 }))));
          current = n;
          const failed = added.reduce((s, a) => s + Number(a.failed ?? 0), 0);
          await sleep(settleMs);
          const before = await snapshots(generators, 'a');
          const published0 = await rig.publisherStats();
          const generatorPids = processTree(generators.map((g) => g.pid));
          const drops0 = { server: udpDrops(system.pids()), viewers: udpDrops(generatorPids) };
          const server = system.cpu();
          const gens = new CpuWindow(generators.map((g) => g.pid));
          const machine = new MachineCpu();
          server.process.start();
          server.worker.start();
          gens.start();
          machine.start();
          await sleep(options.seconds * 1000);
          const [processCores, workerCores] = [server.process.read(), server.worker.read()];
          const step = { serverCores: processCores + workerCores, processCores, workerCores, generatorCores: gens.read(), machineCores: machine.read(), load: loadavg() };
          const drops1 = { server: udpDrops(system.pids()), viewers: udpDrops(generatorPids) };
          const published1 = await rig.publisherStats();
          const after = await snapshots(generators, 'b');
          const d = deltas(before, after);
          const lossPct = d.received + d.lost > 0 ? (100 * d.lost) / (d.received + d.lost) : NaN;
          const a = published0[system.target]!;
          const b = published1[system.target]!;
          const publisherKbps = ((b.bytesSent - a.bytesSent) * 8) / Math.max(1, b.at - a.at);
          const kbpsPerViewer = (d.bytes * 8) / Math.max(d.seconds, 0.001) / 1000 / Math.max(n, 1);
          results.push({
            system: system.name,
            run,
            viewers: n,
            receiving: d.receiving,
            failed,
            lossPct,
            kbpsPerViewer,
            publisherKbps,
            serverDrops: dropsBetween(drops0.server, drops1.server),
            viewerDrops: dropsBetween(drops0.viewers, drops1.viewers),
            // --quick does not wait for the publisher to ramp up: its figures only show that the code runs.
            clean: lossPct < LOSS_LIMIT_PCT && (options.quick || publisherKbps >= options.kbps * BITRATE_FLOOR) && kbpsPerViewer >= publisherKbps * 0.95 && failed === 0,
            ...step,
          });
          progress.step();
          if (!(lossPct <= STOP_LOSS_PCT) || failed > n * 0.05) stopped = true;
        }
      } finally {
        await Promise.all(generators.map((g) => g.ask('stop', 'stopped', 60_000).catch(() => undefined)));
        await Promise.all(generators.map((g) => g.stop()));
      }
      await system.idle().catch((error) => progress.log(`fanout: ${(error as Error).message}`));
    }
  }

  // Medians per (system, viewers) over the runs.
  const rowsFor = (system: string) =>
    steps
      .map((n) => {
        const at = results.filter((r) => r.system === system && r.viewers === n);
        if (at.length === 0) return undefined;
        const m = (f: (s: Step) => number) => median(at.map(f));
        return {
          viewers: n,
          runs: at.length,
          receiving: m((s) => s.receiving),
          failed: m((s) => s.failed),
          lossPct: m((s) => s.lossPct),
          kbpsPerViewer: m((s) => s.kbpsPerViewer),
          publisherKbps: m((s) => s.publisherKbps),
          serverDrops: m((s) => s.serverDrops),
          viewerDrops: m((s) => s.viewerDrops),
          clean: at.filter((s) => s.clean).length,
          serverCores: m((s) => s.serverCores),
          processCores: m((s) => s.processCores),
          workerCores: m((s) => s.workerCores),
          generatorCores: m((s) => s.generatorCores),
          machineCores: m((s) => s.machineCores),
          loads: at.map((s) => s.load),
        };
      })
      .filter((r) => r !== undefined);

  // Per run: the largest step with loss under the limit (streams per core there), and the slope
  // of CPU against viewers over the clean steps (the marginal CPU of one viewer).
  const summary = (system: string) => {
    const perRun = Array.from({ length: runs }, (_, run) => {
      const clean = results.filter((r) => r.system === system && r.run === run && r.clean && r.viewers > 0);
      const top = clean.at(-1);
      const fit = linearFit(clean.map((r) => ({ x: r.viewers, y: r.serverCores })));
      const genFit = linearFit(clean.map((r) => ({ x: r.viewers, y: r.generatorCores })));
      const slope = (f: (r: Step) => number) => (clean.length >= 2 ? linearFit(clean.map((r) => ({ x: r.viewers, y: f(r) }))).slope : top ? f(top) / top.viewers : NaN);
      return {
        processPerViewer: slope((r) => r.processCores),
        workerPerViewer: slope((r) => r.workerCores),
        maxCleanViewers: top?.viewers ?? 0,
        streamsPerCore: top ? top.viewers / top.serverCores : NaN,
        cpuPerViewer: clean.length >= 2 ? fit.slope : top ? top.serverCores / top.viewers : NaN,
        fixedCores: clean.length >= 2 ? fit.intercept : NaN,
        generatorPerViewer: clean.length >= 2 ? genFit.slope : top ? top.generatorCores / top.viewers : NaN,
      };
    });
    return {
      perRun,
      maxCleanViewers: median(perRun.map((r) => r.maxCleanViewers)),
      streamsPerCore: median(perRun.map((r) => r.streamsPerCore).filter(Number.isFinite)),
      cpuPerViewer: median(perRun.map((r) => r.cpuPerViewer).filter(Number.isFinite)),
      fixedCores: median(perRun.map((r) => r.fixedCores).filter(Number.isFinite)),
      generatorPerViewer: median(perRun.map((r) => r.generatorPerViewer).filter(Number.isFinite)),
      processPerViewer: median(perRun.map((r) => r.processPerViewer).filter(Number.isFinite)),
      workerPerViewer: median(perRun.map((r) => r.workerPerViewer).filter(Number.isFinite)),
    };
  };
  const relaycast = summary('relaycast');
  const baseline = summary('baseline');
  const ratio = relaycast.cpuPerViewer / baseline.cpuPerViewer;

  // Every system against one reference, run by run (the runs are interleaved: run i of each met
  // the machine in about the same state): the baseline on the other mediasoup version if there is
  // one, else the project's baseline.
  const reference = systems.find((s) => s.name.startsWith('baseline ')) ?? systems.find((s) => s.name === 'baseline')!;
  const bySystem = systems.map((s) => {
    const sum = summary(s.name);
    const ref = summary(reference.name);
    const ratios = sum.perRun.map((r, i) => r.cpuPerViewer / ref.perRun[i]!.cpuPerViewer).filter(Number.isFinite);
    return { name: s.name, software: s.software, ...sum, top: rowsFor(s.name).at(-1), ratioToReference: { perRun: ratios, median: median(ratios) } };
  });
  const systemTable: Table = {
    title: `Fan-out CPU per viewer by system: ${runs} interleaved run${runs > 1 ? 's' : ''}, one publisher, the same viewers`,
    head: ['system', 'software', 'viewers', 'server cores at the top step', 'CPU per viewer, % of a core', `÷ ${reference.name}`],
    rows: bySystem.map((s) => [
      s.name,
      s.software,
      s.maxCleanViewers > 0 ? `${steps[0]}–${s.maxCleanViewers}` : 'no clean step',
      s.top ? `${fmt(s.top.serverCores, 2)} at ${s.top.viewers}` : 'n/a',
      spread(s.perRun.map((r) => r.cpuPerViewer * 100).filter(Number.isFinite), 3),
      s.name === reference.name ? '1' : spread(s.ratioToReference.perRun, 2),
    ]),
    how: [
      'CPU per viewer: the least-squares slope of server CPU against viewers over each run\'s clean steps; the median over runs (the range of the runs)',
      `÷ ${reference.name}: each run's slope over ${reference.name}'s in the same run, median (range): the runs are interleaved, so each pair met the machine in about the same state`,
      'server CPU: mediasoup systems, their process + their fan-out worker (not the ingest); janus, its one process (every thread, its plain-RTP ingest included)',
      'viewers: the steps fitted, from the first to the largest clean one (median over runs); cores: the median server CPU at the largest step',
    ],
  };

  const stepTable: Table = {
    title: `Edge fan-out: one ${options.kbps} kbit/s VP8 + Opus stream, 1 mediasoup worker, viewers stepped up (median of ${runs} run${runs > 1 ? 's' : ''} per row)`,
    head: ['system', 'viewers', 'receiving', 'loss %', 'publisher kbit/s', 'kbit/s/viewer', 'clean runs', 'server CPU', 'node + worker', 'CPU/viewer', 'generators CPU', 'machine busy', 'drops srv/gen', 'load (1 min)'],
    rows: systems.map((s) => s.name).flatMap((system) =>
      rowsFor(system).map((r) => [
        system,
        String(r.viewers),
        String(r.receiving),
        fmt(r.lossPct, 3),
        fmt(r.publisherKbps, 0),
        fmt(r.kbpsPerViewer, 0),
        `${r.clean}/${r.runs}`,
        `${fmt(r.serverCores * 100, 1)}%`,
        `${fmt(r.processCores * 100, 1)} + ${fmt(r.workerCores * 100, 1)}`,
        `${fmt((r.serverCores / r.viewers) * 100, 2)}%`,
        `${fmt(r.generatorCores * 100, 0)}%`,
        `${fmt(r.machineCores, 2)} cores`,
        `${fmt(r.serverDrops, 0)}/${fmt(r.viewerDrops, 0)}`,
        r.loads.map((l) => l.split(' ')[0]).join('/'),
      ]),
    ),
    how: [
      `server CPU: the edge process + its mediasoup worker (baseline: its process + its fan-out worker; ingest is on the origin, and on the baseline's other worker; janus: its process, every thread), user+system time from /proc/<pid>/stat over ${options.seconds} s, in % of one core`,
      `loss and bitrate: sums of the viewers' inbound-rtp packetsLost / (packetsReceived + packetsLost) and bytesReceived (audio + video) over the same window; publisher kbit/s: its outbound-rtp video bytesSent to that system`,
      `clean: loss < ${LOSS_LIMIT_PCT} %, every viewer connected, the publisher at ≥ ${BITRATE_FLOOR * 100} % of its ${options.kbps} kbit/s cap and the viewers getting ≥ 95 % of what it sends (a starved machine makes the encoder back off: such a step is not at the fixed bitrate)`,
      'drops: datagrams the kernel dropped at full socket receive buffers over the window (a process not scheduled in time), from /proc/net/udp: at the servers\' sockets (origin + edge; baseline: both workers) / at the generators\'',
      `viewers: libwebrtc (@roamhq/wrtc) WHEP clients in ${options.generators} load-generator process(es) of their own; receive-only (ICE, DTLS, SRTP, RTCP reports, no decoding: see kit/clients/sdp.ts)`,
      `the publisher sends one source to the origin, the baseline${rig.peers.otherBaseline ? ' and the other baseline' : ''} (measured: ${publishedKbps.map((k) => fmt(k, 0)).join(' and ')} kbit/s of video)${rig.peers.janus ? '; Janus is fed by the baseline' : ''}`,
    ],
  };
  const cell = (x: number, f: (v: number) => string) => (Number.isFinite(x) ? f(x) : 'n/a');
  const summaryTable: Table = {
    title: 'Edge fan-out summary',
    head: ['figure', 'relaycast', 'baseline', 'relaycast / baseline'],
    rows: [
      ['largest clean step (loss < 0.1 %, at the bitrate)', String(relaycast.maxCleanViewers), String(baseline.maxCleanViewers), ''],
      [
        'viewer streams per core at that step',
        cell(relaycast.streamsPerCore, (v) => fmt(v, 0)),
        cell(baseline.streamsPerCore, (v) => fmt(v, 0)),
        cell(relaycast.streamsPerCore / baseline.streamsPerCore, (v) => fmt(v, 2)),
      ],
      [
        'CPU per viewer (slope)',
        cell(relaycast.cpuPerViewer, (v) => `${fmt(v * 100, 3)}% of a core`),
        cell(baseline.cpuPerViewer, (v) => `${fmt(v * 100, 3)}% of a core`),
        cell(ratio, (v) => fmt(v, 2)),
      ],
      [
        'viewers per core (1 / slope)',
        cell(1 / relaycast.cpuPerViewer, (v) => fmt(v, 0)),
        cell(1 / baseline.cpuPerViewer, (v) => fmt(v, 0)),
        cell(baseline.cpuPerViewer / relaycast.cpuPerViewer, (v) => fmt(v, 2)),
      ],
      [
        '  of which the Node process',
        cell(relaycast.processPerViewer, (v) => `${fmt(v * 100, 3)}%`),
        cell(baseline.processPerViewer, (v) => `${fmt(v * 100, 3)}%`),
        cell(relaycast.processPerViewer / baseline.processPerViewer, (v) => fmt(v, 2)),
      ],
      [
        '  of which the mediasoup worker',
        cell(relaycast.workerPerViewer, (v) => `${fmt(v * 100, 3)}%`),
        cell(baseline.workerPerViewer, (v) => `${fmt(v * 100, 3)}%`),
        cell(relaycast.workerPerViewer / baseline.workerPerViewer, (v) => fmt(v, 2)),
      ],
      ['fixed CPU (intercept)', cell(relaycast.fixedCores, (v) => `${fmt(v * 100, 1)}%`), cell(baseline.fixedCores, (v) => `${fmt(v * 100, 1)}%`), ''],
      [
        'load generator CPU per viewer',
        cell(relaycast.generatorPerViewer, (v) => `${fmt(v * 100, 2)}% of a core`),
        cell(baseline.generatorPerViewer, (v) => `${fmt(v * 100, 2)}% of a core`),
        '',
      ],
    ],
    how: [
      'streams per core: viewers / server cores used at the largest clean step (loss < 0.1 %, at the bitrate; fixed costs included), median over runs',
      'CPU per viewer: least-squares slope of server CPU against viewers over the clean steps, per run, then the median; the ratio compares the medians',
      'all processes share 2 cores here: the generators (and the other engineers\' tests) compete with the server; a step is cut short when loss passes 2 %',
    ],
  };
  const points = (system: string) => rowsFor(system).map((r) => ({ x: r.viewers, y: r.serverCores * 100 }));
  return {
    id: 'fanout',
    title: 'Edge fan-out',
    tables: [stepTable, summaryTable, ...(systems.length > 2 ? [systemTable] : [])],
    data: {
      runs,
      steps,
      publishedKbps,
      lossLimitPct: LOSS_LIMIT_PCT,
      results,
      medians: Object.fromEntries(systems.map((s) => [s.name, rowsFor(s.name)])),
      relaycast,
      baseline,
      cpuPerViewerRatio: ratio,
      systems: bySystem,
      reference: reference.name,
    },
    panels: [
      {
        kind: 'lines',
        title: 'Fan-out: server CPU vs viewers',
        xLabel: 'viewers',
        yLabel: '% of one core',
        series: [
          ...systems.map((s) => ({ name: s.software, points: points(s.name) })),
          { name: 'load generators', points: rowsFor('relaycast').map((r) => ({ x: r.viewers, y: r.generatorCores * 100 })) },
        ],
      },
    ],
    headline: [
      {
        figure: `fan-out: viewer streams per core (${options.kbps} kbit/s, < 0.1 % loss)`,
        value: `${cell(relaycast.streamsPerCore, (v) => fmt(v, 0))} at ${relaycast.maxCleanViewers} viewers (baseline ${cell(baseline.streamsPerCore, (v) => fmt(v, 0))})`,
      },
      {
        figure: 'fan-out: CPU per viewer, relaycast / baseline',
        value: `${cell(relaycast.cpuPerViewer, (v) => `${fmt(v * 100, 3)}%`)} / ${cell(baseline.cpuPerViewer, (v) => `${fmt(v * 100, 3)}%`)} of a core = ${cell(ratio, (v) => fmt(v, 2))}×`,
      },
      ...(systems.length > 2
        ? [
            {
              figure: `fan-out: CPU per viewer by system (÷ ${reference.name}, per run)`,
              value: bySystem.map((s) => `${s.name} ${cell(s.cpuPerViewer, (v) => `${fmt(v * 100, 3)}%`)} (${cell(s.ratioToReference.median, (v) => fmt(v, 2))}×)`).join(', '),
            },
          ]
        : []),
    ],
    load: results.map((r) => r.load),
  };
}
