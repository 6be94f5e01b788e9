/**
 * `publish`: one synthetic source (source.ts) sent over WHIP to every target, each over its own
 * PeerConnection, for `seconds` or until told to stop.
 *
 * Lines, per target i: `answer` ({"target": i, "status": …, "location": …}), `connected`
 * ({"target": i, "url": …, "ms": …}), and `ended` if its connection fails or closes; `ready` once
 * every target is connected. stdin: `stats` (→ `stats`, {"targets": [outbound video counters]}),
 * `stop`. When done (seconds over, `stop`, or stdin closed) it DELETEs its sessions.
 */
import wrtc from '@roamhq/wrtc';
import { commands, elapsed, emit } from './lines.ts';
import { negotiate, reportAnswer, reportConnection, waitConnected } from './negotiate.ts';
import { outboundVideo } from './report.ts';
import { startSource } from './source.ts';

const { RTCPeerConnection } = wrtc as any;

export interface PublishOptions {
  targets: string[];
  /** One token per target, or one for all. */
  tokens: string[];
  /** The video encoder's cap (maxBitrate). */
  kbps: number;
  width: number;
  height: number;
  fps: number;
  seconds: number;
}

export async function publish(options: PublishOptions): Promise<void> {
  const source = startSource(options);
  const peers: Array<{ pc: any; location: string | null; token: string }> = [];
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      for (const p of peers) {
        if (p.location) await fetch(p.location, { method: 'DELETE', headers: p.token ? { authorization: `Bearer ${p.token}` } : {} }).catch(() => undefined);
        p.pc.close();
      }
      source.stop();
      finished();
    })());

  try {
    for (const [i, url] of options.targets.entries()) {
      const pc = new RTCPeerConnection();
      pc.addTransceiver(source.audioTrack, { direction: 'sendonly' });
      const { sender } = pc.addTransceiver(source.videoTrack, { direction: 'sendonly' });
      const token = options.tokens[i] ?? options.tokens[0] ?? '';
      const peer = { pc, location: null as string | null, token };
      peers.push(peer);
      const answer = await negotiate(pc, url, { receiving: false, token: token || undefined });
      reportAnswer(answer, { target: i });
      if (answer.status !== 201) throw new Error(`${url} answered ${answer.status}: ${answer.body.slice(0, 300)}`);
      peer.location = answer.location;
      try {
        const parameters = sender.getParameters();
        for (const encoding of parameters.encodings ?? []) encoding.maxBitrate = options.kbps * 1000;
        await sender.setParameters(parameters);
      } catch (error) {
        emit('warning', { message: `setParameters: ${(error as Error).message}` });
      }
      await waitConnected(pc);
      reportConnection(pc, { target: i }, { connected: false });
      emit('connected', { target: i, url, ms: elapsed() });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  emit('ready');

  const timer = setTimeout(() => void stop(), options.seconds * 1000);
  commands(async ([command]) => {
    if (command === 'stop') await stop();
    if (command === 'stats') emit('stats', { targets: await Promise.all(peers.map((p) => outboundVideo(p.pc))) });
  }, stop);
  await done;
  clearTimeout(timer);
}
