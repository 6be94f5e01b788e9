import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { TestBrowser, screenshot } from '../kit/browser.ts';
import { strictMedia } from '../kit/hls.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { stopProcess, waitFor } from '../kit/processes.ts';
import { adminClient, publishTestRtmp } from '../kit/testPublish.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playerStats, playing, type PageStats } from './helpers/player.ts';

/**
 * The web player's DVR window, in real Chromium against a balancer, an origin and an edge (three
 * processes on a Postgres of their own; origin and edge share one recordings directory, so the
 * edge reads what the origin recorded). ffmpeg publishes RTMP (x264, 2 s GOP, AAC, in real time)
 * to a stream created with `record: true`; the /play page plays it live, shows its DVR button,
 * plays the recording behind live (seeking back to the start of the window: the picture shown is
 * from then, by its program date-time), and goes back to live. The balancer's `/v1/dvr` answers
 * are checked as a client sees them: 404, 401/403 for a private stream, 200 with a playback token.
 * No timing is asserted: every wait is a bound. Screenshots go to test/artifacts/.
 */

const SECRET = 'dvr-test-secret-0123456789abcdef';
const ADMIN = 'dvr-test-admin-token-0123456789';
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

/** The RTMP publish's frame rate: with `-g 60`, a key frame (and a recorded segment) every 2 s. */
const FPS = 30;

/** ffmpeg publishing x264 without B-frames (the origin passes it to WebRTC as it is: no re-encode on a machine the test shares) and AAC. */
const publishRtmp = (url: string, seconds: number) => publishTestRtmp(url, { seconds, fps: FPS, bframes: false });

/** What GET /v1/dvr answers with 200. */
interface DvrAnswer {
  stream: string;
  recording: { id: string; startedAt: string };
  from: string;
  playlistUrl: string;
}

/** The page's player and video, as a viewer of the DVR window sees them. */
interface DvrView extends PageStats {
  /** The balancer's DVR window, as the player knows it (player.dvr). */
  dvr: { recordingId: string; from: string; playlistUrl: string } | null;
  controls: boolean;
  paused: boolean;
  dvrButton: boolean;
  liveButton: boolean;
  badge: string;
  statsMode: string;
}

function dvrView(page: Page): Promise<DvrView> {
  return page.evaluate(() => {
    const player = (window as any).relaycastPlayer;
    const video = document.querySelector('video')!;
    // (No function declared in here: the test's transpiler would wrap it in a helper the page lacks.)
    return {
      ...player.stats(),
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      currentTime: video.currentTime,
      dvr: player.dvr,
      controls: video.controls,
      paused: video.paused,
      dvrButton: !document.getElementById('dvr')!.hidden,
      liveButton: !document.getElementById('go-live')!.hidden,
      badge: document.getElementById('mode')!.textContent ?? '',
      statsMode: document.querySelector('dd[data-stat="mode"]')!.textContent ?? '',
    };
  });
}

describe('web player DVR window (Chromium; RTMP recorded on an origin, played back from an edge)', function () {
  this.timeout(300_000);
  let testDb: TestDatabase;
  let db: Database;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let balancer: RelaycastProcess;
  let browser: TestBrowser;
  const work = mkdtempSync(join(tmpdir(), 'relaycast-dvr-test-'));
  const pages: Page[] = [];
  const publishers = new Set<ChildProcess>();

  const api = (method: string, path: string, body?: unknown) => adminClient(balancer.url, ADMIN)(method, path, body);
  /** Creates a recorded stream and publishes it over RTMP (for at most 5 minutes; stopped by stopPublish). */
  const publishRecorded = async (name: string, settings: Record<string, unknown> = {}) => {
    const created = await api('POST', '/streams', { name, record: true, ...settings });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const ffmpeg = publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${created.body.streamKey}`, 300);
    publishers.add(ffmpeg);
    let errors = '';
    ffmpeg.stderr!.on('data', (d) => (errors += d));
    return { ffmpeg, errors: () => errors };
  };
  const stopPublish = async (ffmpeg: ChildProcess) => {
    await stopProcess(ffmpeg, 5000);
    publishers.delete(ffmpeg);
  };
  const completeSegments = async (stream: string): Promise<number> => {
    const row = await db.knex('recording_segments as s').join('recordings as r', 'r.id', 's.recording_id').where({ 'r.stream': stream, 's.complete': true }).count({ n: '*' }).first();
    return Number(row?.n ?? 0);
  };
  const dvrAnswer = (query: string) => fetch(`${balancer.url}/v1/dvr?${query}`);
  /** The nodes' last words, for a failure that needs them. */
  const explained = (error: Error): never => {
    const logs = [['origin', origin], ['edge', edge], ['balancer', balancer]].map(([id, node]) => `--- ${id} ---\n${(node as RelaycastProcess).output().slice(-2500)}`);
    throw new Error(`${error.message}\n${logs.join('\n')}`, { cause: error });
  };

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const recordDir = join(work, 'recordings');
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const start = (role: string, id: string, args: string[] = []) => startRelaycast({ roles: [role], databaseUrl: testDb.url, env, args: ['--node-id', id, ...common, ...args] });
    [origin, edge, balancer] = await Promise.all([start('origin', 'origin-1', ['--record-dir', recordDir]), start('edge', 'edge-1', ['--record-dir', recordDir]), start('balancer', 'balancer-1')]);
    await waitFor('the edge in the route API', async () => {
      const res = await fetch(`${balancer.url}/v1/route?stream=any&role=edge`);
      return res.ok && ((await res.json()) as { choices: unknown[] }).choices.length > 0;
    }, 15_000);
    browser = await TestBrowser.launch();
  });

  after(async () => {
    for (const page of pages) await page.close().catch(() => undefined);
    await browser?.close();
    for (const ffmpeg of publishers) await stopProcess(ffmpeg, 5000);
    for (const node of [balancer, edge, origin]) await node?.stop();
    await db?.close();
    await testDb?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  it('GET /v1/dvr: 400 for a bad name, 404 for a stream not recorded; a private recorded stream needs a playback token (401, 403), then 200 with the token in its playlist URL', async () => {
    const bad = await dvrAnswer('stream=not%20a%20name');
    assert.equal(bad.status, 400);
    assert.match(bad.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal((await api('POST', '/streams', { name: 'dvr-not-recorded', record: false })).status, 201);
    const none = await dvrAnswer('stream=dvr-not-recorded');
    assert.equal(none.status, 404);
    assert.equal(((await none.json()) as { type: string }).type, 'https://relaycast.dev/problems/not-found');
    assert.equal(none.headers.get('access-control-allow-origin'), '*', 'an embedded player reads the 404 too');

    const stream = 'dvr-private';
    const { ffmpeg, errors } = await publishRecorded(stream, { private: true });
    try {
      await waitFor('the private stream recorded', async () => (await completeSegments(stream)) >= 1, 60_000, 500).catch((error: Error) => explained(new Error(`${error.message}; ffmpeg: ${errors()}`)));
      const anonymous = await dvrAnswer(`stream=${stream}`);
      assert.equal(anonymous.status, 401);
      assert.equal(((await anonymous.json()) as { type: string }).type, 'https://relaycast.dev/problems/unauthorized');
      const play = await signStreamToken(SECRET, { stream, action: 'play' });
      assert.equal((await dvrAnswer(`stream=${stream}&token=${play}`)).status, 403, 'a play token is for live viewing, not the recording');
      const token = await signStreamToken(SECRET, { stream, action: 'playback' });
      const res = await dvrAnswer(`stream=${stream}&token=${token}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      assert.match(res.headers.get('cache-control') ?? '', /no-store/);
      const answer = (await res.json()) as DvrAnswer;
      const [recording] = (await api('GET', `/streams/${stream}/recordings`)).body.items as Array<{ id: string; startedAt: string; live: boolean }>;
      assert.equal(answer.stream, stream);
      assert.deepEqual(answer.recording, { id: recording!.id, startedAt: recording!.startedAt });
      assert.equal(answer.from, recording!.startedAt, 'a recording younger than the window: the window is all of it');
      const url = new URL(answer.playlistUrl);
      assert.equal(`${url.origin}${url.pathname}`, `${balancer.url}/recordings/${recording!.id}/index.m3u8`);
      assert.equal(url.searchParams.get('from'), answer.from);
      assert.equal(url.searchParams.get('token'), token);
      // The playlist it names plays: the balancer sends it to the edge, where it is the recording's EVENT playlist.
      const playlist = await fetch(answer.playlistUrl);
      assert.equal(playlist.status, 200);
      assert.match(playlist.url, new RegExp(`^${edge.url}/recordings/`), 'redirected to the edge');
      const parsed = strictMedia(await playlist.text());
      assert.equal(parsed.playlistType, 'EVENT');
      assert.ok(parsed.segments.length >= 1 && parsed.segments.every((s) => s.uri.includes(`token=${token}`)), 'its segments carry the token');
    } finally {
      await stopPublish(ffmpeg);
    }
  });

  it('the /play page of a recorded stream shows its DVR button, plays the window from its start (frames of then), and goes back to live', async () => {
    const stream = 'dvr-show';
    const { ffmpeg, errors } = await publishRecorded(stream);
    try {
      await waitFor('three recorded segments', async () => (await completeSegments(stream)) >= 3, 90_000, 500).catch((error: Error) => explained(new Error(`${error.message}; ffmpeg: ${errors()}`)));
      const answer = (await (await dvrAnswer(`stream=${stream}`)).json()) as DvrAnswer;
      const recordingStart = Date.parse(answer.recording.startedAt);

      const viewer = await browser.page(balancer.url);
      pages.push(viewer);
      let view: DvrView | undefined;
      await viewer.goto(`${balancer.url}/play/${stream}`);
      const live = await playing(viewer, 'the page to play the stream live', { timeoutMs: 60_000 });
      assert.ok(live.mode === 'webrtc' || live.mode === 'hls', `live: ${live.mode}`);
      // The DVR control: the player asked the balancer when it started (and again once it played).
      await waitFor('the DVR button', async () => (view = await dvrView(viewer)).dvrButton, 45_000, 250).catch((error: Error) => {
        throw new Error(`${error.message}; the page: ${JSON.stringify(view)}`, { cause: error });
      });
      assert.equal(view!.dvr?.recordingId, answer.recording.id);
      assert.equal(view!.liveButton, false);
      assert.equal(view!.controls, false, 'live: no seek bar');

      // Entering DVR (the button): the window's playlist in hls.js, near its live end (three target
      // durations before it: with eight 2 s segments or more, well after the window's start).
      await waitFor('eight recorded segments', async () => (await completeSegments(stream)) >= 8, 90_000, 500).catch(explained);
      const { sessions } = await playerStats(viewer);
      await viewer.locator('#dvr').click();
      const progressing = async (what: string, check: (v: DvrView) => boolean, timeoutMs = 60_000) => {
        let first: DvrView | undefined;
        await waitFor(what, async () => {
          view = await dvrView(viewer);
          if (!(view.mode === 'dvr' && view.state === 'playing' && view.videoWidth > 0 && check(view))) return false;
          first ??= view;
          // Moving on: the playhead and the frames decoded, since the first look that held.
          return view.currentTime > first.currentTime + 0.5 && view.framesDecoded > first.framesDecoded + 10;
        }, timeoutMs, 250).catch((error: Error) => {
          throw new Error(`${error.message}; the page: ${JSON.stringify(view)}`, { cause: error });
        });
        return view!;
      };
      const atLiveEnd = await progressing('DVR playing', (v) => v.sessions > sessions);
      assert.equal(atLiveEnd.statsMode, 'DVR', 'the stats say DVR');
      assert.match(atLiveEnd.badge, /^DVR\b/, `the badge: ${atLiveEnd.badge}`);
      assert.equal(atLiveEnd.controls, true, 'the video shows its controls: the seek bar over the window');
      assert.equal(atLiveEnd.liveButton, true);
      assert.equal(atLiveEnd.dvrButton, false);
      assert.ok(atLiveEnd.currentTime > 3, `started near the live end of the window, not at its start: ${atLiveEnd.currentTime} s`);
      await screenshot(viewer, 'player-dvr');

      // Seeking to the start of the window, as the seek bar does: the picture is from then.
      await viewer.evaluate(() => {
        document.querySelector('video')!.currentTime = 0.5;
      });
      const atStart = await progressing('DVR playing from the start of the window', (v) => v.currentTime > 0.5 && v.currentTime < 8 && v.playingDate !== null && Date.parse(v.playingDate) < recordingStart + 10_000);
      const shownAt = Date.parse(atStart.playingDate!);
      const behindMs = Date.now() - shownAt;
      assert.ok(Math.abs(shownAt - (recordingStart + atStart.currentTime * 1000)) < 4000, `the picture's program date-time (${atStart.playingDate}) is the recording's start (${answer.recording.startedAt}) plus the position (${atStart.currentTime} s)`);
      assert.ok(behindMs >= 5000, `the picture is from ${behindMs} ms ago`);
      assert.ok(atStart.latencyMs !== null && atStart.latencyMs >= 5000, `the stats say how far behind live: ${atStart.latencyMs} ms`);
      assert.match(atStart.badge, /^DVR · .+ behind$/, `the badge: ${atStart.badge}`);
      await screenshot(viewer, 'player-dvr-start');
      console.log(`      DVR: entered at ${atLiveEnd.currentTime.toFixed(1)} s of the window (${atLiveEnd.latencyMs} ms behind live); seeked to its start: at ${atStart.currentTime.toFixed(1)} s, the picture of ${atStart.playingDate}, ${behindMs} ms ago; the badge "${atStart.badge}"`);

      // Live again: the normal start path (WebRTC here, or LL-HLS where it falls back).
      await viewer.locator('#go-live').click();
      const back = await playing(viewer, 'the page to play live again', { timeoutMs: 60_000, afterSession: atStart.sessions });
      assert.ok(back.mode === 'webrtc' || back.mode === 'hls', `live again: ${back.mode}`);
      view = await dvrView(viewer);
      assert.equal(view.controls, false);
      assert.equal(view.liveButton, false);
      assert.equal(view.dvrButton, true, 'the DVR button is back');
      assert.notEqual(view.statsMode, 'DVR');

      // The API's enterDvr(at): the window from that position (hls.js's start position).
      const { sessions: liveSessions } = await playerStats(viewer);
      await viewer.evaluate(() => (window as any).relaycastPlayer.enterDvr(2));
      const fromTwo = await progressing('DVR playing from 2 s (enterDvr)', (v) => v.sessions > liveSessions && v.currentTime >= 2 && v.currentTime < 10);
      console.log(`      enterDvr(2): playing at ${fromTwo.currentTime.toFixed(1)} s of the window, the picture of ${fromTwo.playingDate}`);
      await viewer.evaluate(() => (window as any).relaycastPlayer.leaveDvr());
      const again = await playing(viewer, 'the page to play live again (leaveDvr)', { timeoutMs: 60_000, afterSession: fromTwo.sessions });
      assert.ok(again.mode === 'webrtc' || again.mode === 'hls');
    } finally {
      await stopPublish(ffmpeg);
    }
  });
});
