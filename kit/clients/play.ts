/**
 * `play`, what the tests use (kit/wrtc.ts playClient): a few viewers of one WHEP URL that play for
 * a while and report what they decoded.
 *
 * Viewers are made one after the other, each reporting its `answer`, `connected` and `first-frame`
 * ({"viewer": i, "ms": from its WHEP POST}). A viewer plays for `seconds`, and on (at most
 * EXTRA_PLAY_MS more) while a connected viewer has decoded fewer than ENOUGH_FRAMES: what a test
 * asserts about the frames then depends on the media arriving, not on how fast a loaded machine
 * decodes it. Then one `stats` line: {"viewers": [{frames, width, audioPackets, videoPackets,
 * framesDecoded, keyFramesDecoded, firstFrameMs, state, phases?}]}, and the viewers leave.
 *
 * With `phases`, each viewer times its way to the first frame (phases.ts) and reports it in a
 * `phases` line ({"viewer": i, answerMs, iceMs, dtlsMs, rtpMs, completeMs, frameMs, poll}) once
 * its first frame is in, and in `stats`. With `h264` the viewers are receive-only and offer H.264
 * (sdp.ts h264Offer): they decode nothing, their last phase is the first packet, and they do not
 * wait for frames. With `counterOffer` they take the edge's WHEP counter-offer (negotiate.ts): the
 * `answer` line then carries the PATCH's status as `counterOffer`.
 */
import { sleep } from '../stats.ts';
import { emit } from './lines.ts';
import { reportAnswer, reportConnection } from './negotiate.ts';
import { inbound } from './report.ts';
import { openViewer, type Viewer } from './viewer.ts';

/** A second of the publisher's video: plenty to show a stream decodes, not just its first frame. */
const ENOUGH_FRAMES = 30;
/** How long a viewer waits past its `seconds` for ENOUGH_FRAMES; kit/wrtc.ts kills it 30 s after `seconds`. */
const EXTRA_PLAY_MS = 20_000;
const POLL_MS = 100;

export interface PlayOptions {
  url: string;
  viewers: number;
  seconds: number;
  token?: string;
  /** Each viewer times its phases to the first frame (phases.ts). */
  phases?: boolean;
  /** Receive-only viewers offering H.264 (sdp.ts h264Offer): no frames. */
  h264?: boolean;
  /** Viewers take the edge's WHEP counter-offer (viewer.ts ViewerOptions.counterOffer). */
  counterOffer?: boolean;
}

interface Playing {
  viewer: Viewer;
  frames: number;
  width: number;
  /** From the WHEP POST to the first decoded frame (the sink's): what a person waits for. */
  firstFrameMs?: number;
}

export async function play(options: PlayOptions): Promise<void> {
  const list: Playing[] = [];
  for (let i = 0; i < options.viewers; i++) {
    const entry = { frames: 0, width: 0 } as Playing;
    entry.viewer = await openViewer(options.url, {
      token: options.token,
      h264: options.h264,
      counterOffer: options.counterOffer,
      phases: options.phases,
      onFrame: (frame) => {
        entry.frames++;
        entry.width = frame.width;
        // A frame needs ICE, DTLS and RTP after the answer: the viewer (and its POST's time) is known by then.
        if (entry.firstFrameMs === undefined && entry.viewer) {
          entry.firstFrameMs = Math.round(performance.now() - entry.viewer.answer.postedAt);
          emit('first-frame', { viewer: i, ms: entry.firstFrameMs });
        }
      },
    });
    reportAnswer(entry.viewer.answer, { viewer: i });
    reportConnection(entry.viewer.pc, { viewer: i });
    const phases = entry.viewer.phases;
    if (phases) void phases.done.then(() => emit('phases', { viewer: i, ...phases.times(), poll: phases.poll() }));
    list.push(entry);
  }
  await sleep(options.seconds * 1000);
  // Receive-only viewers decode nothing: there are no frames to wait for.
  const waitingOn = () => !options.h264 && list.some((v) => v.viewer.pc.connectionState === 'connected' && v.frames < ENOUGH_FRAMES);
  for (const until = Date.now() + EXTRA_PLAY_MS; waitingOn() && Date.now() < until; ) await sleep(POLL_MS);
  const stats = [];
  for (const v of list) {
    const { audio, video } = await inbound(v.viewer.pc);
    stats.push({
      frames: v.frames,
      width: v.width,
      audioPackets: audio.packetsReceived,
      videoPackets: video.packetsReceived,
      framesDecoded: video.framesDecoded,
      keyFramesDecoded: video.keyFramesDecoded,
      firstFrameMs: v.firstFrameMs ?? null,
      state: v.viewer.pc.connectionState,
      ...(v.viewer.phases ? { phases: v.viewer.phases.times() } : {}),
    });
  }
  emit('stats', { viewers: stats });
  for (const v of list) await v.viewer.close();
}
