import { loadavg } from '../../kit/cpu.ts';
import { PHASES, STATS_POLL_MS, type PhaseTimes } from '../../kit/clients/phases.ts';
import { fmt, max, median, min, sleep, spread } from '../../kit/stats.ts';
import { playClient, type ClientLine, type ClientRun } from '../../kit/wrtc.ts';
import type { BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult, Table } from '../lib/report.ts';
import { RELAY_LINGER_MS, RTMP_KEY_FRAME_S, type MediaRig } from './rig.ts';

/**
 * Time to first frame: from a viewer's WHEP POST to its first decoded frame (kit/clients/wrtc.ts,
 * libwebrtc with a video sink). Cold: the edge holds no relay and pulls the stream from the origin
 * for this viewer. Warm: a second viewer while the first still plays (the relay is in place). The
 * baseline (a router that always holds the producer) is warm by construction: a reference.
 *
 * Each viewer also times its phases (kit/clients/phases.ts): the answer, ICE, DTLS, the first
 * video packet, the first complete frame, the first decoded frame, each from its POST. The phases
 * of cold and warm side by side say what the relay's set-up costs and in which step.
 *
 * Then the same stream published over RTMP (MediaRig.publishRtmp: x264, a key frame every
 * RTMP_KEY_FRAME_S, which ffmpeg cannot send sooner when asked), cold and warm: this libwebrtc
 * has no H.264 decoder, so its viewers are receive-only and the last phase they see is the first
 * video packet, which is a key frame's.
 */

/** The RTMP publish's stream (the WHIP one is rig.ts STREAM). */
const RTMP_STREAM = 'bench-rtmp';
/**
 * How long the RTMP viewers play. The warm one waits up to a key frame interval for its first
 * packet, so it plays that and a second more; the cold one keeps the relay in place until then:
 * its own wait for a key frame, the warm one's start offset (up to an interval), the warm client
 * process's start (about a second on a loaded machine) and its play.
 */
const RTMP_WARM_SECONDS = RTMP_KEY_FRAME_S + 1;
const RTMP_COLD_SECONDS = 2 * RTMP_KEY_FRAME_S + 1 + RTMP_WARM_SECONDS + 1;

/**
 * How long to wait until `offsetMs` past a key frame of the RTMP publish, given when one was seen
 * (`at`, performance.now()): key frames come every RTMP_KEY_FRAME_S from it (ffmpeg -re keeps
 * time). Without one seen yet, `offsetMs` from now.
 */
function untilAfterKeyFrame(at: number | undefined, offsetMs: number): number {
  if (at === undefined) return offsetMs;
  const interval = RTMP_KEY_FRAME_S * 1000;
  const into = (performance.now() - at) % interval;
  return (offsetMs - into + interval) % interval;
}

/** What one viewer reported in its `stats` line: its first frame and its phases. */
interface Take {
  firstFrameMs: number | null;
  phases: PhaseTimes | null;
  /** Its getStats() poll: calls and the median call, in ms. */
  poll: { calls: number; medianMs: number | null } | null;
}

function takeOf(lines: ClientLine[]): Take {
  const stats = lines.find((l) => l.event === 'stats') as unknown as { viewers: Array<{ firstFrameMs: number | null; phases?: PhaseTimes }> } | undefined;
  const phases = lines.find((l) => l.event === 'phases') as unknown as { poll: Take['poll'] } | undefined;
  const viewer = stats?.viewers[0];
  return { firstFrameMs: viewer?.firstFrameMs ?? null, phases: viewer?.phases ?? null, poll: phases?.poll ?? null };
}

/** Cheap and noisy: more runs than the other media figures. WHIP runs, then as many of the RTMP publish. */
export const ttffRuns = (options: BenchOptions) => {
  const runs = options.runs ?? (options.quick ? 1 : 7);
  return { whip: runs, rtmp: runs };
};

const PHASE_LABELS: Record<keyof PhaseTimes, string> = {
  answerMs: 'HTTP: WHEP answer received',
  iceMs: 'ICE connected',
  dtlsMs: 'DTLS connected (connectionState)',
  rtpMs: 'first video RTP (a key frame\'s)',
  completeMs: 'first complete frame (that key frame)',
  frameMs: 'first decoded frame (video sink)',
};

/**
 * The phases in the table. The first complete frame (framesReceived) is measured and kept in the
 * JSON, but on this machine the poll has never seen it before the decoded frame (a 320x180 key
 * frame decodes in less than a poll): as a row it would only repeat the decoded frame.
 */
const SHOWN = ['answerMs', 'iceMs', 'dtlsMs', 'rtpMs', 'frameMs'] as const satisfies ReadonlyArray<keyof PhaseTimes>;

/** The median over runs of one phase (NaN when no run reached it). */
const phaseMedian = (takes: Take[], key: keyof PhaseTimes) => median(takes.map((t) => t.phases?.[key]).filter((x): x is number => typeof x === 'number'));

const signed = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x), 0)}` : 'n/a');

export async function ttff(rig: MediaRig, options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = ttffRuns(options);
  const cold: Take[] = [];
  const warm: Take[] = [];
  const base: Take[] = [];
  const load: string[] = [];
  let failures = 0;
  for (let run = 0; run < runs.whip; run++) {
    progress.note(`ttff run ${run + 1}/${runs.whip}`);
    await rig.relayGone();
    const first = playClient(rig.edgeWhep, { seconds: 4, phases: true });
    await first.next('first-frame').catch(() => undefined);
    const second = playClient(rig.edgeWhep, { seconds: 2, phases: true });
    const reference = playClient(rig.baselineWhep, { seconds: 2, phases: true });
    const [a, b, c] = [takeOf(await first.done), takeOf(await second.done), takeOf(await reference.done)];
    if (a.firstFrameMs === null || b.firstFrameMs === null || c.firstFrameMs === null) failures++;
    cold.push(a);
    warm.push(b);
    base.push(c);
    load.push(loadavg());
    progress.step();
  }

  // The RTMP publish runs only now, so that its ffmpeg and bridge do not load the WHIP figures.
  const rtmpCold: Take[] = [];
  const rtmpWarm: Take[] = [];
  let rtmpFailures = 0;
  let rtmpError: string | undefined;
  progress.note('ttff: starting the RTMP publish');
  const rtmp = await rig.publishRtmp(RTMP_STREAM, options).catch((error: Error) => {
    rtmpError = error.message;
    return undefined;
  });
  if (rtmp) {
    try {
      // When (performance.now()) a viewer's `phases` line said its first packet, a key frame's, came.
      let keyFrameAt: number | undefined;
      const seen = async (run: ClientRun) => {
        const line = await run.next('phases').catch(() => undefined);
        if (typeof line?.rtpMs === 'number') keyFrameAt = performance.now();
      };
      for (let run = 0; run < runs.rtmp; run++) {
        progress.note(`ttff RTMP run ${run + 1}/${runs.rtmp}`);
        // Where in the key frame interval a viewer arrives decides its wait, and viewers arrive
        // anywhere in it: the runs spread their viewers evenly over it (stratified: with few runs,
        // their median is nearer the typical wait than random arrivals'), each start counted from
        // the last key frame a viewer saw. Left to the runs' own timing, the cold viewers started
        // at a few points of the interval, and a warm one just after the cold one's key frame
        // would always wait nearly the whole interval.
        const spreadMs = ((run + 0.5) / runs.rtmp) * RTMP_KEY_FRAME_S * 1000;
        await rig.relayGone();
        await sleep(untilAfterKeyFrame(keyFrameAt, spreadMs));
        const first = playClient(rtmp.whep, { seconds: RTMP_COLD_SECONDS, phases: true, h264: true });
        await seen(first);
        await sleep(untilAfterKeyFrame(keyFrameAt, spreadMs));
        const second = playClient(rtmp.whep, { seconds: RTMP_WARM_SECONDS, phases: true, h264: true });
        await seen(second);
        const [a, b] = [takeOf(await first.done), takeOf(await second.done)];
        if (a.phases?.rtpMs == null || b.phases?.rtpMs == null) rtmpFailures++;
        rtmpCold.push(a);
        rtmpWarm.push(b);
        load.push(loadavg());
        progress.step();
      }
    } finally {
      await rtmp.stop();
    }
  } else {
    for (let run = 0; run < runs.rtmp; run++) progress.step();
  }

  const frames = (takes: Take[]) => takes.map((t) => t.firstFrameMs).filter((x): x is number => x !== null);
  const [coldMs, warmMs, baseMs] = [frames(cold), frames(warm), frames(base)];
  const range = (xs: number[]) => (xs.length ? `${fmt(min(xs), 0)}–${fmt(max(xs), 0)}` : 'n/a');
  const pollCalls = [...cold, ...warm, ...base, ...rtmpCold, ...rtmpWarm].map((t) => t.poll?.medianMs).filter((x): x is number => typeof x === 'number');
  const medians = (takes: Take[]) => Object.fromEntries(PHASES.map((k) => [k, phaseMedian(takes, k)])) as Record<keyof PhaseTimes, number>;
  const m = { cold: medians(cold), warm: medians(warm), baseline: medians(base), rtmpCold: medians(rtmpCold), rtmpWarm: medians(rtmpWarm) };

  const pollNote = `ICE and DTLS: state-change events; first RTP and first complete frame: getStats() polled every ${STATS_POLL_MS} ms from the answer until the first frame, each stamped when its call returns (a call took ${pollCalls.length ? fmt(median(pollCalls), 1) : 'n/a'} ms, median), so up to ~${STATS_POLL_MS + Math.ceil(pollCalls.length ? median(pollCalls) : 0)} ms late; a phase the poll had not seen by the first frame counts at the frame`;
  const completeSeen = [...cold, ...warm, ...base].filter((t) => t.phases?.completeMs != null && t.phases.frameMs != null && t.phases.completeMs < t.phases.frameMs).length;
  const keyFrameNote =
    'the first video RTP is a key frame\'s first packet (mediasoup forwards a new consumer\'s video from a key frame on), and the first decoded frame is that key frame (libwebrtc decodes from one): ' +
    `from one to the other, its packets arrive, are assembled and decoded. No separate time for the key frame complete could be read: the poll saw framesReceived before the decoded frame in ${completeSeen} of ${cold.length + warm.length + base.length} viewers`;

  const breakdown: Table = {
    title: `Time to first frame by phase, each from the WHEP POST (median ms of ${runs.whip} run${runs.whip > 1 ? 's' : ''})`,
    head: ['phase', 'cold edge', 'warm edge', 'baseline', 'cold − warm', 'of it in this step'],
    rows: SHOWN.map((k, i) => {
      const diff = m.cold[k] - m.warm[k];
      const before = i === 0 ? 0 : m.cold[SHOWN[i - 1]!] - m.warm[SHOWN[i - 1]!];
      return [PHASE_LABELS[k], fmt(m.cold[k], 0), fmt(m.warm[k], 0), fmt(m.baseline[k], 0), signed(diff), signed(diff - before)];
    }),
    how: [
      'the viewer process (kit/clients/phases.ts) stamps each phase; medians per phase over the runs (a column is not a sum: each row is its own median)',
      pollNote,
      keyFrameNote,
      'cold − warm: what the relay set-up costs by then; "of it in this step": the part added between the row above and this one',
    ],
  };

  const rtmpRows = (['answerMs', 'iceMs', 'dtlsMs', 'rtpMs'] as const).map((k) => [PHASE_LABELS[k], fmt(m.rtmpCold[k], 0), fmt(m.rtmpWarm[k], 0), signed(m.rtmpCold[k] - m.rtmpWarm[k]), fmt(m.warm[k], 0)]);
  const rtmpRange = (takes: Take[]) => range(takes.map((t) => t.phases?.rtpMs).filter((x): x is number => typeof x === 'number'));
  const rtmpTable: Table = {
    title: `RTMP publish with a key frame every ${RTMP_KEY_FRAME_S} s: phases from the WHEP POST (median ms of ${runs.rtmp} run${runs.rtmp > 1 ? 's' : ''})`,
    head: ['phase', 'cold edge', 'warm edge', 'cold − warm', 'WHIP warm edge'],
    rows: rtmp
      ? [...rtmpRows, ['first video RTP, min–max', rtmpRange(rtmpCold), rtmpRange(rtmpWarm), '', '']]
      : [['not measured', '', '', '', '']],
    how: rtmp
      ? [
          `ffmpeg -re, testsrc2 320x180 at 30 frames/s, x264 ultrafast/zerolatency (Constrained Baseline, no B-frames: passed through as it is) -g ${RTMP_KEY_FRAME_S * 30} -sc_threshold 0 at ${options.kbps} kbit/s, AAC, to the origin's RTMP port`,
          'viewers receive-only, offering H.264 (this libwebrtc decodes none): they see the first video RTP, a key frame\'s first packet, and no frame; decoding adds what the WHIP rows show between first RTP and first frame',
          `ffmpeg cannot send a key frame when asked: a viewer waits for the next one, 0–${RTMP_KEY_FRAME_S} s after it connects (on average half of that); the runs spread the viewers over the interval: each viewer's process starts ${RTMP_KEY_FRAME_S} s × (run + ½) / runs after a key frame (counted from the last one a viewer saw; its POST follows its process's start)`,
          ...(rtmpFailures ? [`${rtmpFailures} run(s) had a viewer without video; their other figures are kept`] : []),
        ]
      : [`the RTMP publish did not start: ${rtmpError}`],
  };

  return {
    id: 'ttff',
    title: 'Time to first frame',
    tables: [
      {
        title: `Time to first frame, WHEP POST → first decoded frame (median of ${runs.whip} run${runs.whip > 1 ? 's' : ''})`,
        head: ['viewer', 'median ms', 'min–max ms'],
        rows: [
          ['cold edge (relay pulled on demand)', fmt(median(coldMs), 0), range(coldMs)],
          ['warm edge (relay in place)', fmt(median(warmMs), 0), range(warmMs)],
          ['baseline, plain mediasoup (reference)', fmt(median(baseMs), 0), range(baseMs)],
          ['cold / warm', fmt(median(coldMs) / median(warmMs), 2), ''],
        ],
        how: [
          'a libwebrtc viewer process (kit/clients/wrtc.ts) times its POST to its first frame out of the decoder (video sink)',
          `cold: after the previous relay closed (linger ${RELAY_LINGER_MS} ms), the edge looks the stream up in Postgres, asks the origin for a relay and connects the pipe; warm: a second viewer while the first plays, joining at the same time as the baseline's`,
          'the first frame waits for a key frame: the publisher is asked for one (at most every 350 ms) when a viewer connects',
          ...(failures ? [`${failures} run(s) had a viewer without a frame; their other figures are kept`] : []),
        ],
      },
      breakdown,
      rtmpTable,
    ],
    data: {
      runs: runs.whip,
      coldMs,
      warmMs,
      baselineMs: baseMs,
      median: { cold: median(coldMs), warm: median(warmMs), baseline: median(baseMs) },
      spread: { cold: spread(coldMs, 0), warm: spread(warmMs, 0) },
      phases: { cold: cold.map((t) => t.phases), warm: warm.map((t) => t.phases), baseline: base.map((t) => t.phases), medians: m, statsPollMs: STATS_POLL_MS, pollCallMs: pollCalls },
      rtmp: rtmp ? { runs: runs.rtmp, keyFrameS: RTMP_KEY_FRAME_S, cold: rtmpCold.map((t) => t.phases), warm: rtmpWarm.map((t) => t.phases) } : { error: rtmpError },
    },
    panels: [
      {
        kind: 'bars',
        title: 'Time to first frame (median)',
        unit: 'ms',
        bars: [
          { label: 'cold edge', value: median(coldMs), series: 'relaycast' },
          { label: 'warm edge', value: median(warmMs), series: 'relaycast' },
          { label: 'baseline', value: median(baseMs), series: 'baseline' },
        ],
      },
    ],
    headline: [
      { figure: 'time to first frame, cold / warm edge', value: `${fmt(median(coldMs), 0)} / ${fmt(median(warmMs), 0)} ms (baseline ${fmt(median(baseMs), 0)} ms)` },
      {
        figure: 'warm edge by phase: answer / DTLS / first RTP / first frame',
        value: `${fmt(m.warm.answerMs, 0)} / ${fmt(m.warm.dtlsMs, 0)} / ${fmt(m.warm.rtpMs, 0)} / ${fmt(m.warm.frameMs, 0)} ms (cold ${fmt(m.cold.answerMs, 0)} / ${fmt(m.cold.dtlsMs, 0)} / ${fmt(m.cold.rtpMs, 0)} / ${fmt(m.cold.frameMs, 0)})`,
      },
      ...(rtmp ? [{ figure: `first video RTP, RTMP publish with ${RTMP_KEY_FRAME_S} s key frames, cold / warm edge`, value: `${fmt(m.rtmpCold.rtpMs, 0)} / ${fmt(m.rtmpWarm.rtpMs, 0)} ms` }] : []),
    ],
    load,
  };
}
