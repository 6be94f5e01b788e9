import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import * as sdpTransform from 'sdp-transform';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { getStream } from '../db/repositories/streams.ts';
import { TestBrowser, play, playbackStats, type PlaybackStats } from '../kit/browser.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { createNetns, netnsUnavailable, type NetNs } from '../kit/netns.ts';
import { issueCertificate, makeTestCa, type TestCa } from '../kit/tls.ts';

/**
 * Interop with GStreamer's WHIP client: Debian's `simple-whip-client` (binary `whip-client`,
 * webrtcbin + libnice) publishes a test pattern and a test tone to an origin process; an edge
 * process relays the stream; headless Chromium plays it over WHEP from the edge.
 *
 * libnice never uses loopback, so the client runs in a network namespace joined to the host by a
 * veth pair (test/helpers/netns.ts); the origin and the edge listen on and announce the host side
 * of that pair. On Debian 12 whip-client also needs test/helpers/hide-libsoup2.c preloaded (it
 * links libsoup 2 and libnice pulls in libsoup 3, whose self-check aborts the process).
 *
 * The offer it sends is recorded in test/fixtures/sdp/gstreamer-simple-whip-client-offer.sdp
 * (see README-gstreamer.md there); run with RECORD_GSTREAMER_OFFER=1 to record it again.
 *
 * The last test publishes over HTTPS, to a second origin whose certificate comes from a CA made at
 * run time. whip-client does not check certificates (its libsoup session has ssl-strict off), so
 * this shows its TLS talks to ours, not that it verifies anything: Chromium's tests do that.
 */

const SECRET = 'gstreamer-interop-secret-0123456789';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const SHIM_SOURCE = join(HERE, 'helpers', 'hide-libsoup2.c');
const FIXTURE = join(HERE, 'fixtures', 'sdp', 'gstreamer-simple-whip-client-offer.sdp');
const WHIP_CLIENT = 'whip-client'; // Debian's simple-whip-client package installs it under this name
const common = ['--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

// The pipelines of simple-whip-client's README (its documented example), with the picture size
// pinned so the viewer can check it, and an H.264 variant as a browser can decode it.
const AUDIO =
  'audiotestsrc is-live=true wave=red-noise ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay pt=100 ssrc=1 ! queue ! ' +
  'application/x-rtp,media=audio,encoding-name=OPUS,payload=100';
const RAW_VIDEO = 'videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! queue';
const VP8 = `${RAW_VIDEO} ! vp8enc deadline=1 ! rtpvp8pay pt=96 ssrc=2 ! queue ! application/x-rtp,media=video,encoding-name=VP8,payload=96`;
const H264 =
  `${RAW_VIDEO} ! x264enc tune=zerolatency speed-preset=ultrafast ! video/x-h264,profile=constrained-baseline ! ` +
  'rtph264pay pt=102 ssrc=2 config-interval=-1 aggregate-mode=zero-latency ! queue ! application/x-rtp,media=video,encoding-name=H264,payload=102';

/** `cc` the LD_PRELOAD shim into a temporary directory; returns the directory and the .so. */
function compileShim(): { dir: string; so: string } {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-gst-shim-'));
  const so = join(dir, 'hide-libsoup2.so');
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', so, SHIM_SOURCE, '-ldl'], { encoding: 'utf8', timeout: 60_000 });
  if (cc.error || cc.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`compiling ${SHIM_SOURCE} failed (needs gcc and libc6-dev): ${cc.error?.message ?? cc.stderr}`);
  }
  return { dir, so };
}

interface WhipClient {
  child: ChildProcess;
  output(): string;
  /** SIGINT (whip-client then DELETEs its session and exits), SIGKILL after 8 s. */
  stop(): Promise<void>;
}

function startWhipClient(netns: NetNs, shim: string, url: string, token: string, pipelines: { audio?: string; video?: string }): WhipClient {
  const args = ['-u', url, '-t', token, '-o', '-l', '5'];
  if (pipelines.audio) args.push('-A', pipelines.audio);
  if (pipelines.video) args.push('-V', pipelines.video);
  // `ip netns exec` execs the command, so this child is whip-client itself.
  // webrtcbin's warnings carry the reason it refuses an answer (whip-client does not print it).
  const env = { ...process.env, LD_PRELOAD: shim, GST_DEBUG: process.env.GST_DEBUG ?? 'webrtcbin:2', GST_DEBUG_NO_COLOR: '1' };
  const child = netns.run(WHIP_CLIENT, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = once(child, 'exit');
  return {
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** How long whip-client gets from its start to "PeerConnection connected" (it takes 1–3 s here). */
const CONNECT_TIMEOUT_MS = 25_000;

/**
 * Starts whip-client with start() and waits for its "PeerConnection connected". whip-client
 * (GStreamer 1.22) crashed by itself once in ~40 runs, right after taking our answer. A user would
 * start it again: so does this, once, after released() (the origin let the dead session go, its
 * connect timeout), and says so. Returns the connected client; stops it and throws if it does not
 * connect.
 */
async function startConnected(stream: string, start: () => WhipClient, released: () => Promise<void>): Promise<WhipClient> {
  let client = start();
  const connected = async () => {
    await waitFor(
      'whip-client: "PeerConnection connected"',
      () => client.child.exitCode !== null || client.child.signalCode !== null || client.output().includes('PeerConnection connected'),
      CONNECT_TIMEOUT_MS,
      100,
    ).catch((error) => {
      throw new Error(`${(error as Error).message}\n--- whip-client output ---\n${tail(client.output())}`, { cause: error });
    });
  };
  try {
    await connected();
    if (client.child.signalCode !== null && !client.output().includes('PeerConnection connected')) {
      console.log(`      ${stream}: whip-client died (${client.child.signalCode}) before connecting; starting it again`);
      await released();
      client = start();
      await connected();
    }
    assert.ok(client.output().includes('PeerConnection connected'), `whip-client exited (${client.child.exitCode ?? client.child.signalCode}):\n${tail(client.output())}`);
    return client;
  } catch (error) {
    await client.stop();
    throw error;
  }
}

/** The last part of whip-client's output, without the GLib criticals it prints at every teardown. */
function tail(output: string, lines = 60): string {
  return output
    .split('\n')
    .filter((l) => l.trim() && !/GLib(-GObject)?-CRITICAL/.test(l))
    .slice(-lines)
    .join('\n');
}


/** What matters of an offer for interop, without the per-run values (ufrag, fingerprint, ssrc names). */
function offerShape(sdp: string) {
  const parsed = sdpTransform.parse(sdp);
  return {
    groups: parsed.groups?.map((g) => `${g.type} ${g.mids}`),
    iceOptions: parsed.iceOptions,
    sessionFingerprint: Boolean(parsed.fingerprint),
    media: parsed.media.map((m) => ({
      type: m.type,
      port: m.port,
      protocol: m.protocol,
      mid: m.mid,
      direction: m.direction,
      codecs: m.rtp.map((r) => `${r.payload} ${r.codec}/${r.rate}${r.encoding ? `/${r.encoding}` : ''}`),
      fmtp: m.fmtp.map((f) => f.config.split(';').filter((p) => !p.startsWith('sprop-parameter-sets')).join(';')),
      bundleOnly: (m as { bundleOnly?: string }).bundleOnly === 'bundle-only',
      fingerprint: m.fingerprint?.type,
      setup: m.setup,
      iceCredentials: Boolean(m.iceUfrag && m.icePwd),
      candidates: m.candidates?.length ?? 0,
      rtcpMux: m.rtcpMux === 'rtcp-mux',
      ssrcs: [...new Set(m.ssrcs?.map((s) => s.id))],
    })),
  };
}

/** The viewer's inbound video counters, to tell "nothing arrived" from "nothing decodable arrived". */
async function inboundVideo(viewer: Page): Promise<Record<string, unknown>> {
  return viewer.evaluate(async () => {
    const out: Record<string, unknown> = {};
    (await ((window as any).viewer as RTCPeerConnection).getStats()).forEach((s: any) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
      for (const k of ['packetsReceived', 'bytesReceived', 'packetsLost', 'framesReceived', 'keyFramesDecoded', 'framesDropped', 'pliCount', 'firCount', 'nackCount']) out[k] = s[k];
    });
    return out;
  });
}

async function waitForPlayback(viewer: Page, what: string, withAudio: boolean): Promise<PlaybackStats> {
  let last: PlaybackStats | undefined;
  try {
    await waitFor(
      what,
      async () => {
        last = await playbackStats(viewer);
        return last.framesDecoded >= 1 && last.videoWidth > 0 && (!withAudio || last.audioPacketsReceived > 0);
      },
      25_000,
      250,
    );
  } catch (error) {
    const inbound = await inboundVideo(viewer).catch((e) => String(e));
    throw new Error(`${(error as Error).message}; last stats: ${JSON.stringify(last)}; inbound video: ${JSON.stringify(inbound)}`, { cause: error });
  }
  return last!;
}

describe('GStreamer simple-whip-client (webrtcbin + libnice) → origin → edge → Chromium', function () {
  this.timeout(120_000);
  let netns: NetNs | undefined;
  let shim: { dir: string; so: string } | undefined;
  let testDb: TestDatabase | undefined;
  let db: Database | undefined;
  let origin: RelaycastProcess | undefined;
  let edge: RelaycastProcess | undefined;
  let browser: TestBrowser | undefined;
  let capture: Server | undefined;
  /** The CA of the HTTPS origin's certificate (the HTTPS test). */
  let ca: TestCa | undefined;
  const clients: WhipClient[] = [];

  before(async function () {
    const reason = netnsUnavailable();
    if (reason) {
      console.log(`    skipped: ${reason}`);
      this.skip();
    }
    const which = spawnSync('sh', ['-c', `command -v ${WHIP_CLIENT}`], { encoding: 'utf8' });
    if (which.status !== 0) throw new Error(`${WHIP_CLIENT} not found: install Debian's simple-whip-client (bash scripts/setup.sh --test)`);
    shim = compileShim();
    netns = await createNetns();
    ca = makeTestCa(mkdtempSync(join(tmpdir(), 'relaycast-gst-ca-')));
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    // Reachable from the namespace: HTTP and media on the veth's host address, announced, and in
    // its session URLs.
    origin = await startRelaycast({
      roles: ['origin'],
      host: netns.hostIp,
      databaseUrl: testDb.url,
      env: { RELAYCAST_CLUSTER_SECRET: SECRET },
      args: ['--node-id', 'origin-gst', ...common],
    });
    edge = await startRelaycast({
      roles: ['edge'],
      databaseUrl: testDb.url,
      // It relays from the HTTPS origin too: it trusts the test CA.
      env: { RELAYCAST_CLUSTER_SECRET: SECRET, NODE_EXTRA_CA_CERTS: ca.certFile },
      // The same kind of address as the origin (a loopback-announced node relaying to or from a
      // veth-announced one does not carry media); Chromium on the host reaches it as well.
      args: ['--node-id', 'edge-gst', '--announced-ip', netns.hostIp, '--rtc-listen-ip', netns.hostIp, ...common],
    });
    browser = await TestBrowser.launch();
  });

  after(async () => {
    for (const client of clients) await client.stop().catch(() => undefined);
    if (capture) await new Promise((r) => capture!.close(r));
    await browser?.close();
    await edge?.stop();
    await origin?.stop();
    await db?.close();
    await testDb?.drop();
    await netns?.remove();
    if (shim) rmSync(shim.dir, { recursive: true, force: true });
    if (ca) rmSync(ca.dir, { recursive: true, force: true });
  });

  it('sends the offer recorded in the fixture: video, then audio as bundle-only (port 0), a fingerprint in each m-line', async () => {
    let offer: string | undefined;
    capture = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        if (req.method === 'POST') offer ??= body;
        res.writeHead(500, { 'content-type': 'text/plain' }).end('offer recorded; no session');
      });
    });
    capture.listen(0, netns!.hostIp);
    await once(capture, 'listening');
    const port = (capture.address() as { port: number }).port;
    const client = startWhipClient(netns!, shim!.so, `http://${netns!.hostIp}:${port}/whip/capture`, 'capture-token', { audio: AUDIO, video: VP8 });
    clients.push(client);
    try {
      await waitFor('whip-client to POST its offer', () => offer !== undefined || client.child.exitCode !== null, 20_000, 100);
      assert.ok(offer, `whip-client sent no offer:\n${tail(client.output())}`);
    } finally {
      await client.stop();
      await new Promise((r) => capture!.close(r));
      capture = undefined;
    }
    if (process.env.RECORD_GSTREAMER_OFFER === '1' || !existsSync(FIXTURE)) {
      assert.equal(process.env.RECORD_GSTREAMER_OFFER, '1', `${FIXTURE} is missing: run with RECORD_GSTREAMER_OFFER=1 to record it`);
      writeFileSync(FIXTURE, offer);
      console.log(`    recorded ${FIXTURE}`);
    }
    const shape = offerShape(offer);
    assert.deepEqual(shape, offerShape(readFileSync(FIXTURE, 'utf8')), 'the offer has the shape of the recorded one');
    // What the answer has to cope with (RFC 8843 bundle-only; webrtcbin wants a fingerprint per m-line).
    assert.deepEqual(
      shape.media.map((m) => [m.type, m.port, m.bundleOnly, m.fingerprint]),
      [
        ['video', 9, false, 'sha-256'],
        ['audio', 0, true, 'sha-256'],
      ],
    );
  });

  const cases = [
    { title: 'video only (VP8) — the harness check', stream: 'gst-vp8-only', pipelines: { video: VP8 }, codec: 'video/VP8' },
    { title: 'audio (Opus) and video (VP8)', stream: 'gst-vp8-opus', pipelines: { audio: AUDIO, video: VP8 }, codec: 'video/VP8' },
    { title: 'audio (Opus) and video (H.264 constrained baseline)', stream: 'gst-h264-opus', pipelines: { audio: AUDIO, video: H264 }, codec: 'video/H264' },
  ];
  for (const { title, stream, pipelines, codec } of cases) {
    const withAudio = Boolean(pipelines.audio);
    it(`publishes ${title}; Chromium at the edge decodes 640-wide frames${withAudio ? ' and receives audio' : ''}`, async () => {
      const token = await signStreamToken(SECRET, { stream, action: 'publish' });
      const started = Date.now();
      const client = await startConnected(
        stream,
        () => {
          const next = startWhipClient(netns!, shim!.so, `${origin!.url}/whip/${stream}`, token, pipelines);
          clients.push(next);
          return next;
        },
        () => waitFor(`${stream}: the dead publish released`, async () => (await getStream(db!.knex, stream))?.state !== 'live', 40_000, 200),
      );
      let viewer: Page | undefined;
      try {
        const connectedMs = Date.now() - started;

        const row = await getStream(db!.knex, stream);
        assert.equal(row?.state, 'live', `the stream is live on the origin:\n${tail(client.output())}`);
        assert.equal(row?.originNodeId, 'origin-gst');
        const codecs = Object.fromEntries(Object.entries((row?.codecs ?? {}) as Record<string, string>).map(([k, v]) => [k, v.toLowerCase()]));
        assert.deepEqual(
          codecs,
          withAudio ? { audio: 'opus', video: codec.split('/')[1]!.toLowerCase() } : { video: codec.split('/')[1]!.toLowerCase() },
          'one producer per published kind',
        );

        viewer = await browser!.page(edge!.url);
        const played = await play(viewer, `${edge!.url}/whep/${stream}`);
        assert.equal(played.status, 201, played.body);
        const playing = Date.now();
        const first = await waitForPlayback(viewer, `${title}: a frame decoded${withAudio ? ' and audio packets' : ''}`, withAudio);
        const firstFrameMs = Date.now() - playing;
        await new Promise((r) => setTimeout(r, 1000));
        const stats = await playbackStats(viewer);
        assert.equal(stats.videoCodec, codec);
        assert.equal(stats.frameWidth, 640);
        assert.equal(stats.videoWidth, 640);
        if (withAudio) assert.ok(stats.audioPacketsReceived > 0, `audio packets received: ${stats.audioPacketsReceived}`);
        console.log(
          `      ${stream}: publisher connected ${connectedMs} ms after start; first frame ${firstFrameMs} ms after the WHEP answer ` +
            `(${first.framesDecoded} frames, ${first.audioPacketsReceived} audio packets then; ${stats.framesDecoded} and ${stats.audioPacketsReceived} 1 s later)`,
        );

        // whip-client DELETEs its session on SIGINT: the stream ends on the origin.
        await client.stop();
        await waitFor('the stream to go idle after whip-client left', async () => (await getStream(db!.knex, stream))?.state === 'idle', 15_000);
      } finally {
        await client.stop();
        await viewer?.close();
      }
    });
  }

  it('publishes audio (Opus) and video (VP8) to an origin\'s https:// WHIP URL (a test CA\'s certificate); Chromium at the edge decodes 640-wide frames', async () => {
    // A second origin, serving HTTPS only. whip-client reaches it at the veth's host address: the
    // certificate names that address (an IP subjectAltName), as a real one names the WHIP URL's host.
    const cert = issueCertificate(ca!, 'origin', 'origin-gst-tls', [netns!.hostIp]);
    const tlsOrigin = await startRelaycast({
      roles: ['origin'],
      host: netns!.hostIp,
      databaseUrl: testDb!.url,
      tls: { ...cert, ca: ca! },
      env: { RELAYCAST_CLUSTER_SECRET: SECRET },
      args: ['--node-id', 'origin-gst-tls', ...common],
    });
    assert.ok(tlsOrigin.url.startsWith('https://'), tlsOrigin.url);
    const stream = 'gst-https';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const started = Date.now();
    let liveMs: number | undefined;
    // Read while whip-client connects: its WHIP POST over HTTPS makes the stream live.
    const watchLive = waitFor(
      'the stream to go live',
      async () => {
        if (liveMs === undefined && (await getStream(db!.knex, stream))?.state === 'live') liveMs = Date.now() - started;
        return liveMs !== undefined;
      },
      CONNECT_TIMEOUT_MS,
      50,
    ).catch(() => undefined);
    const client = await startConnected(
      stream,
      () => {
        const next = startWhipClient(netns!, shim!.so, `${tlsOrigin.url}/whip/${stream}`, token, { audio: AUDIO, video: VP8 });
        clients.push(next);
        return next;
      },
      () => waitFor(`${stream}: the dead publish released`, async () => (await getStream(db!.knex, stream))?.state !== 'live', 40_000, 200),
    ).catch(async (error: unknown) => {
      await tlsOrigin.stop();
      throw error;
    });
    let viewer: Page | undefined;
    try {
      const connectedMs = Date.now() - started;
      await watchLive;
      const row = await getStream(db!.knex, stream);
      assert.equal(row?.state, 'live', `the stream is live on the origin:\n${tail(client.output())}`);
      assert.equal(row?.originNodeId, 'origin-gst-tls');
      assert.ok(client.output().includes(`Resource URL: ${tlsOrigin.url}/whip/${stream}/`), 'the WHIP session is on the origin\'s https:// URL');

      viewer = await browser!.page(edge!.url);
      const played = await play(viewer, `${edge!.url}/whep/${stream}`);
      assert.equal(played.status, 201, played.body);
      const first = await waitForPlayback(viewer, 'a frame decoded and audio packets, published over HTTPS', true);
      const stats = await playbackStats(viewer);
      assert.equal(stats.videoCodec, 'video/VP8');
      assert.equal(stats.videoWidth, 640);
      console.log(
        `      over HTTPS: live ${liveMs ?? '?'} ms after whip-client started, PeerConnection connected after ${connectedMs} ms; ` +
          `Chromium at the edge: ${first.framesDecoded} frames, ${first.audioPacketsReceived} audio packets`,
      );

      // whip-client DELETEs its session over HTTPS on SIGINT: the stream ends on the origin.
      await client.stop();
      await waitFor('the stream to go idle after whip-client left', async () => (await getStream(db!.knex, stream))?.state === 'idle', 15_000);
    } finally {
      await client.stop();
      await viewer?.close();
      await tlsOrigin.stop();
    }
  });
});
