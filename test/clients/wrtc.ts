/**
 * A Node-side WHIP publisher and WHEP viewer on libwebrtc (@roamhq/wrtc): what the tests, the
 * benchmarks and the failure tests use where a browser would be too heavy. It runs as its own
 * process and reports on stdout, one JSON object a line, so that a native crash in libwebrtc can
 * never take a test runner down with it.
 *
 *   node --import tsx test/clients/wrtc.ts publish <whip url> <token> [seconds]
 *   node --import tsx test/clients/wrtc.ts play <whep url> [viewers] [seconds] [token]
 *
 * A viewer plays for `seconds`, and on (at most EXTRA_PLAY_MS more) while a connected viewer has
 * decoded fewer than ENOUGH_FRAMES: what a test asserts about the frames then depends on the media
 * arriving, not on how fast a loaded machine decodes it.
 *
 * Lines: {"event":"answer","status":201,...}, {"event":"connected","ms":…},
 * {"event":"first-frame","viewer":0,"ms":…}, and at the end {"event":"stats",…}.
 */
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, nonstandard } = wrtc as any;

const WIDTH = 320;
const HEIGHT = 180;
const FPS = 30;
/** A second of the publisher's video: plenty to show a stream decodes, not just its first frame. */
const ENOUGH_FRAMES = 30;
/** How long a viewer waits past its `seconds` for ENOUGH_FRAMES; the test harness kills it 30 s after `seconds`. */
const EXTRA_PLAY_MS = 20_000;
const POLL_MS = 100;

function emit(event: string, data: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

const started = Date.now();
const elapsed = () => Date.now() - started;

async function negotiate(pc: any, url: string, receiving: boolean, token?: string): Promise<string | null> {
  const offer = await pc.createOffer();
  // This libwebrtc reads RTP header extensions by the ids it offered, whatever the answer says;
  // mediasoup writes its own ids (a viewer's MID id may be mediasoup's abs-send-time), so a viewer
  // offers none. Chromium follows the answer and needs no such change.
  if (receiving) offer.sdp = offer.sdp.replace(/a=extmap:[^\r]*\r\n/g, '');
  await pc.setLocalDescription(offer);
  // No waiting for ICE gathering: mediasoup is ICE-lite and learns our address from our checks.
  const headers: Record<string, string> = { 'content-type': 'application/sdp' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  const body = await res.text();
  emit('answer', { status: res.status, location: res.headers.get('location'), ...(res.status === 201 ? {} : { body }) });
  if (res.status !== 201) return null;
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'connected') emit('connected', { ms: elapsed() });
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') emit('ended', { state: pc.connectionState, ms: elapsed() });
  };
  return res.headers.get('location');
}

async function publish(url: string, token: string, seconds: number): Promise<void> {
  const pc = new RTCPeerConnection();
  const video = new nonstandard.RTCVideoSource();
  const audio = new nonstandard.RTCAudioSource();
  const videoTrack = video.createTrack();
  const audioTrack = audio.createTrack();
  pc.addTransceiver(audioTrack, { direction: 'sendonly' });
  pc.addTransceiver(videoTrack, { direction: 'sendonly' });

  // A moving gradient: frames that differ, so the encoder sends real pictures.
  const frame = new Uint8ClampedArray(WIDTH * HEIGHT * 1.5);
  let n = 0;
  const videoTimer = setInterval(() => {
    for (let y = 0; y < HEIGHT; y++) frame.fill((y + n * 4) & 0xff, y * WIDTH, (y + 1) * WIDTH);
    frame.fill(128, WIDTH * HEIGHT);
    video.onFrame({ width: WIDTH, height: HEIGHT, data: frame });
    n++;
  }, 1000 / FPS);
  const samples = new Int16Array(480);
  let phase = 0;
  const audioTimer = setInterval(() => {
    for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((phase++ * 2 * Math.PI * 440) / 48000));
    audio.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
  }, 10);

  const location = await negotiate(pc, url, false, token);
  if (location) await new Promise((r) => setTimeout(r, seconds * 1000));
  clearInterval(videoTimer);
  clearInterval(audioTimer);
  if (location) await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
  videoTrack.stop();
  audioTrack.stop();
  pc.close();
}

interface Viewer {
  pc: any;
  frames: number;
  width: number;
  /** From the WHEP POST to the first decoded frame: what a person waits for. */
  firstFrameMs?: number;
  startedAt: number;
  location: string | null;
}

async function play(url: string, viewers: number, seconds: number, token?: string): Promise<void> {
  const list: Viewer[] = [];
  for (let i = 0; i < viewers; i++) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const viewer: Viewer = { pc, frames: 0, width: 0, location: null, startedAt: Date.now() };
    pc.ontrack = (event: any) => {
      if (event.track.kind !== 'video') return;
      const sink = new nonstandard.RTCVideoSink(event.track);
      sink.onframe = ({ frame }: { frame: { width: number } }) => {
        viewer.frames++;
        viewer.width = frame.width;
        if (viewer.firstFrameMs === undefined) {
          viewer.firstFrameMs = Date.now() - viewer.startedAt;
          emit('first-frame', { viewer: i, ms: viewer.firstFrameMs });
        }
      };
      (viewer as any).sink = sink;
    };
    viewer.location = await negotiate(pc, url, true, token);
    list.push(viewer);
  }
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const waitingOn = () => list.some((v) => v.pc.connectionState === 'connected' && v.frames < ENOUGH_FRAMES);
  for (const until = Date.now() + EXTRA_PLAY_MS; waitingOn() && Date.now() < until; ) await new Promise((r) => setTimeout(r, POLL_MS));
  const stats = [];
  for (const v of list) {
    let audioPackets = 0;
    let video: any = {};
    const report = await v.pc.getStats();
    report.forEach((s: any) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') audioPackets = s.packetsReceived ?? 0;
      if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
    });
    stats.push({
      frames: v.frames,
      width: v.width,
      audioPackets,
      videoPackets: video.packetsReceived ?? 0,
      framesDecoded: video.framesDecoded ?? 0,
      keyFramesDecoded: video.keyFramesDecoded ?? 0,
      firstFrameMs: v.firstFrameMs ?? null,
      state: v.pc.connectionState,
    });
  }
  emit('stats', { viewers: stats });
  for (const v of list) {
    (v as any).sink?.stop();
    if (v.location) await fetch(v.location, { method: 'DELETE' }).catch(() => undefined);
    v.pc.close();
  }
}

const [mode, url, ...rest] = process.argv.slice(2);
try {
  if (mode === 'publish') await publish(url!, rest[0]!, Number(rest[1] ?? 10));
  else if (mode === 'play') await play(url!, Number(rest[0] ?? 1), Number(rest[1] ?? 5), rest[2]);
  else throw new Error('usage: wrtc.ts publish <url> <token> [seconds] | play <url> [viewers] [seconds] [token]');
  emit('done');
} catch (error) {
  emit('error', { message: (error as Error).message });
  process.exitCode = 1;
}
// libwebrtc's threads can keep the process alive (or crash it) on teardown; we are done.
process.exit();
