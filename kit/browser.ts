import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { waitFor } from './processes.ts';

/**
 * Real Chromium (Debian's), headless, with a fake camera and microphone, for the tests and the RTMP
 * benchmark (bench/rtmp.ts). Pages run WHIP and WHEP the way a browser client does:
 * RTCPeerConnection, fetch, and the stats a user would look at. The scripts below run as well in
 * Firefox's pages (kit/firefox.ts): they take any ScriptPage.
 */

/**
 * A page the scripts below run in: what a playwright Page (Chromium) and a puppeteer Page
 * (Firefox) both are. Each script is one function run in the page with one argument; the
 * function's parameter is annotated, and that is what the argument is checked against.
 * (`(arg: A) => R` with a free A would not do: puppeteer types the parameter as its
 * FlattenHandle<A>, which a generic A is not.)
 */
export interface ScriptPage {
  evaluate<F extends (arg: any) => unknown>(fn: F, ...arg: Parameters<F>): Promise<Awaited<ReturnType<F>>>;
}

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

export class TestBrowser {
  readonly #browser: Browser;
  readonly #context: BrowserContext;
  readonly #profile: string;

  private constructor(browser: Browser, context: BrowserContext, profile: string) {
    this.#browser = browser;
    this.#context = context;
    this.#profile = profile;
  }

  /**
   * `netns`: run Chromium inside that network namespace (kit/netns.ts), through a wrapper that
   * `ip netns exec`s it (which keeps the pipes Playwright talks over). `secureOrigins`: http
   * origins to treat as secure (getUserMedia needs a secure context; only loopback is one).
   * `args`: more Chromium flags (e.g. --ignore-certificate-errors-spki-list for a test CA).
   */
  static async launch(options: { netns?: string; secureOrigins?: string[]; args?: string[] } = {}): Promise<TestBrowser> {
    const profile = mkdtempSync(join(tmpdir(), 'relaycast-chromium-'));
    const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
    let executablePath = chromiumPath;
    if (options.netns) {
      executablePath = join(profile, 'chromium-in-netns');
      writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec '${options.netns}' '${chromiumPath}' "$@"\n`, { mode: 0o755 });
    }
    const args = [...ARGS];
    if (options.secureOrigins?.length) args.push(`--unsafely-treat-insecure-origin-as-secure=${options.secureOrigins.join(',')}`);
    args.push(...(options.args ?? []));
    const context = await chromium.launchPersistentContext(join(profile, 'user-data'), { executablePath, args, headless: true });
    return new TestBrowser(context.browser()!, context, profile);
  }

  /** A blank page on `baseUrl` (any page of the node; the scripts below talk WHIP/WHEP from it). */
  async page(baseUrl: string): Promise<Page> {
    const page = await this.#context.newPage();
    await page.goto(`${baseUrl}/healthz`);
    return page;
  }

  async close(): Promise<void> {
    await this.#context.close().catch(() => undefined);
    await this.#browser?.close().catch(() => undefined);
    rmSync(this.#profile, { recursive: true, force: true });
  }
}

export interface PublishResult {
  status: number;
  location: string | null;
  body: string;
}

/**
 * Publishes the fake camera and microphone over WHIP, preferring `videoCodec` (e.g. 'video/H264'),
 * in the given H.264 profiles only when `h264Profiles` is set; without `videoCodec`, in the
 * browser's own order of codecs.
 */
export async function publish(page: ScriptPage, url: string, token: string, videoCodec?: string, h264Profiles?: string[]): Promise<PublishResult> {
  return page.evaluate(
    async ({ url, token, videoCodec, h264Profiles }: { url: string; token: string; videoCodec?: string; h264Profiles?: string[] }) => {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      const pc = new RTCPeerConnection();
      (window as any).publisher = pc;
      for (const track of media.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: 'sendonly' });
        if (track.kind === 'video' && videoCodec) {
          const codecs = RTCRtpSender.getCapabilities('video')!.codecs;
          transceiver.setCodecPreferences([
            ...codecs.filter(
              (c) => c.mimeType === videoCodec && (!h264Profiles || h264Profiles.includes(/profile-level-id=([0-9a-fA-F]{6})/.exec(c.sdpFmtpLine ?? '')?.[1] ?? '')),
            ),
            ...codecs.filter((c) => c.mimeType === 'video/rtx'),
          ]);
        }
      }
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
        body: pc.localDescription!.sdp,
      });
      const body = await res.text();
      if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
      (window as any).publisherLocation = res.headers.get('location');
      return { status: res.status, location: res.headers.get('location'), body };
    },
    { url, token, videoCodec, h264Profiles },
  );
}

/**
 * Layers a simulcast publisher sends, lowest first. Chromium sends three layers from a 960x540
 * picture up (two below that: its simulcast table in media/engine/simulcast.cc), so the default
 * capture is 960x540: 240x135 at 150 kbit/s, 480x270 at 500, 960x540 at 1,200. A layer without a
 * scale or bitrate gets the browser's own (Firefox 153 scales three layers by 4, 2 and 1); every
 * layer needs its rid.
 */
export interface SimulcastOptions {
  width?: number;
  height?: number;
  layers?: Array<{ rid: string; scaleResolutionDownBy?: number; maxBitrate?: number }>;
}

const SIMULCAST_LAYERS: NonNullable<SimulcastOptions['layers']> = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
];

/** Publishes the fake camera over WHIP in simulcast (see SimulcastOptions); returns the response and the offer. */
export async function publishSimulcast(page: ScriptPage, url: string, token: string, options: SimulcastOptions = {}): Promise<PublishResult & { offer: string }> {
  const { width = 960, height = 540, layers = SIMULCAST_LAYERS } = options;
  return page.evaluate(
    async ({ url, token, width, height, layers }: { url: string; token: string; width: number; height: number; layers: RTCRtpEncodingParameters[] }) => {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width, height } });
      const pc = new RTCPeerConnection();
      (window as any).publisher = pc;
      pc.addTransceiver(media.getAudioTracks()[0]!, { direction: 'sendonly' });
      pc.addTransceiver(media.getVideoTracks()[0]!, { direction: 'sendonly', sendEncodings: layers });
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` }, body: pc.localDescription!.sdp });
      const body = await res.text();
      if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
      (window as any).publisherLocation = res.headers.get('location');
      return { status: res.status, location: res.headers.get('location'), body, offer: pc.localDescription!.sdp };
    },
    { url, token, width, height, layers },
  );
}

/** Frames the publisher has sent per simulcast layer (outbound-rtp by rid). */
export async function framesSentByRid(page: ScriptPage): Promise<Record<string, number>> {
  return page.evaluate(async () => {
    const out: Record<string, number> = {};
    (await ((window as any).publisher as RTCPeerConnection).getStats()).forEach((s: any) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = s.framesSent ?? 0;
    });
    return out;
  });
}

/**
 * Waits (bounded) until the simulcast publisher sends at least `count` layers; returns the frames
 * sent per layer. Chromium turns a layer on once its bandwidth estimate has room for it, so this
 * is a wait, not a figure.
 */
export async function layersSending(page: ScriptPage, count: number, timeoutMs = 60_000): Promise<Record<string, number>> {
  let sent: Record<string, number> = {};
  await waitFor(`the publisher sending ${count} layers`, async () => {
    sent = await framesSentByRid(page);
    return Object.values(sent).filter((n) => n > 0).length >= count;
  }, timeoutMs, 500).catch((error: Error) => {
    throw new Error(`${error.message}; frames sent by layer: ${JSON.stringify(sent)}`, { cause: error });
  });
  return sent;
}

/**
 * Video a viewer offers to receive, when not all this Chromium can (setCodecPreferences): H.264 in
 * the given profiles (packetization-mode 1), and the other codecs named by MIME type.
 * `{ h264Profiles: ['42e01f'] }` offers what Firefox with OpenH264 offers of H.264;
 * `{ codecs: ['video/VP8'] }` what a browser without H.264 offers at least.
 */
export interface ReceiveOnly {
  h264Profiles?: string[];
  codecs?: string[];
}

/**
 * Plays over WHEP into a <video> element; returns the response as publish() does. With
 * `counterOffer`, the POST says `Prefer: counter-offer` and a 406 with the edge's offer is
 * answered as the web player does (a fresh RTCPeerConnection, the answer PATCHed); the result is
 * then the 406's, with the PATCH's status in `patchStatus`.
 */
export async function play(page: ScriptPage, url: string, token?: string, only?: ReceiveOnly, options: { counterOffer?: boolean } = {}): Promise<PublishResult & { patchStatus?: number }> {
  return page.evaluate(
    async ({ url, token, only, counterOffer }: { url: string; token?: string; only?: ReceiveOnly; counterOffer: boolean }) => {
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      document.body.appendChild(video);
      (window as any).video = video;
      const stream = new MediaStream();
      // (No named helpers in here: tsx would wrap them in a __name() the page does not have.)
      let pc = new RTCPeerConnection();
      (window as any).viewer = pc;
      pc.ontrack = (event) => {
        if (event.transceiver.mid === 'probator') return;
        stream.addTrack(event.track);
        video.srcObject = stream;
      };
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const transceiver = pc.addTransceiver('video', { direction: 'recvonly' });
      if (only) {
        const codecs = RTCRtpReceiver.getCapabilities('video')!.codecs;
        transceiver.setCodecPreferences([
          ...codecs.filter((c) =>
            c.mimeType === 'video/H264'
              ? /packetization-mode=1/.test(c.sdpFmtpLine ?? '') && (only.h264Profiles ?? []).includes(/profile-level-id=([0-9a-fA-F]{6})/.exec(c.sdpFmtpLine ?? '')?.[1] ?? '')
              : (only.codecs ?? []).includes(c.mimeType),
          ),
          ...codecs.filter((c) => c.mimeType === 'video/rtx'),
        ]);
      }
      await pc.setLocalDescription(await pc.createOffer());
      const headers: Record<string, string> = { 'content-type': 'application/sdp' };
      if (token) headers.authorization = `Bearer ${token}`;
      if (counterOffer) headers.prefer = 'counter-offer';
      // When the WHEP POST went out: where a user's wait for the picture starts (firstFrameMs()).
      (window as any).viewerPostedAt = performance.now();
      const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription!.sdp });
      const body = await res.text();
      const location = res.headers.get('location');
      let patchStatus: number | undefined;
      if (res.status === 201) {
        await pc.setRemoteDescription({ type: 'answer', sdp: body });
      } else if (res.status === 406 && location && /^application\/sdp/.test(res.headers.get('content-type') ?? '')) {
        const first = pc;
        first.close();
        pc = new RTCPeerConnection();
        (window as any).viewer = pc;
        pc.ontrack = first.ontrack;
        await pc.setRemoteDescription({ type: 'offer', sdp: body });
        await pc.setLocalDescription(await pc.createAnswer());
        const patchHeaders: Record<string, string> = { 'content-type': 'application/sdp', 'if-match': res.headers.get('etag') ?? '*' };
        if (token) patchHeaders.authorization = `Bearer ${token}`;
        patchStatus = (await fetch(new URL(location, res.url), { method: 'PATCH', headers: patchHeaders, body: pc.localDescription!.sdp })).status;
      }
      (window as any).viewerLocation = location;
      (window as any).viewerLinks = res.headers.get('link');
      return { status: res.status, location, body, patchStatus };
    },
    { url, token, only, counterOffer: options.counterOffer ?? false },
  );
}

export interface PlaybackStats {
  connectionState: string;
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  videoWidth: number;
  audioPacketsReceived: number;
  videoCodec: string | undefined;
  /** Video freezes as Chromium counts them (a frame late by max(3 × the mean gap, mean + 150 ms)), and their total in seconds. */
  freezeCount: number;
  totalFreezesDuration: number;
  /** Video packets lost (after retransmissions), received, and NACKs sent. */
  packetsLost: number;
  packetsReceived: number;
  nackCount: number;
  /** Video bytes received (RTP payload and headers), for a bitrate over an interval. */
  bytesReceived: number;
  /** Video interarrival jitter, in seconds (RFC 3550). */
  jitter: number;
}

/** What the viewer page sees: decoded frames, the picture size, freezes, losses, audio packets. */
export async function playbackStats(page: ScriptPage): Promise<PlaybackStats> {
  return page.evaluate(async () => {
    const pc = (window as any).viewer as RTCPeerConnection;
    const stats = await pc.getStats();
    const out = {
      connectionState: pc.connectionState,
      framesDecoded: 0,
      frameWidth: 0,
      frameHeight: 0,
      videoWidth: ((window as any).video as HTMLVideoElement).videoWidth,
      audioPacketsReceived: 0,
      videoCodec: undefined as string | undefined,
      freezeCount: 0,
      totalFreezesDuration: 0,
      packetsLost: 0,
      packetsReceived: 0,
      nackCount: 0,
      bytesReceived: 0,
      jitter: 0,
    };
    let codecId: string | undefined;
    const codecs = new Map<string, string>();
    stats.forEach((s: any) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.mid !== 'probator') {
        out.framesDecoded = s.framesDecoded ?? 0;
        out.frameWidth = s.frameWidth ?? 0;
        out.frameHeight = s.frameHeight ?? 0;
        out.freezeCount = s.freezeCount ?? 0;
        out.totalFreezesDuration = s.totalFreezesDuration ?? 0;
        out.packetsLost = s.packetsLost ?? 0;
        out.packetsReceived = s.packetsReceived ?? 0;
        out.nackCount = s.nackCount ?? 0;
        out.bytesReceived = s.bytesReceived ?? 0;
        out.jitter = s.jitter ?? 0;
        codecId = s.codecId;
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPacketsReceived = s.packetsReceived ?? 0;
    });
    out.videoCodec = codecId ? codecs.get(codecId) : undefined;
    return out;
  });
}

/** Fine enough for a time to first frame that takes hundreds of milliseconds, light on the page. */
const FIRST_FRAME_POLL_MS = 20;

/**
 * Milliseconds from a play()'s WHEP POST to its first decoded video frame, both read in the page
 * (getStats every FIRST_FRAME_POLL_MS, so the figure is that coarse); throws after `timeoutMs`.
 */
export async function firstFrameMs(page: ScriptPage, timeoutMs: number): Promise<number> {
  const ms = await page.evaluate(
    async ({ timeoutMs, pollMs }: { timeoutMs: number; pollMs: number }) => {
      const w = window as any;
      const pc = w.viewer as RTCPeerConnection;
      while (performance.now() - w.viewerPostedAt < timeoutMs) {
        let decoded = 0;
        (await pc.getStats()).forEach((s: any) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video' && s.mid !== 'probator') decoded = s.framesDecoded ?? 0;
        });
        if (decoded > 0) return performance.now() - w.viewerPostedAt;
        await new Promise((r) => setTimeout(r, pollMs));
      }
      return undefined;
    },
    { timeoutMs, pollMs: FIRST_FRAME_POLL_MS },
  );
  if (ms === undefined) throw new Error(`no video frame decoded within ${timeoutMs} ms of the WHEP POST; ${JSON.stringify(await playbackStats(page))}`);
  return Math.round(ms);
}

/** The viewer's ICE candidate pair in use, as getStats describes it (the pair a user would look up in webrtc-internals). */
export interface SelectedCandidatePair {
  /** 'udp' or 'tcp', of the viewer's own candidate and of the server's. */
  localProtocol: string;
  remoteProtocol: string;
  /** 'host', 'srflx', 'prflx' or 'relay'. */
  localCandidateType: string;
  remoteCandidateType: string;
  /** The server's address and port on that pair. */
  remoteAddress: string;
}

/**
 * The play() connection's selected candidate pair: its transport's `selectedCandidatePairId`, and
 * that pair's local and remote candidates. Undefined while ICE has selected none.
 */
export async function selectedCandidatePair(page: ScriptPage): Promise<SelectedCandidatePair | undefined> {
  return page.evaluate(async () => {
    const stats = await ((window as any).viewer as RTCPeerConnection).getStats();
    let pairId: string | undefined;
    stats.forEach((s: any) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    const pair = pairId ? stats.get(pairId) : undefined;
    const local = pair ? stats.get(pair.localCandidateId) : undefined;
    const remote = pair ? stats.get(pair.remoteCandidateId) : undefined;
    if (!local || !remote) return undefined;
    return {
      localProtocol: local.protocol,
      remoteProtocol: remote.protocol,
      localCandidateType: local.candidateType,
      remoteCandidateType: remote.candidateType,
      remoteAddress: `${remote.address}:${remote.port}`,
    };
  });
}

/** Ends a play() session on the edge (DELETE, so the edge does not wait for it to time out) and closes its peer connection; best effort. */
export async function stopViewing(page: ScriptPage): Promise<void> {
  await page
    .evaluate(async () => {
      const location = (window as any).viewerLocation as string | null;
      if (location) await fetch(location, { method: 'DELETE' }).catch(() => undefined);
      ((window as any).viewer as RTCPeerConnection | undefined)?.close();
    })
    .catch(() => undefined);
}

/**
 * The viewer's WHEP extension URLs, from the Link header of its 201 (play()): the layer-selection
 * and server-sent-events URLs, by relation.
 */
export async function viewerExtensions(page: ScriptPage): Promise<Record<string, string>> {
  const header = await page.evaluate(() => (window as any).viewerLinks as string | null);
  const out: Record<string, string> = {};
  for (const link of header?.split(/,\s*(?=<)/) ?? []) {
    const url = /^<([^>]+)>/.exec(link)?.[1];
    const rel = /;\s*rel="([^"]+)"/.exec(link)?.[1];
    if (url && rel) out[rel] = url;
  }
  return out;
}

/** POSTs a layer choice to the viewer's layer-selection URL (the WHEP layer extension); the status. */
export async function selectLayer(page: ScriptPage, url: string, choice: Record<string, unknown>): Promise<{ status: number; body: string }> {
  return page.evaluate(
    async ({ url, choice }: { url: string; choice: Record<string, unknown> }) => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(choice) });
      return { status: res.status, body: await res.text() };
    },
    { url, choice },
  );
}

/**
 * Opens an event stream (the WHEP server-sent-events extension) for `events` and listens with an
 * EventSource; every event received is kept in the page (see receivedEvents()).
 */
export async function openEvents(page: ScriptPage, url: string, events: string[]): Promise<{ status: number; location: string | null }> {
  return page.evaluate(
    async ({ url, events }: { url: string; events: string[] }) => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(events) });
      const location = res.headers.get('location');
      const received: Array<{ event: string; data: unknown; at: number }> = [];
      (window as any).receivedEvents = received;
      if (res.status === 201 && location) {
        const source = new EventSource(location);
        (window as any).eventSource = source;
        for (const name of events) source.addEventListener(name, (e) => received.push({ event: name, data: JSON.parse((e as MessageEvent).data), at: Date.now() }));
      }
      return { status: res.status, location };
    },
    { url, events },
  );
}

/** The events the page's EventSource received so far (openEvents()). */
export async function receivedEvents(page: ScriptPage): Promise<Array<{ event: string; data: any; at: number }>> {
  return page.evaluate(() => ((window as any).receivedEvents ?? []) as Array<{ event: string; data: any; at: number }>);
}

export async function connectionState(page: ScriptPage, which: 'viewer' | 'publisher'): Promise<string> {
  return page.evaluate((which: 'viewer' | 'publisher') => ((window as any)[which] as RTCPeerConnection).connectionState, which);
}

/**
 * Stops a publish() of this page: DELETEs its WHIP session, then closes its RTCPeerConnection
 * (in that order: once the connection closes, the origin may end the session by itself first).
 */
export async function stopPublishing(page: ScriptPage, token: string): Promise<number> {
  return page.evaluate(async (token: string) => {
    const location = (window as any).publisherLocation as string | null;
    const res = location ? await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }) : undefined;
    const pc = (window as any).publisher as RTCPeerConnection | undefined;
    for (const sender of pc?.getSenders() ?? []) sender.track?.stop();
    pc?.close();
    return res?.status ?? 0;
  }, token);
}

/** Saves a PNG of the page under test/artifacts/ (gitignored) and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = fileURLToPath(new URL('../test/artifacts/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/**
 * How a publishWithRetry() page notices that its origin is gone: what arrives from the origin on
 * the connection (RTCP receiver reports and feedback, STUN answers: the transport's bytesReceived,
 * and the round trips measured from receiver reports in remote-inbound-rtp) read every
 * LOSS_CHECK_MS; nothing for LOSS_MS is a lost origin. A mediasoup origin sends feedback on what
 * it receives many times a second (transport-wide congestion control) and receiver reports every
 * second or so; the page records the longest gap it saw while healthy (`publishMaxGapMs`).
 * Chromium's own connectionState says 'disconnected' only several seconds later.
 */
const LOSS_MS = 1000;
const LOSS_CHECK_MS = 200;

/**
 * Between two failed attempts (no origin, a refused POST): short, since a failover is what the
 * publisher is waiting out, and one attempt costs the balancer a route lookup.
 */
const RETRY_MS = 500;

/**
 * A WHIP publisher that keeps publishing, as a production publisher should: it asks the
 * balancer's route API for an origin, publishes there, and when the origin goes silent (nothing
 * from it for LOSS_MS), the connection fails, or a POST is refused, tries again — at once after a
 * loss, naming the lost origin to the route API (`lost=`, which has the balancer check it and,
 * when it is gone, release its streams), RETRY_MS after a refusal — forever, until the page
 * closes. `window.publishLog` records each attempt: `{ origin, status }`; `window.publishLosses`
 * each loss: `{ origin, why, at }` (Date.now()). Tried in Chromium only: Firefox 153's transport
 * stats carry no bytesReceived, one of the two things it watches.
 */
export async function publishWithRetry(page: ScriptPage, balancerUrl: string, stream: string, token: string): Promise<void> {
  await page.evaluate(
    async ({ balancerUrl, stream, token, LOSS_MS, LOSS_CHECK_MS, RETRY_MS }: { balancerUrl: string; stream: string; token: string; LOSS_MS: number; LOSS_CHECK_MS: number; RETRY_MS: number }) => {
      const w = window as any;
      w.publishLog = [] as Array<{ origin: string | null; status: number | string }>;
      w.publishLosses = [] as Array<{ origin: string | null; why: string; at: number }>;
      w.publishMaxGapMs = 0;
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      // Properties, not consts: tsx's keepNames would wrap a named arrow in a helper the page lacks.
      w.attempt = async (lost: string | null): Promise<void> => {
        let origin: string | null = null;
        try {
          const route = await (await fetch(`${balancerUrl}/v1/route?stream=${stream}&role=origin${lost ? `&lost=${encodeURIComponent(lost)}` : ''}`)).json();
          const choice = route.choices?.[0];
          if (!choice) throw new Error('no origin');
          origin = choice.node;
          const pc = new RTCPeerConnection();
          for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
          await pc.setLocalDescription(await pc.createOffer());
          const res = await fetch(`${choice.url}/whip/${stream}`, {
            method: 'POST',
            headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
            body: pc.localDescription!.sdp,
          });
          w.publishLog.push({ origin, status: res.status });
          if (res.status !== 201) {
            pc.close();
            throw new Error(`status ${res.status}`);
          }
          await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
          w.publisher = pc;
          // One object per connection, its functions as properties (see w.attempt).
          const c: any = { ended: false, received: -1, heardAt: 0, watch: undefined };
          c.end = (why: string) => {
            if (c.ended) return;
            c.ended = true;
            clearInterval(c.watch);
            pc.onconnectionstatechange = null;
            pc.close();
            w.publishLosses.push({ origin, why, at: Date.now() });
            void w.attempt(origin);
          };
          c.check = async () => {
            let now = 0;
            (await pc.getStats()).forEach((s: any) => {
              if (s.type === 'transport') now += s.bytesReceived ?? 0;
              if (s.type === 'remote-inbound-rtp') now += s.roundTripTimeMeasurements ?? 0;
            });
            if (c.ended) return;
            const at = performance.now();
            if (now !== c.received) {
              if (c.received >= 0) w.publishMaxGapMs = Math.max(w.publishMaxGapMs, at - c.heardAt);
              c.received = now;
              c.heardAt = at;
            } else if (c.received > 0 && at - c.heardAt >= LOSS_MS) {
              c.end(`nothing from the origin for ${Math.round(at - c.heardAt)} ms`);
            }
          };
          c.watch = setInterval(() => void c.check(), LOSS_CHECK_MS);
          pc.onconnectionstatechange = () => {
            if (pc.connectionState === 'failed' || pc.connectionState === 'closed') c.end(`connection ${pc.connectionState}`);
          };
        } catch (error) {
          if (!String(error).includes('status ')) w.publishLog.push({ origin, status: String(error) });
          setTimeout(() => void w.attempt(lost), RETRY_MS);
        }
      };
      await w.attempt(null);
    },
    { balancerUrl, stream, token, LOSS_MS, LOSS_CHECK_MS, RETRY_MS },
  );
}
