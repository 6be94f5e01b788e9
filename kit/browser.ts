import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * Real Chromium (Debian's), headless, with a fake camera and microphone, for the tests and the RTMP
 * benchmark (bench/rtmp.ts). Pages run WHIP and WHEP the way a browser client does:
 * RTCPeerConnection, fetch, and the stats a user would look at.
 */

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

  static async launch(): Promise<TestBrowser> {
    const profile = mkdtempSync(join(tmpdir(), 'relaycast-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ARGS,
      headless: true,
    });
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
 * in the given H.264 profiles only when `h264Profiles` is set.
 */
export async function publish(page: Page, url: string, token: string, videoCodec: string, h264Profiles?: string[]): Promise<PublishResult> {
  return page.evaluate(
    async ({ url, token, videoCodec, h264Profiles }) => {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      const pc = new RTCPeerConnection();
      (window as any).publisher = pc;
      for (const track of media.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: 'sendonly' });
        if (track.kind === 'video') {
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
 * Publishes over WHIP with simulcast: the camera at 640x360 sent as three layers (RFC 8853 rids
 * q, h, f at a quarter, half and full size, lowest first), VP8, as Chromium's sendEncodings do.
 */
export async function publishSimulcast(page: Page, url: string, token: string): Promise<PublishResult & { offer: string }> {
  return page.evaluate(
    async ({ url, token }) => {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      const pc = new RTCPeerConnection();
      (window as any).publisher = pc;
      pc.addTransceiver(media.getAudioTracks()[0]!, { direction: 'sendonly' });
      pc.addTransceiver(media.getVideoTracks()[0]!, {
        direction: 'sendonly',
        sendEncodings: [
          { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
          { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 400_000 },
          { rid: 'f', maxBitrate: 1_000_000 },
        ],
      });
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` }, body: pc.localDescription!.sdp });
      const body = await res.text();
      if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
      (window as any).publisherLocation = res.headers.get('location');
      return { status: res.status, location: res.headers.get('location'), body, offer: pc.localDescription!.sdp };
    },
    { url, token },
  );
}

/** Frames the publisher has sent per simulcast layer (outbound-rtp by rid). */
export async function framesSentByRid(page: Page): Promise<Record<string, number>> {
  return page.evaluate(async () => {
    const out: Record<string, number> = {};
    (await ((window as any).publisher as RTCPeerConnection).getStats()).forEach((s: any) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = s.framesSent ?? 0;
    });
    return out;
  });
}

/**
 * Video a viewer offers to receive, when not all this Chromium can: H.264 in the given profiles
 * only (packetization-mode 1), through setCodecPreferences. `['42e01f']` offers what Firefox offers.
 */
export interface ReceiveOnly {
  h264Profiles: string[];
}

/** Plays over WHEP into a <video> element; returns the response as publish() does. */
export async function play(page: Page, url: string, token?: string, only?: ReceiveOnly): Promise<PublishResult> {
  return page.evaluate(
    async ({ url, token, only }) => {
      const pc = new RTCPeerConnection();
      (window as any).viewer = pc;
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const transceiver = pc.addTransceiver('video', { direction: 'recvonly' });
      if (only) {
        // (No named helpers in here: tsx would wrap them in a __name() the page does not have.)
        const codecs = RTCRtpReceiver.getCapabilities('video')!.codecs;
        transceiver.setCodecPreferences([
          ...codecs.filter(
            (c) =>
              c.mimeType === 'video/H264' &&
              /packetization-mode=1/.test(c.sdpFmtpLine ?? '') &&
              only.h264Profiles.includes(/profile-level-id=([0-9a-fA-F]{6})/.exec(c.sdpFmtpLine ?? '')?.[1] ?? ''),
          ),
          ...codecs.filter((c) => c.mimeType === 'video/rtx'),
        ]);
      }
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      document.body.appendChild(video);
      (window as any).video = video;
      const stream = new MediaStream();
      pc.ontrack = (event) => {
        stream.addTrack(event.track);
        video.srcObject = stream;
      };
      await pc.setLocalDescription(await pc.createOffer());
      const headers: Record<string, string> = { 'content-type': 'application/sdp' };
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription!.sdp });
      const body = await res.text();
      if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
      (window as any).viewerLocation = res.headers.get('location');
      return { status: res.status, location: res.headers.get('location'), body };
    },
    { url, token, only },
  );
}

export interface PlaybackStats {
  connectionState: string;
  framesDecoded: number;
  frameWidth: number;
  videoWidth: number;
  audioPacketsReceived: number;
  videoCodec: string | undefined;
}

/** What the viewer page sees: decoded frames, the picture size, audio packets. */
export async function playbackStats(page: Page): Promise<PlaybackStats> {
  return page.evaluate(async () => {
    const pc = (window as any).viewer as RTCPeerConnection;
    const stats = await pc.getStats();
    let framesDecoded = 0;
    let frameWidth = 0;
    let audioPacketsReceived = 0;
    let codecId: string | undefined;
    const codecs = new Map<string, string>();
    stats.forEach((s: any) => {
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        framesDecoded = s.framesDecoded ?? 0;
        frameWidth = s.frameWidth ?? 0;
        codecId = s.codecId;
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') audioPacketsReceived = s.packetsReceived ?? 0;
    });
    return {
      connectionState: pc.connectionState,
      framesDecoded,
      frameWidth,
      videoWidth: ((window as any).video as HTMLVideoElement).videoWidth,
      audioPacketsReceived,
      videoCodec: codecId ? codecs.get(codecId) : undefined,
    };
  });
}

export async function connectionState(page: Page, which: 'viewer' | 'publisher'): Promise<string> {
  return page.evaluate((which) => ((window as any)[which] as RTCPeerConnection).connectionState, which);
}

/**
 * Stops a publish() of this page: DELETEs its WHIP session, then closes its RTCPeerConnection
 * (in that order: once the connection closes, the origin may end the session by itself first).
 */
export async function stopPublishing(page: Page, token: string): Promise<number> {
  return page.evaluate(async (token) => {
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
 * A WHIP publisher that keeps publishing, as a production publisher should: it asks the
 * balancer's route API for an origin, publishes there, and when the connection fails (the origin
 * died) or a POST is refused, tries again a second later — forever, until the page closes.
 * `window.publishLog` records each attempt: `{ origin, status }`.
 */
export async function publishWithRetry(page: Page, balancerUrl: string, stream: string, token: string): Promise<void> {
  await page.evaluate(
    async ({ balancerUrl, stream, token }) => {
      const w = window as any;
      w.publishLog = [] as Array<{ origin: string | null; status: number | string }>;
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      // A property, not a const: tsx's keepNames would wrap a named arrow in a helper the page lacks.
      w.attempt = async (): Promise<void> => {
        let origin: string | null = null;
        try {
          const route = await (await fetch(`${balancerUrl}/v1/route?stream=${stream}&role=origin`)).json();
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
          pc.onconnectionstatechange = () => {
            if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected' || pc.connectionState === 'closed') {
              pc.onconnectionstatechange = null;
              pc.close();
              setTimeout(() => void w.attempt(), 1000);
            }
          };
        } catch (error) {
          if (!String(error).includes('status ')) w.publishLog.push({ origin, status: String(error) });
          setTimeout(() => void w.attempt(), 1000);
        }
      };
      await w.attempt();
    },
    { balancerUrl, stream, token },
  );
}
