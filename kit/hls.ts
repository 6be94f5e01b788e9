import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import * as HLS from 'hls-parser';
import type { ScriptPage } from './browser.ts';
import { spawnTracked, stopProcess, waitFor } from './processes.ts';

/**
 * HLS clients that Relaycast did not write, for the tests: hls.js in a browser page (Chromium's
 * or Firefox's), ffprobe and ffmpeg, GStreamer's hlsdemux, hls-parser in strict mode; and the
 * load test's viewers, plain HTTP clients that follow the Low-Latency HLS protocol (blocking
 * playlist reloads, preload hints) as a player does. Every process here is bounded in time and
 * stopped; every loop is bounded in count and time.
 */

// ---- hls.js in a page ----------------------------------------------------------------------------

const require = createRequire(import.meta.url);
/** hls.js as the project depends on it (package.json), the build a page loads with a <script> tag. */
const HLS_JS = require.resolve('hls.js/dist/hls.min.js');

/**
 * The player page: a muted <video> (browsers autoplay muted video without a gesture) and hls.js.
 * No player of ours: what plays is hls.js as any site would embed it.
 */
const PLAYER_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>hls.js test page</title><script src="/hls.min.js"></script></head>
<body><video id="video" muted playsinline width="640" height="360"></video></body></html>`;

export interface PlayerServer {
  /** http://127.0.0.1:port: every path but /hls.min.js answers the player page (TestBrowser.page() opens /healthz). */
  url: string;
  close(): Promise<void>;
}

/**
 * A tiny static server for the player page and hls.js, on a loopback port of its own: the page's
 * origin is not the edge's, so the edge's CORS headers are what lets hls.js read the stream, as on
 * a real site.
 */
export async function startPlayerServer(): Promise<PlayerServer> {
  const script = readFileSync(HLS_JS);
  const server = createServer((req, res) => {
    if (req.url === '/hls.min.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PLAYER_PAGE);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Starts hls.js (lowLatencyMode on, its default made explicit) on `src` in a page of the player
 * server; the page keeps what hls.js reports (see hlsPlayback()). Returns hls.js's version.
 */
export async function playHls(page: ScriptPage, src: string): Promise<string> {
  return page.evaluate(async (src: string) => {
    const w = window as any;
    const Hls = w.Hls;
    if (!Hls?.isSupported()) throw new Error('hls.js: Media Source Extensions are not supported in this browser');
    const video = document.getElementById('video') as HTMLVideoElement;
    const hls = new Hls({ lowLatencyMode: true });
    const seen = { manifestUrl: '', partsLoaded: 0, segmentsLoaded: 0, canBlockReload: false, partTarget: 0, errors: [] as string[] };
    w.hls = hls;
    w.hlsSeen = seen;
    hls.on(Hls.Events.MANIFEST_LOADED, (_e: unknown, data: any) => {
      // Where the playlist came from after redirects (the balancer sends players to an edge).
      seen.manifestUrl = data.networkDetails?.responseURL ?? data.url;
    });
    hls.on(Hls.Events.LEVEL_LOADED, (_e: unknown, data: any) => {
      seen.canBlockReload = Boolean(data.details?.canBlockReload);
      seen.partTarget = data.details?.partTarget ?? 0;
    });
    hls.on(Hls.Events.FRAG_LOADED, (_e: unknown, data: any) => {
      if (data.part) seen.partsLoaded++;
      else seen.segmentsLoaded++;
    });
    hls.on(Hls.Events.ERROR, (_e: unknown, data: any) => {
      if (seen.errors.length < 20) seen.errors.push(`${data.fatal ? 'fatal ' : ''}${data.type}/${data.details}${data.response?.code ? ` ${data.response.code}` : ''}`);
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    hls.on(Hls.Events.MANIFEST_PARSED, () => void video.play().catch((error: Error) => seen.errors.push(`play(): ${error.message}`)));
    return String(Hls.version);
  }, src);
}

/** What a hls.js page shows and hls.js says: the picture, frames decoded, how far behind live, which parts it loaded. */
export interface HlsPlayback {
  currentTime: number;
  videoWidth: number;
  videoHeight: number;
  /** getVideoPlaybackQuality(): frames decoded and shown, and dropped. */
  totalVideoFrames: number;
  droppedVideoFrames: number;
  /** hls.latency: seconds from the playhead to the live edge of the playlist (null before it knows). */
  latency: number | null;
  /** hls.targetLatency: where hls.js aims to sit (PART-HOLD-BACK in low-latency mode). */
  targetLatency: number | null;
  /**
   * Seconds from the playhead's EXT-X-PROGRAM-DATE-TIME to now (the packager's host is this one).
   * The packager stamps its first fragment with the wall clock and the rest by media time from
   * there: a publisher that falls behind real time on a busy machine makes this grow.
   */
  behindWallClock: number | null;
  lowLatencyMode: boolean;
  canBlockReload: boolean;
  partTarget: number;
  partsLoaded: number;
  segmentsLoaded: number;
  /** The codecs hls.js read from the multivariant playlist. */
  videoCodec: string | undefined;
  audioCodec: string | undefined;
  manifestUrl: string;
  errors: string[];
}

export async function hlsPlayback(page: ScriptPage): Promise<HlsPlayback> {
  return page.evaluate(() => {
    const w = window as any;
    const video = document.getElementById('video') as HTMLVideoElement;
    const quality = video.getVideoPlaybackQuality();
    const hls = w.hls;
    const level = hls.levels?.[Math.max(0, hls.currentLevel)];
    const playing: Date | null = hls.playingDate ?? null;
    return {
      currentTime: video.currentTime,
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      totalVideoFrames: quality.totalVideoFrames,
      droppedVideoFrames: quality.droppedVideoFrames,
      latency: Number.isFinite(hls.latency) ? hls.latency : null,
      targetLatency: Number.isFinite(hls.targetLatency) ? hls.targetLatency : null,
      behindWallClock: playing ? (Date.now() - playing.getTime()) / 1000 : null,
      lowLatencyMode: Boolean(hls.lowLatencyMode),
      canBlockReload: w.hlsSeen.canBlockReload,
      partTarget: w.hlsSeen.partTarget,
      partsLoaded: w.hlsSeen.partsLoaded,
      segmentsLoaded: w.hlsSeen.segmentsLoaded,
      videoCodec: level?.videoCodec,
      audioCodec: level?.audioCodec,
      manifestUrl: w.hlsSeen.manifestUrl,
      errors: [...w.hlsSeen.errors],
    };
  });
}

/**
 * Frames the page must have shown before playback counts as proven: two seconds of a 30 fps
 * picture, more than a first segment's worth of a player that stalls after one.
 */
export const PROVEN_FRAMES = 60;

/**
 * Waits (bounded) until the hls.js page plays: PROVEN_FRAMES frames shown, the playhead moving
 * on by a second, and a picture (`width` wide, when given); returns the playback then. A fatal
 * hls.js error fails at once.
 */
export async function hlsPlaying(page: ScriptPage, what: string, width?: number, timeoutMs = 45_000): Promise<HlsPlayback> {
  let last = await hlsPlayback(page);
  let firstTime: number | undefined;
  await waitFor(what, async () => {
    last = await hlsPlayback(page);
    const fatal = last.errors.find((e) => e.startsWith('fatal'));
    if (fatal) throw new Error(`${what}: hls.js: ${fatal}; ${JSON.stringify(last)}`);
    if (last.currentTime > 0) firstTime ??= last.currentTime;
    return last.totalVideoFrames >= PROVEN_FRAMES && (width === undefined ? last.videoWidth > 0 : last.videoWidth === width) && firstTime !== undefined && last.currentTime > firstTime + 1;
  }, timeoutMs, 250).catch((error: Error) => {
    throw new Error(`${error.message}; last playback ${JSON.stringify(last)}`, { cause: error });
  });
  return last;
}

export const describePlayback = (p: HlsPlayback) =>
  `${p.videoWidth}x${p.videoHeight} ${p.videoCodec}/${p.audioCodec}, ${p.totalVideoFrames} frames (${p.droppedVideoFrames} dropped), ` +
  `hls.latency ${p.latency?.toFixed(2)} s (target ${p.targetLatency?.toFixed(2)} s), ${p.behindWallClock?.toFixed(2)} s behind PROGRAM-DATE-TIME, ` +
  `${p.partsLoaded} parts and ${p.segmentsLoaded} segments loaded`;

/** Stops hls.js in the page (no more requests from it), so that counters read later are the other clients'. */
export async function stopHls(page: ScriptPage): Promise<void> {
  await page.evaluate(() => {
    const w = window as any;
    w.hls?.destroy();
  });
}

// ---- command-line clients ------------------------------------------------------------------------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Whether it was stopped at its time limit. */
  timedOut: boolean;
}

/**
 * Runs a command to its end or for at most `timeoutMs`, then `signal` (SIGKILL 5 s later if it
 * lingers); its output kept (the last 1 MB).
 */
async function run(command: string, args: string[], timeoutMs: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<Run> {
  const child: ChildProcess = spawnTracked(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout = (stdout + d).slice(-1_000_000)));
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-1_000_000)));
  const exited = once(child, 'exit').catch(() => undefined);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void stopProcess(child, 5000, signal);
  }, timeoutMs);
  await exited;
  clearTimeout(timer);
  return { code: child.exitCode, stdout, stderr, timedOut };
}

export interface Probe {
  video?: { codec: string; profile?: string; width: number; height: number };
  audio?: { codec: string; profile?: string; sampleRate?: number };
}

/** How long ffprobe may take to read a live HLS stream's playlists and first segment. */
const PROBE_TIMEOUT_MS = 30_000;

/** ffprobe's view of an HLS URL (a multivariant or media playlist): the codecs and the picture size. */
export async function ffprobe(url: string): Promise<Probe> {
  const result = await run('ffprobe', ['-hide_banner', '-v', 'error', '-show_entries', 'stream=codec_type,codec_name,profile,width,height,sample_rate', '-of', 'json', url], PROBE_TIMEOUT_MS);
  if (result.code !== 0) throw new Error(`ffprobe ${url} failed (${result.timedOut ? 'timed out' : `exit ${result.code}`}): ${result.stderr.slice(-1000)}`);
  const streams = (JSON.parse(result.stdout) as { streams: Array<Record<string, any>> }).streams;
  const video = streams.find((s) => s.codec_type === 'video');
  const audio = streams.find((s) => s.codec_type === 'audio');
  return {
    video: video && { codec: video.codec_name, profile: video.profile, width: video.width, height: video.height },
    audio: audio && { codec: audio.codec_name, profile: audio.profile, sampleRate: audio.sample_rate ? Number(audio.sample_rate) : undefined },
  };
}

/**
 * ffmpeg plays `seconds` of an HLS URL (decodes them to nothing: `-f null`); returns the video
 * frames it decoded (its -progress report). Bounded: a stream that stalls fails after 30 s more.
 */
export async function ffmpegFrames(url: string, seconds: number): Promise<number> {
  const result = await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-i', url, '-t', String(seconds), '-f', 'null', '-', '-progress', 'pipe:1'], seconds * 1000 + 30_000);
  if (result.code !== 0) throw new Error(`ffmpeg ${url} failed (${result.timedOut ? 'timed out' : `exit ${result.code}`}): ${result.stderr.slice(-1000)}`);
  const frames = [...result.stdout.matchAll(/^frame=(\d+)$/gm)].at(-1)?.[1];
  return Number(frames ?? 0);
}

export interface GstreamerRun {
  /** Video frames avdec_h264 decoded and the sink took. */
  frames: number;
  width: number | undefined;
  height: number | undefined;
}

/**
 * GStreamer's HLS demuxer (`hlsdemux`, gst-plugins-bad) reads an HLS URL for `seconds`:
 * souphttpsrc → hlsdemux → qtdemux (the fMP4) → h264parse → avdec_h264 → fakesink, with
 * gst-launch-1.0 -v printing each buffer the sink takes and the decoded caps; stopped with SIGINT
 * when the time is up. (hlsdemux reloads the playlist each target duration and plays whole
 * segments: plain HLS, no LL-HLS parts.)
 */
export async function gstreamerFrames(url: string, seconds: number): Promise<GstreamerRun> {
  const pipeline = [
    'souphttpsrc', `location=${url}`, '!', 'hlsdemux', '!', 'qtdemux', 'name=demux', 'demux.video_0', '!',
    'h264parse', '!', 'avdec_h264', '!', 'video/x-raw', '!', 'fakesink', 'name=frames', 'sync=false', 'silent=false',
  ];
  const result = await run('gst-launch-1.0', ['-v', ...pipeline], seconds * 1000, 'SIGINT');
  if (!result.timedOut && result.code !== 0) throw new Error(`gst-launch-1.0 failed (exit ${result.code}): ${(result.stdout + result.stderr).slice(-1500)}`);
  const output = result.stdout + result.stderr;
  const caps = /avdec_h264.*?caps = video\/x-raw.*?width=\(int\)(\d+), height=\(int\)(\d+)/.exec(output);
  return {
    frames: output.match(/frames: last-message = chain/g)?.length ?? 0,
    width: caps ? Number(caps[1]) : undefined,
    height: caps ? Number(caps[2]) : undefined,
  };
}

// ---- playlists -----------------------------------------------------------------------------------

/** hls-parser in strict mode: it throws on what RFC 8216bis forbids (LL-HLS rules included). */
export function strictParse(text: string): HLS.types.MasterPlaylist | HLS.types.MediaPlaylist {
  HLS.setOptions({ strictMode: true, silent: true });
  try {
    return HLS.parse(text);
  } finally {
    HLS.setOptions({ strictMode: false, silent: false });
  }
}

export function strictMedia(text: string): HLS.types.MediaPlaylist {
  const parsed = strictParse(text);
  if (parsed.isMasterPlaylist) throw new Error('a multivariant playlist where a media playlist was expected');
  return parsed;
}

/** hls-parser as players use it (not strict): for figures about a playlist strict mode refuses. */
export function lenientMedia(text: string): HLS.types.MediaPlaylist {
  HLS.setOptions({ strictMode: false, silent: true });
  try {
    const parsed = HLS.parse(text);
    if (parsed.isMasterPlaylist) throw new Error('a multivariant playlist where a media playlist was expected');
    return parsed;
  } finally {
    HLS.setOptions({ silent: false });
  }
}

/** Where a media playlist ends: the last part listed (its segment's number and its place there), the preload hint. */
export interface LiveEdge {
  msn: number;
  part: number;
  partUri: string;
  hint: string | undefined;
  /** Every part URI listed. */
  parts: string[];
}

/** Reads a media playlist's live edge, line by line (what a player needs for its next requests). */
export function liveEdge(playlist: string): LiveEdge | undefined {
  let msn = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(playlist)?.[1] ?? NaN);
  const skipped = Number(/#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)/.exec(playlist)?.[1] ?? 0);
  msn += skipped;
  let index = 0;
  let last: LiveEdge | undefined;
  const parts: string[] = [];
  for (const line of playlist.split('\n')) {
    if (line.startsWith('#EXT-X-PART:')) {
      const uri = /URI="([^"]+)"/.exec(line)![1]!;
      parts.push(uri);
      last = { msn, part: index++, partUri: uri, hint: undefined, parts };
    } else if (line !== '' && !line.startsWith('#')) {
      msn++;
      index = 0;
    }
  }
  if (!last || Number.isNaN(msn)) return undefined;
  last.hint = /#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/.exec(playlist)?.[1];
  return last;
}

// ---- LL-HLS viewers as plain HTTP clients ------------------------------------------------------------

export interface LoadResult {
  viewers: number;
  /** Requests made, and how many answered something else than 200 (or not at all). */
  requests: number;
  failures: string[];
  playlistRequests: number;
  partRequests: number;
  /** Every part URI requested, by any viewer. */
  partsRequested: Set<string>;
  elapsedMs: number;
}

/** How long one request may take: a blocking reload is held up to three target durations (12 s). */
const REQUEST_TIMEOUT_MS = 15_000;

/**
 * Most rounds (blocking reload + preload-hint part) a viewer makes, whatever the time: three
 * parts a second for a minute.
 */
const MAX_ROUNDS = 180;

/**
 * `viewers` clients, each playing the live edge of the media playlist at `playlistUrl` for
 * `durationMs` the way LL-HLS players do (RFC 8216bis 6.2.5.2, 6.3.7): the playlist once, then in
 * rounds, the preload-hinted part and the blocking reload for the part after the last one
 * (`_HLS_msn`/`_HLS_part`) at the same time, and any listed part newer than what it has that it
 * has not fetched yet. A round starts when the previous one ends; the run ends at `durationMs`
 * or MAX_ROUNDS, and every request is bounded by REQUEST_TIMEOUT_MS.
 */
export async function llHlsViewers(playlistUrl: string, viewers: number, durationMs: number): Promise<LoadResult> {
  const result: LoadResult = { viewers, requests: 0, failures: [], playlistRequests: 0, partRequests: 0, partsRequested: new Set(), elapsedMs: 0 };
  const started = Date.now();
  const deadline = started + durationMs;
  const get = async (url: string): Promise<string | undefined> => {
    result.requests++;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const body = await res.text();
      if (res.status === 200) return body;
      if (result.failures.length < 20) result.failures.push(`${res.status} ${url}: ${body.slice(0, 200)}`);
    } catch (error) {
      if (result.failures.length < 20) result.failures.push(`${url}: ${(error as Error).message}`);
    }
    return undefined;
  };
  const playlist = (query = '') => {
    result.playlistRequests++;
    return get(`${playlistUrl}${query}`);
  };
  const part = (uri: string) => {
    result.partRequests++;
    result.partsRequested.add(uri);
    return get(new URL(uri, playlistUrl).toString());
  };
  const viewer = async () => {
    let text = await playlist();
    let edge = text === undefined ? undefined : liveEdge(text);
    // Where this viewer starts: the parts listed when it joined are behind it (a player starts
    // PART-HOLD-BACK back, at an independent part; this one starts at the edge).
    const have = new Set(edge?.parts ?? []);
    for (let round = 0; edge && round < MAX_ROUNDS && Date.now() < deadline; round++) {
      const hint = edge.hint;
      const [reloaded] = await Promise.all([
        playlist(`?_HLS_msn=${edge.msn}&_HLS_part=${edge.part + 1}`),
        hint && !have.has(hint) ? (have.add(hint), part(hint)) : undefined,
      ]);
      if (reloaded === undefined) break;
      text = reloaded;
      const next = liveEdge(text);
      if (!next) break;
      const missing = next.parts.filter((uri) => !have.has(uri));
      for (const uri of missing) {
        have.add(uri);
        await part(uri);
      }
      edge = next;
    }
  };
  await Promise.all(Array.from({ length: viewers }, () => viewer()));
  result.elapsedMs = Date.now() - started;
  return result;
}

// ---- an edge's counters --------------------------------------------------------------------------

/** relaycast_hls_requests_total by file kind and cache outcome, as a node's /metrics says now. */
export type HlsRequestCounts = Record<string, { hit: number; coalesced: number; miss: number }>;

export async function hlsRequestCounts(baseUrl: string): Promise<HlsRequestCounts> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const counts: HlsRequestCounts = {};
  for (const line of text.split('\n')) {
    const match = /^relaycast_hls_requests_total\{([^}]*)\} (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const kind = (counts[labels.kind!] ??= { hit: 0, coalesced: 0, miss: 0 });
    kind[labels.cache as 'hit' | 'coalesced' | 'miss'] = Number(match[2]);
  }
  return counts;
}

/** What changed between two readings, by kind (kinds absent from both are left out). */
export function countsSince(before: HlsRequestCounts, after: HlsRequestCounts): HlsRequestCounts {
  const out: HlsRequestCounts = {};
  for (const kind of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = before[kind] ?? { hit: 0, coalesced: 0, miss: 0 };
    const a = after[kind] ?? { hit: 0, coalesced: 0, miss: 0 };
    out[kind] = { hit: a.hit - b.hit, coalesced: a.coalesced - b.coalesced, miss: a.miss - b.miss };
  }
  return out;
}

/** Every request counted, whatever its kind and outcome. */
export const totalRequests = (counts: HlsRequestCounts) => Object.values(counts).reduce((sum, c) => sum + c.hit + c.coalesced + c.miss, 0);
