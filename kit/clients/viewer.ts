/**
 * One WHEP viewer of the libwebrtc client: its PeerConnection (audio unless video only, video),
 * what it does with decoded frames, and its leaving. play.ts and view.ts make them.
 */
import wrtc from '@roamhq/wrtc';
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
  /** Times its way to the first frame (phases.ts): Viewer.phases. */
  phases?: boolean;
  /**
   * Each decoded frame, through a video sink. Without it no frame reaches JavaScript (libwebrtc
   * still receives, depacketizes and decodes every frame).
   */
  onFrame?: (frame: Frame) => void;
}

export interface Viewer {
  pc: any;
  /** The WHEP answer (whatever its status). */
  answer: Answer;
  /** Its phases to the first frame, when asked for (ViewerOptions.phases). */
  phases?: Phases;
  /** Stops its sink, DELETEs its session (if the edge made one) and closes its PeerConnection. */
  close(): Promise<void>;
}

/** Makes a viewer of `url` and POSTs its offer; whether it was answered 201 is the caller's to check. */
export async function openViewer(url: string, options: ViewerOptions = {}): Promise<Viewer> {
  const pc = new RTCPeerConnection();
  if (!options.videoOnly) pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  // Before the offer: its ICE and DTLS state changes are watched from the start.
  const phases = options.phases ? new Phases(pc, options.receiveOnly || options.h264) : undefined;
  let sink: any;
  if (options.onFrame || (phases && !phases.receiveOnly)) {
    const onFrame = options.onFrame;
    pc.ontrack = (event: any) => {
      if (event.track.kind !== 'video') return;
      sink = new nonstandard.RTCVideoSink(event.track);
      sink.onframe = ({ frame }: { frame: Frame }) => {
        phases?.frame();
        onFrame?.(frame);
      };
    };
  }
  let answer: Answer;
  try {
    answer = await negotiate(pc, url, { receiving: true, token: options.token, receiveOnly: options.receiveOnly || options.h264, h264: options.h264 });
  } catch (error) {
    pc.close();
    throw error;
  }
  phases?.answered(answer);
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
