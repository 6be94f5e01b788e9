import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Page } from 'playwright-core';
import { TestBrowser, play, playbackStats, publish } from '../kit/browser.ts';
import { TestFirefox } from '../kit/firefox.ts';
import {
  countsSince,
  describePlayback,
  ffmpegFrames,
  ffprobe,
  gstreamerFrames,
  hlsPlaying,
  hlsRequestCounts,
  lenientMedia,
  liveEdge,
  llHlsViewers,
  playHls,
  startPlayerServer,
  stopHls,
  strictMedia,
  strictParse,
  totalRequests,
  type PlayerServer,
} from '../kit/hls.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * Low-Latency HLS, proven with clients we did not write: a balancer, an origin and two edges on a
 * Postgres database of their own; ffmpeg publishes over RTMP with x264's defaults (High profile,
 * B-frames, 2 s key frames) and AAC, as OBS would. hls.js plays it in Chromium and in Firefox ESR
 * (frames shown, the playhead moving, LL-HLS parts loaded) through the edge the balancer's 307
 * names; ffprobe, ffmpeg and GStreamer's hlsdemux read it from an edge; hls-parser in strict mode
 * (RFC 8216bis's rules, LL-HLS's included) takes every playlist: multivariant, media, a blocking
 * reload's answer and a delta update, and malformed requests get 400 problem+json.
 *
 * Then what the cluster does for HLS: a hundred LL-HLS viewers on one edge (plain HTTP clients
 * following the protocol: blocking reloads, preload hints) cost one upstream request per part
 * (the edge's relaycast_hls_requests_total); a stream relayed through two edge tiers is asked for
 * through the parent edge; a private stream needs its play token, which the playlists carry on to
 * every URI; and a WHIP publish from Chromium is packaged, H.264 as sent and VP8 encoded to H.264.
 *
 * Figures are printed (hls.js's latency, requests per second, upstream requests per part), never
 * asserted.
 */

const SECRET = 'hls-e2e-secret-0123456789abcdef';
const ADMIN = 'hls-e2e-admin-token-0123456789abc';

/**
 * Short heartbeats so the nodes see each other quickly; the origin feeds each stream to one edge
 * (--origin-max-relays 1), so that a second edge's relay pulls from the first (relay tiers).
 */
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

/** The test picture's size (ffmpeg's testsrc2 as published). */
const WIDTH = 640;
const HEIGHT = 360;

/** How long a publish may take to be live (RTMP handshake, the origin's bridge, the database). */
const LIVE_TIMEOUT_MS = 30_000;

/** Seconds of the stream ffmpeg and GStreamer play. */
const PLAY_SECONDS = 3;
const GSTREAMER_SECONDS = 6;

/** The load test: viewers on one edge, and how long they play. */
const VIEWERS = 100;
const LOAD_MS = 10_000;

/** The longest an RTMP publisher of this file runs (each is killed when its test is done). */
const PUBLISH_SECONDS = 300;

const publishers = new Set<ChildProcess>();

/**
 * ffmpeg publishing the test picture and a tone over RTMP until killed: x264's defaults (High,
 * three B-frames) with a key frame every 2 s (`-g 60` at 30 fps) and AAC, or, with `bframes`
 * false, what a low-latency encoder sends (no B-frames: the origin's WebRTC bridge passes it
 * through instead of encoding it again, which spares the machine's two cores).
 */
function publishRtmp(url: string, bframes = true): ChildProcess {
  const video = bframes
    ? ['-c:v', 'libx264', '-preset', 'veryfast', '-g', '60']
    : ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-bf', '0', '-g', '60'];
  const child = spawn(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=30`, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      ...video, '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', String(PUBLISH_SECONDS), '-f', 'flv', url],
    { stdio: 'ignore' },
  );
  publishers.add(child);
  child.once('exit', () => publishers.delete(child));
  return child;
}

interface CreatedStream {
  streamKey: string;
  rtmpUrl: string;
  publishToken: string;
  playToken: string;
}

describe('LL-HLS played by clients we did not write (balancer, origin, two edges, RTMP and WHIP in)', function () {
  this.timeout(180_000);
  let testDb: TestDatabase;
  let balancer: RelaycastProcess;
  let origin: RelaycastProcess;
  let edge1: RelaycastProcess;
  let edge2: RelaycastProcess;
  let players: PlayerServer;
  let chromium: TestBrowser;
  const pages: Page[] = [];
  /** The RTMP stream tests 1–5 share. */
  const show = 'hls-show';
  let showStream: CreatedStream;
  let showPublisher: ChildProcess;

  const api = async (path: string, init: RequestInit = {}) =>
    fetch(`${balancer.url}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', ...init.headers } });
  const createStream = async (name: string, settings: Record<string, unknown> = {}): Promise<CreatedStream> => {
    const res = await api('/streams', { method: 'POST', body: JSON.stringify({ name, ...settings }) });
    assert.equal(res.status, 201, await res.clone().text());
    return (await res.json()) as CreatedStream;
  };
  const streamView = async (name: string) => (await (await api(`/streams/${name}`)).json()) as { state: string; edges: Array<{ id: string; parent: string }> };
  const live = (name: string) => waitFor(`${name} live`, async () => (await streamView(name)).state === 'live', LIVE_TIMEOUT_MS, 250);
  /** Waits (bounded) until an edge's playlist lists a complete segment: players that read whole segments (ffmpeg, GStreamer) need one. */
  const segmentListed = (url: string) =>
    waitFor(`a complete segment in ${url}`, async () => /^seg-/m.test(await (await fetch(url)).text()), 20_000, 250);
  const playerPage = async (): Promise<Page> => {
    const page = await chromium.page(players.url);
    pages.push(page);
    return page;
  };

  before(async () => {
    testDb = await createTestDatabase();
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    [balancer, origin, edge1, edge2, players, chromium] = await Promise.all([
      startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url, env, args: ['--node-id', 'balancer-1', ...common] }),
      startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', '--origin-max-relays', '1', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-1', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-2', ...common] }),
      startPlayerServer(),
      TestBrowser.launch(),
    ]);
    showStream = await createStream(show);
    showPublisher = publishRtmp(showStream.rtmpUrl);
    await live(show);
  });

  afterEach(async () => {
    for (const page of pages.splice(0)) await page.close().catch(() => undefined);
    for (const child of publishers) if (child !== showPublisher) child.kill('SIGKILL');
  });

  after(async () => {
    for (const child of publishers) child.kill('SIGKILL');
    await chromium?.close();
    await players?.close();
    await Promise.all([edge1, edge2].map((n) => n?.stop()));
    await origin?.stop();
    await balancer?.stop();
    await testDb?.drop();
  });

  it('Chromium: hls.js plays the RTMP publish (x264 High, B-frames) in low-latency mode, through the edge the balancer redirects to', async () => {
    const page = await playerPage();
    const version = await playHls(page, `${balancer.url}/hls/${show}/index.m3u8`);
    const playback = await hlsPlaying(page, 'hls.js in Chromium showing frames', WIDTH);
    console.log(`      Chromium, hls.js ${version}: ${describePlayback(playback)}`);
    assert.ok([edge1.url, edge2.url].some((url) => playback.manifestUrl.startsWith(`${url}/hls/`)), `the balancer sent hls.js to an edge: ${playback.manifestUrl}`);
    assert.equal(playback.lowLatencyMode, true);
    assert.equal(playback.canBlockReload, true, 'hls.js read CAN-BLOCK-RELOAD=YES');
    assert.ok(playback.partsLoaded > 0, 'hls.js loaded LL-HLS parts');
    assert.match(playback.videoCodec ?? '', /^avc1\.64/, 'the publisher\'s H.264 High, as sent');
    assert.equal(playback.videoHeight, HEIGHT);
    await stopHls(page);
  });

  it('Firefox ESR: hls.js plays the same stream, also through the balancer\'s 307', async () => {
    const firefox = await TestFirefox.launch();
    try {
      const page = await firefox.page(players.url);
      const version = await playHls(page, `${balancer.url}/hls/${show}/index.m3u8`);
      const playback = await hlsPlaying(page, 'hls.js in Firefox showing frames', WIDTH);
      console.log(`      ${await firefox.version()}, hls.js ${version}: ${describePlayback(playback)}`);
      assert.ok([edge1.url, edge2.url].some((url) => playback.manifestUrl.startsWith(`${url}/hls/`)), `sent to an edge: ${playback.manifestUrl}`);
      assert.equal(playback.lowLatencyMode, true);
      assert.ok(playback.partsLoaded > 0, 'hls.js loaded LL-HLS parts');
      await stopHls(page);
    } finally {
      await firefox.close();
    }
  });

  it('ffprobe reads H.264 High and AAC at the published size from an edge; ffmpeg and GStreamer (hlsdemux) play it', async () => {
    const url = `${edge1.url}/hls/${show}/index.m3u8`;
    await segmentListed(`${edge1.url}/hls/${show}/media.m3u8`);
    const probe = await ffprobe(url);
    console.log(`      ffprobe: ${JSON.stringify(probe)}`);
    assert.equal(probe.video?.codec, 'h264');
    assert.equal(probe.video?.profile, 'High');
    assert.deepEqual([probe.video?.width, probe.video?.height], [WIDTH, HEIGHT]);
    assert.equal(probe.audio?.codec, 'aac');

    const frames = await ffmpegFrames(url, PLAY_SECONDS);
    console.log(`      ffmpeg: ${frames} frames decoded in ${PLAY_SECONDS} s of the stream`);
    assert.ok(frames > 0, 'ffmpeg decoded frames');

    const gst = await gstreamerFrames(url, GSTREAMER_SECONDS);
    console.log(`      GStreamer hlsdemux: ${gst.frames} frames decoded (${gst.width}x${gst.height}) in ${GSTREAMER_SECONDS} s (from the window's start, unsynchronised)`);
    assert.ok(gst.frames > 0, 'GStreamer decoded frames');
    assert.deepEqual([gst.width, gst.height], [WIDTH, HEIGHT]);
  });

  it('hls-parser (strict) takes every playlist: multivariant, media, a blocking reload\'s answer, a delta update; bad requests get 400, 404', async () => {
    const base = `${edge2.url}/hls/${show}`;
    const multivariant = strictParse(await (await fetch(`${base}/index.m3u8`)).text());
    assert.ok(multivariant.isMasterPlaylist);
    assert.equal(multivariant.variants.length, 1);
    assert.match(multivariant.variants[0]!.codecs ?? '', /^avc1\.64[0-9a-f]{4},mp4a\.40\.2$/);
    assert.deepEqual(multivariant.variants[0]!.resolution, { width: WIDTH, height: HEIGHT });

    const res = await fetch(`${base}/media.m3u8`);
    assert.equal(res.headers.get('content-type'), 'application/vnd.apple.mpegurl');
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    const text = await res.text();
    const media = strictMedia(text);
    assert.equal(media.lowLatencyCompatibility?.canBlockReload, true, 'EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES');
    assert.ok((media.lowLatencyCompatibility?.canSkipUntil ?? 0) >= 6 * media.targetDuration, 'CAN-SKIP-UNTIL at least six target durations');
    assert.ok((media.lowLatencyCompatibility?.partHoldBack ?? 0) >= 2 * media.partTargetDuration!, 'PART-HOLD-BACK at least two part targets');
    const parts = media.segments.flatMap((s) => s.parts);
    assert.ok(parts.filter((p) => !p.hint).length > 0, 'EXT-X-PART listed');
    assert.equal(parts.filter((p) => p.hint).length, 1, 'one EXT-X-PRELOAD-HINT for the next part');
    assert.ok(media.segments.every((s) => s.programDateTime instanceof Date), 'EXT-X-PROGRAM-DATE-TIME on every segment');
    // How far the live edge's PROGRAM-DATE-TIME is from the clock (same host): printed, see the report.
    const last = media.segments.at(-1)!;
    const edgeTime = last.programDateTime!.getTime() + (last.uri ? last.duration : last.parts.filter((p) => !p.hint).reduce((s, p) => s + p.duration!, 0)) * 1000;
    console.log(`      live edge's PROGRAM-DATE-TIME minus the clock: ${edgeTime - Date.now()} ms`);

    // A blocking reload for the part after the last one: held until it is made, then listing it.
    const at = liveEdge(text)!;
    const started = Date.now();
    const blocked = await fetch(`${base}/media.m3u8?_HLS_msn=${at.msn}&_HLS_part=${at.part + 1}`);
    const held = Date.now() - started;
    assert.equal(blocked.status, 200);
    const blockedText = await blocked.text();
    strictMedia(blockedText);
    const after = liveEdge(blockedText)!;
    assert.ok(after.msn > at.msn || after.part > at.part, `the answer holds the part asked for: ${JSON.stringify([at.msn, at.part + 1])} → ${JSON.stringify([after.msn, after.part])}`);
    assert.ok(after.parts.includes(at.hint!), 'it lists the part the preload hint had named');
    console.log(`      blocking reload for the next part answered after ${held} ms (parts of ${media.partTargetDuration} s)`);

    // A delta update skips what lies past CAN-SKIP-UNTIL once the window is longer than that (the
    // stream has been packaged since the first test; the wait is for a run of this test alone).
    let delta = '';
    await waitFor('a delta update that skips segments', async () => {
      delta = await (await fetch(`${base}/media.m3u8?_HLS_skip=YES`)).text();
      return /#EXT-X-SKIP:SKIPPED-SEGMENTS=\d+/.test(delta);
    }, 45_000, 1000);
    const parsedDelta = strictMedia(delta);
    const fullText = await (await fetch(`${base}/media.m3u8`)).text();
    const full = strictMedia(fullText);
    console.log(`      delta update: ${parsedDelta.skip} of ${full.segments.length} segments skipped, ${delta.length} bytes against ${fullText.length}`);
    assert.ok(parsedDelta.skip > 0);
    // What the delta lists is the full playlist's tail, each segment at its own sequence number.
    const numbers = new Map(full.segments.filter((s) => s.uri).map((s) => [s.uri, s.mediaSequenceNumber]));
    for (const segment of parsedDelta.segments.filter((s) => s.uri)) {
      if (numbers.has(segment.uri)) assert.equal(segment.mediaSequenceNumber, numbers.get(segment.uri), `${segment.uri} after ${parsedDelta.skip} skipped`);
    }
    assert.ok(parsedDelta.segments.some((s) => numbers.has(s.uri)), 'the delta update and the full playlist share segments');

    // Malformed LL-HLS queries: 400, as problem+json.
    const tooFar = liveEdge(await (await fetch(`${base}/media.m3u8`)).text())!.msn + 10;
    for (const query of ['_HLS_msn=x', '_HLS_part=1', '_HLS_msn=1&_HLS_part=-1', '_HLS_skip=NO', `_HLS_msn=${tooFar}`]) {
      const bad = await fetch(`${base}/media.m3u8?${query}`);
      assert.equal(bad.status, 400, `${query}: ${await bad.clone().text()}`);
      assert.equal(bad.headers.get('content-type')?.split(';')[0], 'application/problem+json', query);
    }
    // A stream that exists but is not live, one that does not exist, and names no stream has.
    await createStream('hls-idle');
    for (const url of [`${edge2.url}/hls/hls-idle/index.m3u8`, `${edge2.url}/hls/no-such-stream/media.m3u8`, `${base}/playlist.m3u8`, `${base}/seg-zzzz.m4s`, `${base}/part-00000000-1.m4s`]) {
      const missing = await fetch(url);
      assert.equal(missing.status, 404, `${url}: ${await missing.clone().text()}`);
      assert.equal(missing.headers.get('content-type')?.split(';')[0], 'application/problem+json', url);
    }
  });

  it(`${VIEWERS} LL-HLS viewers on one edge: each part is fetched upstream once, the rest answered from its cache`, async () => {
    const before = await hlsRequestCounts(edge2.url);
    const load = await llHlsViewers(`${edge2.url}/hls/${show}/media.m3u8`, VIEWERS, LOAD_MS);
    const counted = countsSince(before, await hlsRequestCounts(edge2.url));
    const parts = counted.part ?? { hit: 0, coalesced: 0, miss: 0 };
    const playlists = counted.playlist ?? { hit: 0, coalesced: 0, miss: 0 };
    const distinct = load.partsRequested.size;
    console.log(
      `      ${VIEWERS} viewers, ${(load.elapsedMs / 1000).toFixed(1)} s: ${load.requests} requests (${Math.round(load.requests / (load.elapsedMs / 1000))} requests/s), ` +
        `${load.partRequests} for ${distinct} distinct parts; upstream: ${parts.miss} part requests (${(parts.miss / distinct).toFixed(2)} per part), ` +
        `${playlists.miss} playlist requests for ${load.playlistRequests} asked (${playlists.coalesced} coalesced, ${playlists.hit} from the cache)`,
    );
    assert.deepEqual(load.failures, [], 'every request answered 200');
    assert.ok(distinct >= 3, `the viewers went through parts: ${distinct}`);
    assert.equal(parts.miss + parts.hit + parts.coalesced, load.partRequests, 'the edge counted every part request');
    assert.equal(parts.miss, distinct, 'one upstream request per part');
  });

  it('a stream relayed through two edge tiers: HLS from the lower edge is asked for through its parent, and plays', async () => {
    const name = 'hls-tiers';
    const { rtmpUrl } = await createStream(name);
    publishRtmp(rtmpUrl, false);
    await live(name);
    // One WHEP viewer per edge, the first edge first: it takes the origin's one relay of the
    // stream, so the second edge's relay pulls from the first.
    for (const edge of [edge1, edge2]) {
      const page = await chromium.page(edge.url);
      pages.push(page);
      const played = await play(page, `${edge.url}/whep/${name}`);
      assert.equal(played.status, 201, played.body);
      await waitFor('the WHEP viewer decoding', async () => (await playbackStats(page)).framesDecoded > 10, 30_000, 250);
    }
    const tree = (await streamView(name)).edges.map((e) => `${e.parent} → ${e.id}`).sort();
    assert.deepEqual(tree, ['edge-1 → edge-2', 'origin-1 → edge-1'], 'the second edge pulls from the first');

    const parentBefore = await hlsRequestCounts(edge1.url);
    const childBefore = await hlsRequestCounts(edge2.url);
    const url = `${edge2.url}/hls/${name}/index.m3u8`;
    // (The first request starts the packager at the origin; ffmpeg wants a complete segment.)
    await segmentListed(`${edge2.url}/hls/${name}/media.m3u8`);
    const frames = await ffmpegFrames(url, PLAY_SECONDS);
    const parent = countsSince(parentBefore, await hlsRequestCounts(edge1.url));
    const child = countsSince(childBefore, await hlsRequestCounts(edge2.url));
    console.log(`      ffmpeg on edge-2: ${frames} frames; edge-2 answered ${totalRequests(child)} HLS requests, edge-1 (its parent) ${totalRequests(parent)}: ${JSON.stringify(parent)}`);
    assert.ok(frames > 0, 'ffmpeg decoded frames from the lower edge');
    const misses = (c: typeof child) => Object.values(c).reduce((sum, k) => sum + k.miss, 0);
    assert.ok(totalRequests(parent) > 0, 'the parent edge was asked');
    assert.equal(totalRequests(parent), misses(child), 'every request the lower edge sent upstream went to its parent');
  });

  it('a private stream: 401 without its play token; with ?token= it plays, and every URI of its playlists carries the token', async () => {
    const name = 'hls-private';
    const { rtmpUrl, playToken } = await createStream(name, { private: true });
    publishRtmp(rtmpUrl, false);
    await live(name);
    const base = `${edge1.url}/hls/${name}`;
    for (const file of ['index.m3u8', 'media.m3u8', 'init-00000000.mp4']) {
      const res = await fetch(`${base}/${file}`);
      assert.equal(res.status, 401, `${file} without a token: ${await res.clone().text()}`);
    }
    const otherToken = await fetch(`${base}/index.m3u8?token=${encodeURIComponent(showStream.playToken)}`);
    assert.ok([401, 403].includes(otherToken.status), `another stream's play token: ${otherToken.status}`);

    const token = `token=${encodeURIComponent(playToken)}`;
    const multivariant = await (await fetch(`${base}/index.m3u8?${token}`)).text();
    assert.match(multivariant, new RegExp(`^media\\.m3u8\\?${token.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    await segmentListed(`${base}/media.m3u8?${token}`);
    const media = await (await fetch(`${base}/media.m3u8?${token}`)).text();
    strictMedia(media);
    const uris = [...media.matchAll(/URI="([^"]+)"/g)].map((m) => m[1]!).concat(media.split('\n').filter((l) => l !== '' && !l.startsWith('#')));
    assert.ok(uris.length > 3, media);
    for (const uri of uris) assert.ok(uri.endsWith(`?${token}`), `${uri} carries the token`);
    // What was played with a token is no shared cache's to keep for others.
    const part = await fetch(`${base}/${/URI="(part-[^"]+)"/.exec(media)![1]}`);
    assert.equal(part.status, 200);
    assert.equal(part.headers.get('cache-control'), 'private, max-age=31536000, immutable');

    // ffprobe starts at the balancer as a player would: the 307 keeps the token.
    const probe = await ffprobe(`${balancer.url}/hls/${name}/index.m3u8?${token}`);
    console.log(`      private stream, ffprobe with the play token through the balancer: ${JSON.stringify(probe)}`);
    assert.equal(probe.video?.codec, 'h264');
    assert.equal(probe.audio?.codec, 'aac');
  });

  it('WHIP from Chromium: VP8 is packaged as H.264 (hls.js plays it, ffprobe reads h264 and AAC); H.264 is packaged as sent', async () => {
    for (const [codec, name] of [['video/VP8', 'hls-whip-vp8'], ['video/H264', 'hls-whip-h264']] as const) {
      const { publishToken } = await createStream(name);
      const publisher = await chromium.page(origin.url);
      pages.push(publisher);
      const published = await publish(publisher, `${origin.url}/whip/${name}`, publishToken, codec);
      assert.equal(published.status, 201, published.body);
      await live(name);
      const url = `${edge1.url}/hls/${name}/index.m3u8`;
      await segmentListed(`${edge1.url}/hls/${name}/media.m3u8`);
      const probe = await ffprobe(url);
      // The parts' lengths, printed: a WebRTC publisher's frames come at a varying rate, and the
      // packager cuts parts from fragments of one to three frames, so some parts inside a segment
      // come out shorter than RFC 8216bis 4.4.4.9's 85 % of PART-TARGET (hls-parser's strict mode
      // refuses such a playlist; the RTMP publish's constant 30 fps fills them: see the test above).
      const media = lenientMedia(await (await fetch(`${edge1.url}/hls/${name}/media.m3u8`)).text());
      const inner = media.segments.filter((s) => s.uri).flatMap((s) => s.parts.slice(0, -1).map((p) => p.duration!));
      console.log(
        `      WHIP ${codec}: ffprobe ${JSON.stringify(probe)}; parts before a segment's last: ${inner.length}, ` +
          `${inner.filter((d) => d < 0.85 * media.partTargetDuration!).length} shorter than 85 % of PART-TARGET (shortest ${Math.min(...inner).toFixed(3)} s)`,
      );
      assert.equal(probe.video?.codec, 'h264', `${codec} packaged as H.264`);
      assert.equal(probe.audio?.codec, 'aac', 'Opus packaged as AAC');
      if (codec === 'video/H264') {
        // Chromium sends Constrained Baseline; the packager copies it.
        assert.equal(probe.video?.profile, 'Constrained Baseline');
        continue;
      }
      const page = await playerPage();
      await playHls(page, url);
      // The browser's encoder may scale the fake camera down on a busy machine: any picture size.
      const playback = await hlsPlaying(page, 'hls.js showing the VP8 publish');
      console.log(`      WHIP ${codec} in hls.js: ${describePlayback(playback)}`);
      assert.match(playback.videoCodec ?? '', /^avc1\./);
      await stopHls(page);
    }
  });

  it('the origin stops (SIGTERM) while it packages a WHIP publish (RTP into ffmpeg), and leaves no packager ffmpeg behind', async () => {
    const name = 'hls-whip-last';
    const { publishToken } = await createStream(name);
    const publisher = await chromium.page(origin.url);
    pages.push(publisher);
    assert.equal((await publish(publisher, `${origin.url}/whip/${name}`, publishToken, 'video/VP8')).status, 201);
    await live(name);
    await segmentListed(`${edge1.url}/hls/${name}/media.m3u8`);
    // Each packager's ffmpeg, as the origin logged it: "packager started" with its pid (the line's
    // last "pid"; the first is the origin's own, pino's base field).
    const pids = origin
      .output()
      .split('\n')
      .filter((line) => line.includes('"packager started"'))
      .map((line) => Number([...line.matchAll(/"pid":(\d+)/g)].at(-1)![1]));
    const alive = () =>
      pids.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
    assert.ok(alive().length > 0, 'a packager runs');
    assert.equal(await origin.stop(), 0, 'the origin exits 0');
    await waitFor('every packager ffmpeg gone', () => alive().length === 0, 10_000, 200).catch((error: Error) => {
      throw new Error(`${error.message}: still running ${JSON.stringify(alive())}`, { cause: error });
    });
  });
});
