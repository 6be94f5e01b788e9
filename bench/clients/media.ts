/**
 * The benchmark's media clients on libwebrtc (@roamhq/wrtc), each run as its own process (a load
 * generator apart from the servers it loads; a native crash here never takes the suite down).
 * Commands arrive on stdin, one a line; reports leave on stdout, one JSON object a line.
 *
 *   publish --target <whip url> --token <token> [--target … --token …] [--kbps 600] [--width 320]
 *           [--height 180] [--fps 30] [--seconds 600]
 *     One synthetic source (a moving gradient with noise, so that the encoder spends its whole
 *     budget) sent to every target over its own PeerConnection. Each frame carries its capture
 *     time in its pixels (see stamp()), for the latency measurement. stdin: `stats`, `stop`.
 *
 *   view --url <whep url> [--token t] [--stamp] [--receive-only] [--video-only]
 *     Viewers of one WHEP URL, added on command. Without --stamp no frame reaches JavaScript
 *     (libwebrtc still receives, depacketizes and decodes every frame); with --stamp each
 *     decoded frame's capture stamp is read back and its delay recorded. --receive-only: no
 *     decoding at all (see receiveOnlyAnswer). --video-only: no audio section (no A/V sync).
 *     stdin: `add <n> [concurrency]`, `snapshot <id>`, `latency <id>`, `stop`.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import wrtc from '@roamhq/wrtc';
import { max, median } from '../../kit/stats.ts';

const { RTCPeerConnection, nonstandard } = wrtc as any;

function emit(event: string, data: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

/**
 * Wall-clock time in ms with sub-ms resolution, the same in every process on the machine: the
 * monotonic clock, offset to the wall clock at the instants Date.now() ticks over to a new
 * millisecond. Any delay in noticing a tick (the process descheduled on a busy machine) makes
 * that reading's offset too small, so the largest of 60 readings is taken. (performance.timeOrigin
 * alone is a few ms off, differently in each process.)
 */
const wallOffset = (() => {
  let best = -Infinity;
  for (let i = 0; i < 60; i++) {
    const first = Date.now();
    let now = first;
    while (now === first) now = Date.now();
    best = Math.max(best, now - performance.now());
  }
  return best;
})();
const wallMs = () => performance.now() + wallOffset;

// ---- the timestamp carried in the pixels -------------------------------------------------------
// 40 bits in two rows of 20 square blocks across the top of the picture, black or white: the
// capture time in units of 0.1 ms modulo 2^32, then a check byte. Blocks of 16 px (at 320 wide)
// are VP8 macroblocks: they survive the encoder even when it is short of bits.

const STAMP_COLUMNS = 20;
const STAMP_BITS = 40;
const UNITS_PER_MS = 10;

function checkByte(value: number): number {
  return ((value & 0xff) ^ ((value >>> 8) & 0xff) ^ ((value >>> 16) & 0xff) ^ ((value >>> 24) & 0xff) ^ 0x5a) & 0xff;
}

function stamp(y: Uint8ClampedArray, width: number, atMs: number): void {
  const value = Math.floor(atMs * UNITS_PER_MS) >>> 0;
  const block = Math.floor(width / STAMP_COLUMNS);
  const check = checkByte(value);
  for (let bit = 0; bit < STAMP_BITS; bit++) {
    const on = bit < 32 ? (value >>> (31 - bit)) & 1 : (check >>> (39 - bit)) & 1;
    const bx = (bit % STAMP_COLUMNS) * block;
    const by = Math.floor(bit / STAMP_COLUMNS) * block;
    for (let row = by; row < by + block; row++) y.fill(on ? 235 : 16, row * width + bx, row * width + bx + block);
  }
}

/** The capture time (ms, modulo 2^32 units) a decoded I420 frame carries, or undefined if unreadable. */
function readStamp(data: Uint8Array, width: number): number | undefined {
  const block = width / STAMP_COLUMNS;
  let value = 0;
  let check = 0;
  for (let bit = 0; bit < STAMP_BITS; bit++) {
    const cx = Math.floor((bit % STAMP_COLUMNS) * block + block / 2);
    const cy = Math.floor(Math.floor(bit / STAMP_COLUMNS) * block + block / 2);
    let sum = 0;
    for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) sum += data[(cy + dy) * width + cx + dx]!;
    const on = sum / 9 > 128 ? 1 : 0;
    if (bit < 32) value = ((value << 1) | on) >>> 0;
    else check = (check << 1) | on;
  }
  return checkByte(value) === check ? value : undefined;
}

/** Delay in ms from a stamp to now, with the modulo-2^32 wrap undone (negative if the stamp is ahead). */
function delaySince(stampValue: number, nowMs: number): number {
  const now = Math.floor(nowMs * UNITS_PER_MS) >>> 0;
  return ((now - stampValue) | 0) / UNITS_PER_MS;
}

/** Delays outside this are misread stamps that passed the check byte (1 in 256 of misreads). */
const PLAUSIBLE_DELAY_MS = 10_000;

/**
 * A viewer's tries to join (WHEP answer, then ICE/DTLS connected within 20 s), and the pause
 * between them: the web player retries after 0.5 s doubling. On a machine starved by other work a
 * join can miss the 20 s, and a second try is what a real player makes.
 */
const JOIN_TRIES = 2;
const RETRY_DELAY_MS = 500;
/** How long an `add` waits for its new viewers to show media before it reports (a wait, not a figure). */
const PLAYING_WAIT_MS = 60_000;

// ---- signalling ---------------------------------------------------------------------------------

/**
 * A receive-only viewer: the server is offered VP8 on payload type 96 and sends it there, but this
 * libwebrtc is set up (its local offer with VP8 taken out, the answer it is given with the video
 * section mapped to 98, VP9) to expect VP9 on 98 only. Every packet still arrives, is decrypted,
 * feeds the RTP receive statistics (received, lost, bytes: what we read) and the RTCP receiver
 * reports, and is then dropped as an unexpected payload type instead of being depacketized and
 * decoded. Decoding is the viewer's device's work, not the server's; in this process it would
 * cost many times the server's CPU per viewer.
 */
function videoSection(sdp: string, edit: (section: string) => string): string {
  return sdp
    .split(/(?=^m=)/m)
    .map((part) => (part.startsWith('m=video') ? edit(part) : part))
    .join('');
}

function withoutVp8(offer: string): string {
  return videoSection(offer, (part) =>
    part
      .replace(/^(m=video \S+ \S+)((?: \d+)+)/m, (_, head: string, pts: string) => head + pts.split(' ').filter((pt) => pt !== '96' && pt !== '97').join(' '))
      .replace(/^a=(rtpmap|fmtp|rtcp-fb):9[67] [^\r\n]*\r?\n/gm, ''),
  );
}

function receiveOnlyAnswer(answer: string): string {
  return videoSection(answer, (part) =>
    part
      .replace(/^(m=video \S+ \S+(?: \d+)*?) 96(?= |\r?$)/m, '$1 98')
      .replace(/^a=rtpmap:96 VP8\/90000/m, 'a=rtpmap:98 VP9/90000')
      .replace(/^a=(fmtp|rtcp-fb):96 /gm, 'a=$1:98 '),
  );
}

interface Negotiated {
  /** The session's URL (Location), resolved against the URL that answered, after any 307. */
  location: string;
  /** performance.now() when the offer was POSTed and when the answer came back. */
  postedAt: number;
  answeredAt: number;
}

async function negotiate(pc: any, url: string, receiving: boolean, token?: string, receiveOnly = false): Promise<Negotiated> {
  const offer = await pc.createOffer();
  // As in test/clients/wrtc.ts: this libwebrtc reads header extensions by the ids it offered,
  // whatever the answer says, so a viewer offers none.
  if (receiving) offer.sdp = offer.sdp.replace(/a=extmap:[^\r]*\r\n/g, '');
  const sent = offer.sdp as string;
  await pc.setLocalDescription(receiveOnly ? { type: 'offer', sdp: withoutVp8(offer.sdp) } : offer);
  const headers: Record<string, string> = { 'content-type': 'application/sdp' };
  if (token) headers.authorization = `Bearer ${token}`;
  const postedAt = performance.now();
  const res = await fetch(url, { method: 'POST', headers, body: receiveOnly ? sent : pc.localDescription.sdp });
  let body = await res.text();
  const answeredAt = performance.now();
  if (res.status !== 201) throw new Error(`${url} answered ${res.status}: ${body.slice(0, 300)}`);
  if (receiveOnly) body = receiveOnlyAnswer(body);
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { location: new URL(res.headers.get('location') ?? '', res.url).toString(), postedAt, answeredAt };
}

async function waitConnected(pc: any, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pc.connectionState !== 'connected') {
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') throw new Error(`connection ${pc.connectionState}`);
    if (Date.now() > deadline) throw new Error(`not connected after ${timeoutMs} ms (${pc.connectionState})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function commands(handler: (words: string[]) => Promise<void>): void {
  const rl = createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    queue = queue.then(() => handler(words)).catch((error) => emit('error', { command: words[0], message: (error as Error).message }));
  });
  rl.on('close', () => void queue.then(() => process.exit(0)));
}

// ---- publisher ----------------------------------------------------------------------------------

async function publish(options: { targets: string[]; tokens: string[]; kbps: number; width: number; height: number; fps: number; seconds: number }) {
  const { width, height, fps, kbps } = options;
  const video = new nonstandard.RTCVideoSource();
  const audio = new nonstandard.RTCAudioSource();
  const videoTrack = video.createTrack();
  const audioTrack = audio.createTrack();

  // Noise over a moving gradient: enough detail that the encoder uses its bitrate cap, and a
  // picture that changes every frame. Precomputed noise keeps the generator cheap.
  const size = width * height;
  const noise = new Uint8Array(size * 2);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(Math.random() * 48);
  const frame = new Uint8ClampedArray(size * 1.5);
  // Frames and audio are paced by the clock, not by counting timer ticks: Node's timers fire late,
  // and a source that falls behind real time makes every receiver's playout (A/V sync included)
  // drift later and later. A late video frame is skipped, as a camera would.
  const t0 = performance.now();
  let n = 0;
  let videoTimer: NodeJS.Timeout | undefined;
  const nextFrame = () => {
    const due = Math.floor(((performance.now() - t0) * fps) / 1000);
    if (due >= n) {
      n = due;
      drawFrame();
      n++;
    }
    videoTimer = setTimeout(nextFrame, Math.max(0, t0 + (n * 1000) / fps - performance.now()));
  };
  const drawFrame = () => {
    const offset = Math.floor(Math.random() * size);
    for (let y = 0; y < height; y++) {
      const base = (y + n * 2) & 0x7f;
      for (let x = 0; x < width; x++) frame[y * width + x] = 40 + base + ((x * 2) & 0x3f) + noise[offset + y * width + x]!;
    }
    frame.fill(128 + ((n >> 3) & 15), size, size * 1.25);
    frame.fill(128 - ((n >> 4) & 15), size * 1.25);
    stamp(frame, width, wallMs());
    video.onFrame({ width, height, data: frame });
  };
  nextFrame();
  const samples = new Int16Array(480);
  let phase = 0;
  let chunks = 0;
  const audioTimer = setInterval(() => {
    while (chunks * 10 <= performance.now() - t0) {
      for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((phase++ * 2 * Math.PI * 440) / 48000));
      audio.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
      chunks++;
    }
  }, 5);

  const peers: Array<{ pc: any; location: string; token: string }> = [];
  for (const [i, url] of options.targets.entries()) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver(audioTrack, { direction: 'sendonly' });
    const { sender } = pc.addTransceiver(videoTrack, { direction: 'sendonly' });
    const token = options.tokens[i] ?? options.tokens[0] ?? '';
    const { location } = await negotiate(pc, url, false, token || undefined);
    try {
      const parameters = sender.getParameters();
      for (const encoding of parameters.encodings ?? []) encoding.maxBitrate = kbps * 1000;
      await sender.setParameters(parameters);
    } catch (error) {
      emit('warning', { message: `setParameters: ${(error as Error).message}` });
    }
    await waitConnected(pc, 20_000);
    emit('connected', { target: i, url });
    peers.push({ pc, location, token });
  }
  emit('ready');

  const stop = async () => {
    clearTimeout(videoTimer);
    clearInterval(audioTimer);
    for (const p of peers) {
      await fetch(p.location, { method: 'DELETE', headers: p.token ? { authorization: `Bearer ${p.token}` } : {} }).catch(() => undefined);
      p.pc.close();
    }
    process.exit(0);
  };
  setTimeout(() => void stop(), options.seconds * 1000);
  commands(async ([command]) => {
    if (command === 'stop') await stop();
    if (command === 'stats') {
      const targets = [];
      for (const p of peers) {
        let out: any = {};
        (await p.pc.getStats()).forEach((s: any) => {
          if (s.type === 'outbound-rtp' && s.kind === 'video') out = s;
        });
        targets.push({
          bytesSent: out.bytesSent ?? 0,
          framesEncoded: out.framesEncoded ?? 0,
          keyFramesEncoded: out.keyFramesEncoded ?? 0,
          pliCount: out.pliCount ?? 0,
          frameWidth: out.frameWidth ?? null,
          totalEncodeTime: out.totalEncodeTime ?? null,
          totalPacketSendDelay: out.totalPacketSendDelay ?? null,
          packetsSent: out.packetsSent ?? 0,
          at: Date.now(),
        });
      }
      emit('stats', { targets });
    }
  });
}

// ---- viewers ------------------------------------------------------------------------------------

interface Viewer extends Partial<Negotiated> {
  pc: any;
  sink?: any;
}

async function view(options: { url: string; token?: string; stamp: boolean; receiveOnly: boolean; videoOnly: boolean }) {
  const viewers: Viewer[] = [];
  /** [capture stamp, delay in ms] of every decoded frame since the last `latency` command. */
  let samples: Array<[number, number]> = [];
  let unreadable = 0;

  async function connect(): Promise<Viewer> {
    const pc = new RTCPeerConnection();
    if (!options.videoOnly) pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const viewer: Viewer = { pc };
    if (options.stamp) {
      pc.ontrack = (event: any) => {
        if (event.track.kind !== 'video') return;
        viewer.sink = new nonstandard.RTCVideoSink(event.track);
        viewer.sink.onframe = ({ frame }: { frame: { width: number; data: Uint8Array } }) => {
          const now = wallMs();
          const value = readStamp(frame.data, frame.width);
          const delay = value === undefined ? NaN : delaySince(value, now);
          if (value === undefined || !(Math.abs(delay) < PLAUSIBLE_DELAY_MS)) unreadable++;
          else samples.push([value, delay]);
        };
      };
    }
    try {
      Object.assign(viewer, await negotiate(pc, options.url, true, options.token, options.receiveOnly));
      await waitConnected(pc, 20_000);
    } catch (error) {
      pc.close();
      // Its session, if the edge made one, is not left to time out there.
      if (viewer.location) void fetch(viewer.location, { method: 'DELETE' }).catch(() => undefined);
      throw error;
    }
    return viewer;
  }

  /**
   * A viewer as a player makes one: a failed join (no answer, or not connected in time on a
   * starved machine) is tried again, up to JOIN_TRIES times, as the web player does.
   */
  async function join(failures: string[]): Promise<Viewer> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await connect();
      } catch (error) {
        failures.push((error as Error).message);
        if (attempt >= JOIN_TRIES) throw error;
        await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
      }
    }
  }

  /** Whether a viewer plays: it decoded a frame (a receive-only one: it received video). */
  async function playing(v: Viewer): Promise<boolean> {
    let yes = false;
    (await v.pc.getStats()).forEach((s: any) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') yes = (options.receiveOnly ? s.packetsReceived : s.framesDecoded) > 0;
    });
    return yes;
  }

  commands(async ([command, arg, arg2]) => {
    if (command === 'add') {
      const count = Number(arg ?? 1);
      const concurrency = Number(arg2 ?? 8);
      const started = Date.now();
      const addedAt = performance.now();
      const added: Viewer[] = [];
      const errors: string[] = [];
      const attemptsFailed: string[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(concurrency, count) }, async () => {
          while (next < count) {
            next++;
            try {
              added.push(await join(attemptsFailed));
            } catch (error) {
              errors.push((error as Error).message);
            }
          }
        }),
      );
      viewers.push(...added);
      // Playing: every new viewer has decoded a frame (or the deadline passed: a wait, not a figure).
      const deadline = Date.now() + PLAYING_WAIT_MS;
      let playingCount = 0;
      for (;;) {
        playingCount = (await Promise.all(added.map(playing))).filter(Boolean).length;
        if (playingCount === added.length || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const answers = added.map((v) => v.answeredAt! - v.postedAt!);
      emit('added', {
        requested: count,
        connected: added.length,
        playing: playingCount,
        total: viewers.length,
        failed: errors.length,
        errors: errors.slice(0, 3),
        // Joins that failed and were tried again (a player would have too).
        retried: attemptsFailed.length - errors.length,
        retryReasons: attemptsFailed.slice(0, 3),
        ms: Date.now() - started,
        // ms after the command: the last offer sent; and each WHEP POST's round trip, median and max.
        lastOfferSentMs: Math.round(max(added.map((v) => v.postedAt! - addedAt))),
        answerMs: { median: Math.round(median(answers)), max: Math.round(max(answers)) },
      });
    } else if (command === 'snapshot') {
      const per = await Promise.all(
        viewers.map(async (v) => {
          const r = { packetsReceived: 0, packetsLost: 0, bytesReceived: 0, framesDecoded: 0, nackCount: 0, pliCount: 0, firCount: 0, state: v.pc.connectionState as string };
          (await v.pc.getStats()).forEach((s: any) => {
            if (s.type !== 'inbound-rtp') return;
            r.packetsReceived += s.packetsReceived ?? 0;
            r.packetsLost += s.packetsLost ?? 0;
            r.bytesReceived += s.bytesReceived ?? 0;
            r.nackCount += s.nackCount ?? 0;
            r.pliCount += s.pliCount ?? 0;
            r.firCount += s.firCount ?? 0;
            if (s.kind === 'video') r.framesDecoded += s.framesDecoded ?? 0;
          });
          return r;
        }),
      );
      emit('snapshot', { id: arg, at: Date.now(), viewers: per });
    } else if (command === 'latency') {
      // libwebrtc's own per-frame timings, summed since the start (seconds): the time from a
      // frame's first packet to its decoded picture, and the part of it spent in the jitter buffer.
      const counters = { framesDecoded: 0, totalProcessingDelay: 0, jitterBufferDelay: 0, jitterBufferEmittedCount: 0, totalDecodeTime: 0 };
      for (const v of viewers) {
        (await v.pc.getStats()).forEach((s: any) => {
          if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
          for (const key of Object.keys(counters) as Array<keyof typeof counters>) counters[key] += s[key] ?? 0;
        });
      }
      emit('latency', { id: arg, samples, unreadable, counters });
      samples = [];
      unreadable = 0;
    } else if (command === 'stop') {
      await Promise.all(
        viewers.map(async (v) => {
          v.sink?.stop();
          if (v.location) await fetch(v.location, { method: 'DELETE' }).catch(() => undefined);
          v.pc.close();
        }),
      );
      emit('stopped');
      process.exit(0);
    }
  });
  emit('ready');
}

const [mode, ...rest] = process.argv.slice(2);
const { values } = parseArgs({
  args: rest,
  options: {
    target: { type: 'string', multiple: true, default: [] },
    token: { type: 'string', multiple: true, default: [] },
    url: { type: 'string' },
    kbps: { type: 'string', default: '600' },
    width: { type: 'string', default: '320' },
    height: { type: 'string', default: '180' },
    fps: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '600' },
    stamp: { type: 'boolean', default: false },
    'receive-only': { type: 'boolean', default: false },
    'video-only': { type: 'boolean', default: false },
  },
});
try {
  if (mode === 'publish') {
    await publish({
      targets: values.target,
      tokens: values.token,
      kbps: Number(values.kbps),
      width: Number(values.width),
      height: Number(values.height),
      fps: Number(values.fps),
      seconds: Number(values.seconds),
    });
  } else if (mode === 'view') {
    await view({ url: values.url!, token: values.token[0], stamp: values.stamp, receiveOnly: values['receive-only'], videoOnly: values['video-only'] });
  } else {
    throw new Error('usage: media.ts publish --target <url> --token <t> … | view --url <url> [--stamp]');
  }
} catch (error) {
  emit('error', { message: (error as Error).message });
  process.exit(1);
}
