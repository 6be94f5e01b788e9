import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { type Database } from '../db/Database.ts';
import { getStream } from '../db/repositories/streams.ts';
import { TestBrowser, play, playbackStats, publish, stopViewing, type PlaybackStats, type ReceiveOnly } from '../kit/browser.ts';
import { waitFor } from '../kit/processes.ts';
import { type RelaycastProcess } from '../kit/relaycast.ts';
import { startOriginEdge, type OriginEdge } from './helpers/originEdge.ts';
import { playerStats, type PageStats } from './helpers/player.ts';

/**
 * Publishers as people configure them, played in Chromium: real ffmpeg/x264 with the flags a user
 * (or OBS Studio's defaults) would use, publishing to the origin's RTMP server; an edge process
 * relays; Chromium plays over WHEP. One origin (+balancer), one edge and one Chromium serve every
 * row; the rows run one after another, each publisher stopped before the next starts.
 *
 * Debian's Chromium offers H.264 as 42001f, 42e01f, 4d001f and f4001f: no High (64xxxx), but its
 * High 4:4:4 Predictive decoder plays High, so an x264 High stream is sent to it as it is. A viewer
 * that offers only Constrained Baseline, as Firefox with OpenH264 does (made here with
 * setCodecPreferences), gets the Constrained Baseline rendition the origin starts for it; one that
 * offers VP8 and no H.264, as Firefox without OpenH264 does, gets the VP8 rendition. A WHIP
 * publisher's H.264 gets the same renditions, re-encoded from its RTP; a viewer that takes neither
 * the stream's codec nor a rendition's is refused with 422, and the web player says why.
 */

const SECRET = 'interop-rtmp-secret-0123456789';
const ADMIN = 'interop-rtmp-admin-token-0123456789';

interface Row {
  stream: string;
  title: string;
  /** ffmpeg output options for the video (after the lavfi inputs). */
  video: string[];
  /** ffmpeg output options for the audio. */
  audio: string[];
  /** Sample rate of the sine source (what the "microphone" delivers). */
  sampleRate: number;
  mode: 'passthrough' | 'transcode';
  /** What ffprobe (and so the bridge) reports for the publish. */
  profile: string;
  /** A second viewer that cannot decode the stream as sent plays the origin's rendition in this codec. */
  rendition?: 'h264' | 'vp8';
}

const ROWS: Row[] = [
  {
    stream: 'x264-baseline',
    title: 'x264 -profile:v baseline, AAC 44.1 kHz',
    // x264's "baseline" has no B-frames and no FMO/ASO: ffprobe reports Constrained Baseline.
    video: ['-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'baseline', '-g', '30'],
    audio: ['-c:a', 'aac', '-ar', '44100'],
    sampleRate: 44100,
    mode: 'passthrough',
    profile: 'Constrained Baseline',
  },
  {
    stream: 'x264-main-bf0',
    title: 'x264 -profile:v main -bf 0',
    video: ['-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'main', '-bf', '0', '-g', '30'],
    audio: ['-c:a', 'aac', '-ar', '44100'],
    sampleRate: 44100,
    mode: 'passthrough',
    profile: 'Main',
  },
  {
    stream: 'x264-high-bf0',
    title: 'x264 -profile:v high -bf 0 -tune zerolatency',
    video: ['-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-bf', '0', '-tune', 'zerolatency', '-g', '30'],
    audio: ['-c:a', 'aac', '-ar', '44100'],
    sampleRate: 44100,
    mode: 'passthrough',
    profile: 'High',
    rendition: 'h264',
  },
  {
    stream: 'x264-defaults',
    title: 'x264 defaults (-preset veryfast -g 30: High, 3 B-frames)',
    video: ['-c:v', 'libx264', '-preset', 'veryfast', '-g', '30'],
    audio: ['-c:a', 'aac', '-ar', '44100'],
    sampleRate: 44100,
    mode: 'transcode',
    profile: 'High',
    rendition: 'vp8',
  },
  {
    stream: 'obs-defaults',
    title: "OBS Studio's default x264 streaming output (High, CBR 2500k, 2 s keyframes, B-frames, AAC 160k 48 kHz)",
    // OBS Settings → Output → Streaming (plugins/obs-x264/obs-x264.c defaults):
    //   Video Encoder: x264                        → -c:v libx264
    //   Rate Control: CBR, Bitrate: 2500 Kbps      → -b:v 2500k -maxrate 2500k (vbv_max_bitrate = bitrate)
    //     CBR is x264 ABR with filler data         → -x264-params filler=1
    //   Use Custom Buffer Size: off (= bitrate)    → -bufsize 2500k
    //   Keyframe Interval: 0 (auto)                → -g 60 (2 s at 30 fps). obs-x264 itself then leaves
    //     x264's keyint (250 frames); the 2 s comes from the streaming services' recommended settings
    //     that OBS applies ("keyint": 2 for Twitch, YouTube…), which is what people stream with.
    //   CPU Usage Preset: veryfast                 → -preset veryfast
    //   Profile: (None) → x264's default, High for 8-bit 4:2:0 → no -profile:v
    //   Tune: (None)                               → no -tune
    //   B-frames: not an x264 setting in OBS; obs-x264 sets i_bframe only when "bf" is given, so
    //     x264's veryfast default applies (3 B-frames, b-pyramid; ffprobe's has_b_frames says 2).
    //   Output format NV12 (4:2:0, 8-bit)           → -pix_fmt yuv420p
    // Audio (Settings → Output → Audio Bitrate 160; Settings → Audio → Sample Rate 48 kHz, Channels Stereo):
    //   → -c:a aac -b:a 160k -ar 48000 -ac 2
    video: ['-c:v', 'libx264', '-preset', 'veryfast', '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '2500k', '-x264-params', 'filler=1', '-g', '60'],
    audio: ['-c:a', 'aac', '-b:a', '160k', '-ar', '48000', '-ac', '2'],
    sampleRate: 48000,
    mode: 'transcode',
    profile: 'High',
  },
];

const publishers = new Set<ChildProcess>();

/** ffmpeg publishing a 640x360 30 fps test picture and a tone with `row`'s settings, until stopped (at most 120 s). */
function publishRtmp(url: string, row: Row): ChildProcess {
  const child = spawn(
    'ffmpeg',
    [
      '-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
      '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30',
      '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=${row.sampleRate}`,
      ...row.video, '-pix_fmt', 'yuv420p', ...row.audio, '-t', '120', '-f', 'flv', url,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  (child as ChildProcess & { stderrTail: () => string }).stderrTail = () => stderr;
  publishers.add(child);
  child.once('exit', () => publishers.delete(child));
  return child;
}

/** Stops a publisher: SIGTERM (ffmpeg closes the RTMP connection), SIGKILL after 3 s. */
async function stopPublisher(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

interface BridgeLog {
  mode: string;
  codec: string;
  video?: { codec: string; profile?: string; hasBFrames: boolean };
}

/** The origin's "rtmp bridge started" log lines for `stream` (pino JSON), by component. */
function bridgeLogs(origin: RelaycastProcess, stream: string): { bridge?: BridgeLog; renditions: BridgeLog[] } {
  let bridge: BridgeLog | undefined;
  const renditions: BridgeLog[] = [];
  for (const line of origin.output().split('\n')) {
    if (!line.includes('rtmp bridge started') || !line.includes(stream)) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (entry.msg !== 'rtmp bridge started' || entry.stream !== stream) continue;
    if (entry.component === 'rtmp-rendition') renditions.push(entry as unknown as BridgeLog);
    else bridge = entry as unknown as BridgeLog;
  }
  return { bridge, renditions };
}

/** The profile-level-ids of the H.264 codecs in an SDP, in order, without repeats. */
function h264ProfileLevelIds(sdp: string): string[] {
  const h264 = new Set([...sdp.matchAll(/^a=rtpmap:(\d+) H264\/90000/gim)].map((m) => m[1]));
  const ids: string[] = [];
  for (const m of sdp.matchAll(/^a=fmtp:(\d+) (.*)$/gim)) {
    if (!h264.has(m[1])) continue;
    const id = /profile-level-id=([0-9a-f]{6})/i.exec(m[2]!)?.[1]?.toLowerCase();
    if (id && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** Waits (bounded) for decoded frames at `width` and received audio, as rtmp.test.ts does. */
async function decoding(viewer: Page, what: string, width = 640): Promise<PlaybackStats> {
  let last: PlaybackStats | undefined;
  try {
    await waitFor(
      `${what}: frames decoded at ${width} wide and audio received`,
      async () => {
        last = await playbackStats(viewer);
        return last.framesDecoded > 10 && last.frameWidth === width && last.videoWidth === width && last.audioPacketsReceived > 10;
      },
      30_000,
      250,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last stats: ${JSON.stringify(last)}`, { cause: error });
  }
  return last!;
}

describe('RTMP publishers as people configure them, played in Chromium', function () {
  this.timeout(120_000);
  let cluster: OriginEdge;
  let db: Database;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let browser: TestBrowser;
  const pages = new Set<Page>();

  const createStream = (name: string) => cluster.createStream(name);
  const newPage = async (url: string) => {
    const page = await browser.page(url);
    pages.add(page);
    return page;
  };

  before(async function () {
    this.timeout(150_000);
    cluster = await startOriginEdge({ secret: SECRET, admin: ADMIN });
    ({ db, origin, edge } = cluster);
    // The player page asks the balancer's route API for an edge.
    await waitFor('the edge in the route API', async () => {
      const res = await fetch(`${origin.url}/v1/route?stream=any&role=edge`);
      return res.ok && ((await res.json()) as { choices: unknown[] }).choices.length > 0;
    }, 20_000);
    browser = await TestBrowser.launch();
  });
  afterEach(async () => {
    for (const page of pages) {
      await stopViewing(page);
      await page.close().catch(() => undefined);
    }
    pages.clear();
    await Promise.all([...publishers].map(stopPublisher));
  });
  after(async () => {
    for (const child of publishers) child.kill('SIGKILL');
    await browser?.close();
    await cluster?.stop();
  });

  for (const row of ROWS) {
    const renditionViewer = row.rendition === 'vp8' ? 'a VP8-only viewer (as Firefox without OpenH264)' : 'a Constrained Baseline viewer (as Firefox with OpenH264)';
    const outcome = `${row.mode === 'transcode' ? 're-encoded' : 'passed through'}, plays${row.rendition ? `; ${renditionViewer} plays its ${row.rendition.toUpperCase()} rendition` : ''}`;
    it(`${row.title} → ${outcome}`, async () => {
      const { stream } = row;
      const { streamKey } = await createStream(stream);
      const publishedAt = Date.now();
      const publisher = publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, row);
      try {
        await waitFor(
          `${stream} live`,
          async () => {
            if (publisher.exitCode !== null) throw new Error(`ffmpeg exited with ${publisher.exitCode}: ${(publisher as any).stderrTail()}`);
            return (await getStream(db.knex, stream))?.state === 'live';
          },
          30_000,
          100,
        );
        const liveMs = Date.now() - publishedAt;
        assert.equal((await getStream(db.knex, stream))?.ingestProtocol, 'rtmp');

        await waitFor(`the bridge of ${stream} in the origin's log`, () => bridgeLogs(origin, stream).bridge !== undefined, 10_000, 100);
        const { bridge } = bridgeLogs(origin, stream);
        const bridgeText = `${bridge!.mode} (ffprobe: ${bridge!.video?.codec} ${bridge!.video?.profile}, B-frames ${bridge!.video?.hasBFrames ? 'yes' : 'no'})`;
        console.log(`      ${stream}: publish → live ${liveMs} ms; bridge ${bridgeText}`);
        assert.equal(bridge!.mode, row.mode, `bridge mode: ${JSON.stringify(bridge)}`);
        assert.equal(bridge!.video?.profile, row.profile, `profile ffprobe reports: ${JSON.stringify(bridge)}`);

        const viewers = [await watch(stream, 'Chromium')];
        if (row.rendition === 'h264') {
          viewers.push(await watch(stream, renditionViewer, { h264Profiles: ['42e01f'] }));
          assert.deepEqual(viewers.map((v) => v.answered), [['f4001f'], ['42e01f']], 'each answer names the viewer\'s own profile');
        } else if (row.rendition === 'vp8') {
          viewers.push(await watch(stream, renditionViewer, { codecs: ['video/VP8'] }, 'video/VP8'));
        }
        if (row.rendition) {
          const { renditions } = bridgeLogs(origin, stream);
          assert.deepEqual(renditions.map((r) => [r.mode, r.codec]), [['transcode', row.rendition]], 'one rendition, started for the second viewer');
          // Both leave: the edge lets the relay go after its linger, and the origin stops the rendition.
          for (const v of viewers) await stopViewing(v.page);
          const stopped = (line: string) => line.includes(`"stream":"${stream}"`) && line.includes('"component":"rtmp-rendition"') && line.includes('"reason":"no relay carries it"');
          await waitFor(`${stream}: the rendition stopped`, () => origin.output().split('\n').some(stopped), 20_000, 200);
          assert.equal((await getStream(db.knex, stream))?.state, 'live', 'the stream itself goes on');
        }
      } finally {
        await stopPublisher(publisher);
      }
      // The next row starts on a quiet origin: the stream idle, its bridge gone.
      await waitFor(`${stream} idle after its publisher left`, async () => (await getStream(db.knex, stream))?.state === 'idle', 20_000, 200);
    });
  }

  /** A viewer page plays `stream` from the edge: a 201, decoded frames (in `codec`) at 640 wide and audio. */
  async function watch(stream: string, who: string, only?: ReceiveOnly, codec = 'video/H264'): Promise<{ page: Page; answered: string[] }> {
    const page = await newPage(edge.url);
    const postedAt = Date.now();
    const res = await play(page, `${edge.url}/whep/${stream}`, undefined, only);
    assert.equal(res.status, 201, res.body);
    const answered = h264ProfileLevelIds(res.body);
    await waitFor(`${stream}: a first decoded frame for ${who}`, async () => (await playbackStats(page)).framesDecoded > 0, 30_000, 50);
    const firstFrameMs = Date.now() - postedAt;
    const stats = await decoding(page, `${stream} (${who})`);
    assert.equal(stats.videoCodec, codec);
    console.log(
      `      ${stream}, ${who}: WHEP POST → first decoded frame ${firstFrameMs} ms; ${stats.framesDecoded} frames at ${stats.frameWidth} wide, ` +
        `${stats.audioPacketsReceived} audio packets; answer H.264 ${answered.join(', ')}`,
    );
    return { page, answered };
  }

  /**
   * Makes every page's video offer VP9 alone, which no rendition is made in: the web player page
   * then asks as a viewer the edge cannot serve. (A string: tsx would wrap a function's inner names.)
   */
  const OFFER_VP9_ONLY = `
    const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
    RTCPeerConnection.prototype.addTransceiver = function (what, init) {
      const transceiver = addTransceiver.call(this, what, init);
      if (what === 'video') {
        transceiver.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/rtx' || c.mimeType === 'video/VP9'));
      }
      return transceiver;
    };`;

  it('WHIP from Chromium in H.264 Main only: a Constrained Baseline viewer and a VP8-only one play renditions made from its RTP; a VP9-only viewer → 422 naming both sides, and the web player says why', async () => {
    const stream = 'whip-main';
    const publisherPage = await newPage(origin.url);
    const published = await publish(publisherPage, `${origin.url}/whip/${stream}`, await signStreamToken(SECRET, { stream, action: 'publish' }), 'video/H264', ['4d001f']);
    assert.equal(published.status, 201, published.body);
    assert.deepEqual(h264ProfileLevelIds(published.body), ['4d001f'], 'the origin takes Main: the publisher offered nothing else');
    await waitFor(`${stream} live`, async () => (await getStream(db.knex, stream))?.state === 'live', 20_000, 100);

    const baseline = await watch(stream, 'a Constrained Baseline viewer (as Firefox with OpenH264)', { h264Profiles: ['42e01f'] });
    assert.deepEqual(baseline.answered, ['42e01f']);
    const vp8 = await watch(stream, 'a VP8-only viewer (as Firefox without OpenH264)', { codecs: ['video/VP8'] }, 'video/VP8');
    const renditionLog = (msg: string) =>
      origin.output().split('\n').filter((l) => l.includes('"component":"whip-rendition"') && l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as { rendition: string; reason?: string });
    assert.deepEqual(renditionLog('rendition started').map((l) => l.rendition), ['h264', 'vp8'], 'one rendition per codec, from the WHIP publish');
    // Both leave: the edge lets the relay go after its linger, and the origin stops both renditions; the stream goes on.
    for (const page of [baseline.page, vp8.page]) await stopViewing(page);
    await waitFor(`${stream}: both renditions stopped`, () => renditionLog('rendition closed').filter((l) => l.reason === 'no relay carries it').length === 2, 20_000, 200);
    assert.equal((await getStream(db.knex, stream))?.state, 'live', 'the stream itself goes on');

    const probe = await newPage(edge.url);
    const attempt = await play(probe, `${edge.url}/whep/${stream}`, undefined, { codecs: ['video/VP9'] });
    assert.equal(attempt.status, 422, attempt.body);
    const problem = JSON.parse(attempt.body) as { detail: string; streamCodecs: string[]; offeredCodecs: string[] };
    assert.match(problem.detail, /video\/H264 Main \(4d001f\)/);
    assert.ok(problem.streamCodecs.includes('video/H264 Main (4d001f)'), attempt.body);
    assert.deepEqual(problem.offeredCodecs.filter((c) => c.startsWith('video/')), ['video/VP9'], attempt.body);
    console.log(`      ${stream}: a VP9-only viewer → 422: ${problem.detail}`);

    // The web player page (the balancer's), offering VP9 alone: it gets the 422 and says why. In
    // mode webrtc: by default it would play the stream over HLS instead (test/player.test.ts).
    const player = await newPage(origin.url);
    await player.addInitScript({ content: OFFER_VP9_ONLY });
    const openedAt = Date.now();
    await player.goto(`${origin.url}/play/${stream}?mode=webrtc`);
    const seen = new Set<string>();
    let last: PageStats | undefined;
    const observe = async () => {
      last = await playerStats(player);
      seen.add(last.state);
      return last;
    };
    try {
      await waitFor(`${stream}: the player in state unsupported`, async () => (await observe()).state === 'unsupported', 30_000, 100);
    } catch (error) {
      throw new Error(`${(error as Error).message}; states seen ${[...seen].join(', ')}; last player stats: ${JSON.stringify(last)}`, { cause: error });
    }
    const unsupportedMs = Date.now() - openedAt;
    // A few seconds more: it stays there (its retry is 8 s away) and never plays.
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      await observe();
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(!seen.has('playing'), `the player never plays: states seen ${[...seen].join(', ')}`);
    assert.equal(last!.sessions, 0, `no WHEP session was ever set up: ${JSON.stringify(last)}`);
    assert.equal(last!.state, 'unsupported', JSON.stringify(last));
    assert.equal(last!.stateText, `this browser cannot play this stream: ${problem.detail}`);
    const shown = await player.locator('#status-text').innerText();
    assert.ok(shown.includes(problem.detail), `the page shows the reason: ${shown}`);
    assert.equal(await player.locator('#status').isVisible(), true, 'the status overlay is shown');
    console.log(`      ${stream}: player page → 'unsupported' in ${unsupportedMs} ms (states seen: ${[...seen].join(' → ')}); it shows "${shown}"`);
  });
});
