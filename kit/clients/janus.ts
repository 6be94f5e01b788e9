/**
 * A viewer of a Janus streaming mountpoint, signalled over Janus's HTTP API as janus.js does
 * without WebSockets: a session, a handle on janus.plugin.streaming, `watch` (Janus makes the
 * offer, which arrives on the session's long poll), the answer sent with `start`. While it plays,
 * the long poll goes on and a keepalive keeps the session; `destroy` ends it. Receive-only as the
 * WHEP viewers are (sdp.ts receiveOnlyServerOffer): what the benchmark compares is the server's
 * work per viewer. The requests are those of Janus's REST API documentation and of its streaming
 * plugin's (`watch`, `start`, `info`).
 */
import { randomBytes } from 'node:crypto';
import wrtc from '@roamhq/wrtc';
import { sleep } from '../stats.ts';
import type { Answer } from './negotiate.ts';
import { receiveOnlyServerOffer } from './sdp.ts';
import type { Viewer } from './viewer.ts';

const { RTCPeerConnection } = wrtc as any;

/** A session unheard from for Janus's session_timeout (60 s by default) is closed: janus.js sends a keepalive every 25 s. */
const KEEPALIVE_MS = 25_000;
/** How long Janus may take to send its offer after `watch`, and to say `starting` after `start`. */
const EVENT_TIMEOUT_MS = 20_000;
/** How long ICE gathering may take before the answer goes with the candidates gathered so far (no trickle). */
const GATHERING_MS = 3000;
/** Events a long poll may bring at once (`maxev`). */
const MAX_EVENTS = 10;
/** Events kept for a later event() call: the few of a join; later ones (media, webrtcup) are only dropped. */
const KEPT_EVENTS = 50;

interface JanusMessage {
  janus: string;
  data?: { id: number };
  error?: { code: number; reason: string };
  jsep?: { type: string; sdp: string };
  plugindata?: { data?: { result?: { status?: string }; error?: string } };
}

/** One Janus session and its events, as they come from the long poll. */
class JanusSession {
  readonly url: string;
  private events: JanusMessage[] = [];
  private waiters: Array<{ test: (m: JanusMessage) => boolean; resolve: (m: JanusMessage) => void }> = [];
  private readonly polling = new AbortController();
  private readonly keepalive: NodeJS.Timeout;

  private constructor(url: string) {
    this.url = url;
    void this.poll();
    this.keepalive = setInterval(() => void request(this.url, { janus: 'keepalive' }).catch(() => undefined), KEEPALIVE_MS);
  }

  static async create(base: string): Promise<JanusSession> {
    const created = await request(base, { janus: 'create' });
    return new JanusSession(`${base}/${created.data!.id}`);
  }

  /** The first event (already come or yet to come) that passes `test`, within EVENT_TIMEOUT_MS. */
  event(test: (m: JanusMessage) => boolean, what: string): Promise<JanusMessage> {
    const seen = this.events.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        test,
        resolve: (m: JanusMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`Janus sent no ${what} within ${EVENT_TIMEOUT_MS} ms`));
      }, EVENT_TIMEOUT_MS);
      this.waiters.push(waiter);
    });
  }

  async destroy(): Promise<void> {
    this.polling.abort();
    clearInterval(this.keepalive);
    await request(this.url, { janus: 'destroy' }).catch(() => undefined);
  }

  private async poll(): Promise<void> {
    while (!this.polling.signal.aborted) {
      try {
        const res = await fetch(`${this.url}?maxev=${MAX_EVENTS}`, { signal: this.polling.signal });
        const body = (await res.json()) as JanusMessage | JanusMessage[];
        for (const m of Array.isArray(body) ? body : [body]) this.dispatch(m);
      } catch {
        if (!this.polling.signal.aborted) await sleep(500);
      }
    }
  }

  private dispatch(m: JanusMessage): void {
    if (m.janus === 'keepalive') return;
    this.events.push(m);
    if (this.events.length > KEPT_EVENTS) this.events.shift();
    for (const w of this.waiters.filter((w) => w.test(m))) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(m);
    }
  }
}

/** A Janus API request (a transaction of its own): its reply and HTTP status; a Janus `error` reply throws. */
async function request(url: string, body: Record<string, unknown>): Promise<JanusMessage & { status: number; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, transaction: randomBytes(6).toString('hex') }) });
  const text = await res.text();
  const reply = JSON.parse(text) as JanusMessage;
  if (reply.janus === 'error') throw new Error(`Janus: ${reply.error?.reason ?? text}`);
  return { ...reply, status: res.status, text };
}

/**
 * Makes a receive-only viewer of mountpoint `mountpoint` of the Janus at `url` (its HTTP API's base
 * path) and sends its answer; throws if Janus refuses any step. Its `answer`: the `start` request's
 * status and reply, timed from `watch` to Janus's offer. Whether it connects is the caller's to
 * wait for, as with openViewer().
 */
export async function openJanusViewer(url: string, mountpoint: number): Promise<Viewer> {
  const session = await JanusSession.create(url);
  let pc: any;
  try {
    const handle = await request(session.url, { janus: 'attach', plugin: 'janus.plugin.streaming' });
    const handleUrl = `${session.url}/${handle.data!.id}`;
    const postedAt = performance.now();
    const offered = session.event((m) => m.jsep?.type === 'offer', 'offer');
    await request(handleUrl, { janus: 'message', body: { request: 'watch', id: mountpoint } });
    const { jsep } = await offered;
    const answeredAt = performance.now();
    pc = new RTCPeerConnection();
    const munged = receiveOnlyServerOffer(jsep!.sdp);
    await pc.setRemoteDescription({ type: 'offer', sdp: munged.offer });
    await pc.setLocalDescription(await pc.createAnswer());
    // No trickle: Janus gets our candidates in the answer, as janus.js sends them when trickle is off.
    const gathering = Date.now() + GATHERING_MS;
    while (pc.iceGatheringState !== 'complete' && Date.now() < gathering) await sleep(20);
    const starting = session.event((m) => ['starting', 'started'].includes(m.plugindata?.data?.result?.status ?? ''), '"starting"');
    const started = await request(handleUrl, { janus: 'message', body: { request: 'start' }, jsep: { type: 'answer', sdp: munged.answer(pc.localDescription.sdp) } });
    await starting;
    const answer: Answer = { status: started.status, location: null, body: started.text, postedAt, answeredAt };
    return {
      pc,
      answer,
      async close() {
        await session.destroy();
        pc.close();
      },
    };
  } catch (error) {
    pc?.close();
    await session.destroy();
    throw error;
  }
}
