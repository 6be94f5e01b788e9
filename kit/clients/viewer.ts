/**
 * One WHEP viewer of the libwebrtc client: its PeerConnection (audio unless video only, video),
 * what it does with decoded frames, and its leaving. play.ts and view.ts make them.
 */
import wrtc from '@roamhq/wrtc';
import { PROBE_MID } from '../../media/sdp.ts';
import { negotiate, type Answer } from './negotiate.ts';
import { Phases } from './phases.ts';

const { RTCPeerConnection, nonstandard } = wrtc as any;

/** A decoded I420 picture, as libwebrtc's video sink hands it over. */
export interface Frame {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface ViewerOptions {
  token?: string;
  /** No audio section (no A/V sync). */
  videoOnly?: boolean;
  /** Receives but never decodes (sdp.ts receiveOnlyOffer); no frame reaches onFrame. */
  receiveOnly?: boolean;
  /** Receive-only, offering the server H.264 rather than VP8 (sdp.ts h264Offer). */
  h264?: boolean;
  /**
   * Takes a WHEP counter-offer (negotiate.ts NegotiateOptions.counterOffer): the edge then
   * estimates its link from transport-cc feedback. Its PeerConnection is the one that answered.
   */
  counterOffer?: boolean;
  /** Times its way to the first frame (phases.ts): Viewer.phases. */
  phases?: boolean;
  /**
   * Each decoded frame, through a video sink. Without it no frame reaches JavaScript (libwebrtc
   * still receives, depacketizes and decodes every frame).
   */
  onFrame?: (frame: Frame) => void;
}

export interface Viewer {
  /** Its PeerConnection: the one that answered the counter-offer, if there was one. */
  pc: any;
  /** The WHEP answer (whatever its status). */
  answer: Answer;
  /** Its phases to the first frame, when asked for (ViewerOptions.phases). */
  phases?: Phases;
  /** Stops its sink, DELETEs its session (if the edge made one) and closes its PeerConnection. */
  close(): Promise<void>;
}

/**
 * Makes a viewer of `url` and POSTs its offer; whether the session was set up (negotiate.ts
 * accepted) is the caller's to check.
 */
export async function openViewer(url: string, options: ViewerOptions = {}): Promise<Viewer> {
  let phases: Phases | undefined;
  let sink: any;
  /** A PeerConnection with the viewer's handlers: the one that offers, and the one that answers a counter-offer. */
  const peer = () => {
    const pc = new RTCPeerConnection();
    // Before negotiating: its ICE and DTLS state changes are watched from the start.
    phases = options.phases ? new Phases(pc, options.receiveOnly || options.h264) : undefined;
    if (options.onFrame || (phases && !phases.receiveOnly)) {
      const onFrame = options.onFrame;
      const timed = phases;
      pc.ontrack = (event: any) => {
        if (event.track.kind !== 'video' || event.transceiver?.mid === PROBE_MID) return;
        sink = new nonstandard.RTCVideoSink(event.track);
        sink.onframe = ({ frame }: { frame: Frame }) => {
          timed?.frame();
          onFrame?.(frame);
        };
      };
    }
    return pc;
  };
  const offering = peer();
  if (!options.videoOnly) offering.addTransceiver('audio', { direction: 'recvonly' });
  offering.addTransceiver('video', { direction: 'recvonly' });
  let answer: Answer;
  try {
    answer = await negotiate(offering, url, {
      receiving: true,
      token: options.token,
      receiveOnly: options.receiveOnly || options.h264,
      h264: options.h264,
      counterOffer: options.counterOffer ? peer : undefined,
    });
  } catch (error) {
    offering.close();
    throw error;
  }
  phases?.answered(answer);
  const pc = answer.counterOffer?.pc ?? offering;
  return {
    pc,
    answer,
    phases,
    async close() {
      sink?.stop();
      if (answer.location) await fetch(answer.location, { method: 'DELETE' }).catch(() => undefined);
      pc.close();
    },
  };
}
