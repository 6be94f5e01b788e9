import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { TestBrowser, publish, stopPublishing } from '../kit/browser.ts';
import { hlsPlayback, hlsPlaying, playHls, startPlayerServer, stopHls, strictMedia, type PlayerServer } from '../kit/hls.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { stopProcess, waitFor } from '../kit/processes.ts';
import { adminClient, publishTestRtmp } from '../kit/testPublish.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * Recording, proven with clients we did not write: a balancer, two origins and an edge on a
 * Postgres of their own, sharing one recordings directory (a volume the nodes share). Playback
 * starts at the balancer, which sends the player to the edge (307), as for live HLS.
 * ffmpeg publishes RTMP with x264's defaults (High, B-frames, 2 s key frames) and AAC, exactly
 * ten seconds of it; Chromium publishes over WHIP (VP8 and Opus). Then:
 * - the index in Postgres names every segment; the admin API lists the recording;
 * - the export is one MP4 with its index in front, which ffprobe reads without an error, with
 *   the duration that was streamed;
 * - hls.js in Chromium plays the recording (VOD) and seeks in it (a live recording's DVR window,
 *   its EVENT playlist, is test/dvr.test.ts's, through the web player);
 * - kill -9 of the recording origin loses at most what came after the last flush (a second), and
 *   the publisher's reconnect to the other origin continues the same recording, marked as a
 *   discontinuity;
 * - a private stream's recording needs a playback token; a deletion through the API is audited
 *   and leaves the files to their node's sweep.
 * Figures (media lost on kill -9, export time) are printed, not asserted.
 */

const SECRET = 'recording-e2e-secret-0123456789ab';
const ADMIN = 'recording-e2e-admin-token-0123456789';
/** Short heartbeats and TTL: a killed origin's placement is released after the TTL. */
const TTL_MS = 3000;
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', String(TTL_MS)];

/** The RTMP publish: ten seconds of 640x360 at 30 frames/s. */
const SECONDS = 10;
const FPS = 30;

/** ffmpeg publishing x264 with its defaults (High, B-frames) and a 2 s GOP (OBS's), AAC. */
const publishRtmp = (url: string, seconds: number) => publishTestRtmp(url, { seconds, fps: FPS });

interface ProbeResult {
  errors: string;
  format: { duration: number; formatName: string };
  video?: { codec: string; profile: string; width: number; height: number; start: number; duration: number; frames: number };
  audio?: { codec: string; start: number; duration: number };
}

/** ffprobe of a file: every frame counted (-count_frames), every error it finds (-v error). */
function probeFile(path: string): ProbeResult {
  const run = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries', 'format=duration,format_name:stream=codec_type,codec_name,profile,width,height,start_time,duration,nb_read_frames', '-of', 'json', path], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(run.status, 0, `ffprobe ${path}: ${run.stderr}`);
  const out = JSON.parse(run.stdout) as { format: Record<string, string>; streams: Array<Record<string, string>> };
  const video = out.streams.find((s) => s.codec_type === 'video');
  const audio = out.streams.find((s) => s.codec_type === 'audio');
  return {
    errors: run.stderr.trim(),
    format: { duration: Number(out.format.duration), formatName: out.format.format_name! },
    video: video && {
      codec: video.codec_name!,
      profile: video.profile!,
      width: Number(video.width),
      height: Number(video.height),
      start: Number(video.start_time),
      duration: Number(video.duration),
      frames: Number(video.nb_read_frames),
    },
    audio: audio && { codec: audio.codec_name!, start: Number(audio.start_time), duration: Number(audio.duration) },
  };
}

/** The top-level boxes of an MP4, in order. */
function topBoxes(data: Buffer): string[] {
  const boxes: string[] = [];
  for (let at = 0; at + 8 <= data.length && boxes.length < 100; ) {
    let size = data.readUInt32BE(at);
    if (size === 1) size = Number(data.readBigUInt64BE(at + 8));
    boxes.push(data.toString('latin1', at + 4, at + 8));
    if (size < 8) break;
    at += size;
  }
  return boxes;
}

interface RecordingView {
  id: string;
  stream: string;
  startedAt: string;
  endedAt: string;
  live: boolean;
  duration: number;
  bytes: number;
  playlistUrl: string;
  exportUrl: string;
}

describe('recording: RTMP (x264 defaults) and WHIP recorded, exported as MP4 (ffprobe), played back in hls.js', function () {
  this.timeout(300_000);
  let testDb: TestDatabase;
  let db: Database;
  let recordDir: string;
  let balancer: RelaycastProcess;
  let edge: RelaycastProcess;
  const origins = new Map<string, RelaycastProcess>();
  let browser: TestBrowser;
  let players: PlayerServer;
  const work = mkdtempSync(join(tmpdir(), 'relaycast-recording-test-'));

  const api = (method: string, path: string, body?: unknown) => adminClient(balancer.url, ADMIN)(method, path, body);
  const createStream = async (name: string, settings: Record<string, unknown>) => {
    const created = await api('POST', '/streams', { name, ...settings });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body as { streamKey: string; publishToken: string };
  };
  const recordings = async (stream: string): Promise<RecordingView[]> => {
    const listed = await api('GET', `/streams/${stream}/recordings`);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    return listed.body.items as RecordingView[];
  };
  const segments = (recording: string) => db.knex('recording_segments').where({ recording_id: recording }).orderBy('started_at');
  const startOrigin = async (id: string) => {
    const node = await startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: ['--node-id', id, '--record-dir', recordDir, ...common] });
    origins.set(id, node);
    return node;
  };
  /** Downloads the export of `recording` (a range with `query`), and ffprobes it. */
  const exported = async (recording: RecordingView, query = '') => {
    const started = Date.now();
    const res = await fetch(`${recording.exportUrl}${query}`);
    const firstByte = Date.now() - started;
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    const data = Buffer.from(await res.arrayBuffer());
    const path = join(work, `${recording.id}.mp4`);
    writeFileSync(path, data);
    return { data, probe: probeFile(path), firstByte, total: Date.now() - started };
  };
  const explained = (error: Error): never => {
    const logs = [...origins].map(([id, node]) => `--- ${id} ---\n${node.output().slice(-3000)}`);
    throw new Error(`${error.message}\n${logs.join('\n')}`, { cause: error });
  };

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    recordDir = join(work, 'recordings');
    // Started together: each waits only for its own readiness.
    [balancer, , edge, browser, players] = await Promise.all([
      startRelaycast({
        roles: ['balancer'],
        databaseUrl: testDb.url,
        env: { RELAYCAST_ADMIN_TOKEN: ADMIN, RELAYCAST_CLUSTER_SECRET: SECRET },
        args: ['--node-id', 'balancer-1', '--record-dir', recordDir, ...common],
      }),
      startOrigin('origin-1'),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: ['--node-id', 'edge-1', '--record-dir', recordDir, ...common] }),
      TestBrowser.launch(),
      startPlayerServer(),
    ]);
  });

  after(async () => {
    await browser?.close();
    await players?.close();
    for (const node of origins.values()) await node.stop();
    await edge?.stop();
    await balancer?.stop();
    await db?.close();
    await testDb?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  let rtmpRecording: RecordingView;

  it('records an RTMP publish with x264 defaults: a row per segment in Postgres, an MP4 export that ffprobe reads whole, index first, 10 s as streamed', async () => {
    const { streamKey } = await createStream('rec-rtmp', { record: true });
    const origin = origins.get('origin-1')!;
    const ffmpeg = publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, SECONDS);
    let ffmpegErr = '';
    ffmpeg.stderr!.on('data', (d) => (ffmpegErr += d));
    const [code] = await Promise.race([
      new Promise<[number | null]>((resolve) => ffmpeg.once('exit', (c) => resolve([c]))),
      new Promise<[number | null]>((resolve) => setTimeout(() => resolve([-1]), 60_000)),
    ]);
    assert.equal(code, 0, `ffmpeg: ${ffmpegErr}`);
    await waitFor('the recording closed (the stream ended)', async () => (await recordings('rec-rtmp'))[0]?.live === false, 30_000, 250).catch(explained);
    const [recording, ...more] = await recordings('rec-rtmp');
    assert.equal(more.length, 0);
    rtmpRecording = recording!;
    const rows = await segments(recording!.id);
    console.log(`      ${rows.length} segments, ${recording!.duration} s, ${recording!.bytes} bytes; codecs ${rows[0]?.codecs}`);
    assert.ok(rows.length >= 4, `${rows.length} segments for ${SECONDS} s`);
    assert.ok(rows.every((r) => r.complete && r.node_id === 'origin-1' && r.store === 'local'), JSON.stringify(rows.slice(0, 2)));
    assert.match(rows[0]!.codecs, /avc1\.64/, 'x264 defaults: High profile, recorded as sent');
    assert.match(rows[0]!.codecs, /mp4a/);

    const { data, probe, firstByte, total } = await exported(recording!);
    console.log(`      export: ${data.length} bytes, first byte after ${firstByte} ms, all after ${total} ms; ffprobe: ${JSON.stringify(probe)}`);
    assert.equal(probe.errors, '', 'ffprobe found errors in the export');
    const boxes = topBoxes(data);
    assert.ok(boxes.indexOf('moov') >= 0 && boxes.indexOf('moov') < boxes.indexOf('mdat'), `faststart: moov before mdat (${boxes.join(', ')})`);
    assert.equal(probe.video?.codec, 'h264');
    assert.equal(probe.video?.profile, 'High');
    assert.equal(probe.video?.width, 640);
    assert.equal(probe.audio?.codec, 'aac');
    // Every frame that was streamed, within two.
    assert.ok(Math.abs(probe.video!.frames - SECONDS * FPS) <= 2, `${probe.video!.frames} video frames of ${SECONDS * FPS} streamed`);
    assert.ok(Math.abs(probe.video!.duration - SECONDS) <= 2.5 / FPS, `video ${probe.video!.duration} s of ${SECONDS} s streamed`);
    // In sync: audio starts with the picture, as published: x264's B-frames put the first picture
    // two frames (67 ms) after the first audio, and a frame more is an AAC frame's rounding.
    assert.ok(Math.abs(probe.audio!.start - probe.video!.start) <= 3 / FPS, `audio starts at ${probe.audio!.start} s, video at ${probe.video!.start} s`);
    assert.ok(Math.abs(probe.audio!.duration - probe.video!.duration) < 0.1, `audio ${probe.audio!.duration} s beside video ${probe.video!.duration} s`);
  });

  it('plays the recording in hls.js (Chromium) as VOD, and seeks in it', async () => {
    const playlist = await (await fetch(rtmpRecording.playlistUrl)).text();
    const parsed = strictMedia(playlist);
    assert.equal(parsed.playlistType, 'VOD');
    assert.ok(parsed.endlist);
    const page = await browser.page(players.url);
    try {
      await playHls(page, rtmpRecording.playlistUrl);
      await hlsPlaying(page, 'hls.js playing the recording', 640);
      await page.evaluate(() => {
        (document.getElementById('video') as HTMLVideoElement).currentTime = 7;
      });
      await waitFor('the playhead past the seek point, frames shown there', async () => {
        const p = await hlsPlayback(page);
        return p.currentTime > 7.2;
      }, 20_000, 200);
      const after = await hlsPlayback(page);
      assert.deepEqual(after.errors.filter((e) => e.startsWith('fatal')), []);
      console.log(`      seeked to 7 s: playing at ${after.currentTime.toFixed(2)} s, ${after.totalVideoFrames} frames shown`);
    } finally {
      await stopHls(page).catch(() => undefined);
      await page.close();
    }
  });

  it('records a WHIP publish from Chromium (VP8 → H.264, Opus → AAC) and exports it', async () => {
    const { publishToken } = await createStream('rec-whip', { record: true });
    const origin = origins.get('origin-1')!;
    const page = await browser.page(origin.url);
    try {
      const published = await publish(page, `${origin.url}/whip/rec-whip`, publishToken, 'video/VP8');
      assert.equal(published.status, 201, published.body);
      await waitFor('three recorded segments of the WHIP stream', async () => {
        const [recording] = await recordings('rec-whip');
        return recording !== undefined && (await segments(recording.id).where({ complete: true })).length >= 3;
      }, 60_000, 500).catch(explained);
      assert.equal(await stopPublishing(page, publishToken), 200);
    } finally {
      await page.close();
    }
    await waitFor('the WHIP recording closed', async () => (await recordings('rec-whip'))[0]?.live === false, 30_000, 250).catch(explained);
    const [recording] = await recordings('rec-whip');
    const { probe } = await exported(recording!);
    console.log(`      WHIP: ${recording!.duration} s recorded; ffprobe: ${JSON.stringify(probe)}`);
    assert.equal(probe.errors, '');
    assert.equal(probe.video?.codec, 'h264');
    assert.equal(probe.audio?.codec, 'aac');
    assert.ok(Math.abs(probe.video!.duration - recording!.duration) < 0.5, `export ${probe.video!.duration} s, index ${recording!.duration} s`);
  });

  it('kill -9 of the recording origin loses at most the last flush; the reconnect to another origin continues the recording after a discontinuity', async () => {
    const { streamKey } = await createStream('rec-failover', { record: true });
    const second = await startOrigin('origin-2');
    const first = origins.get('origin-1')!;
    const before = publishRtmp(`rtmp://127.0.0.1:${first.rtmpPort}/live/${streamKey}`, 120);
    let recording: RecordingView | undefined;
    let flushed: { msn: number; duration: number } | undefined;
    try {
      // Killed once a segment being written has a row that says how far it was flushed: what the
      // kill must not lose.
      await waitFor('an open segment flushed half a second or more, after two whole ones', async () => {
        [recording] = await recordings('rec-failover');
        if (!recording) return false;
        const rows = await segments(recording.id);
        const open = rows.find((r) => !r.complete && r.duration >= 0.5);
        if (rows.filter((r) => r.complete).length < 2 || !open) return false;
        flushed = { msn: Number(open.msn), duration: open.duration };
        return true;
      }, 60_000, 50).catch(explained);
    } catch (error) {
      await stopProcess(before, 5000);
      throw error;
    }
    const killedAt = Date.now();
    await first.kill();
    origins.delete('origin-1');
    await stopProcess(before, 5000);
    const rowsAfterKill = await segments(recording!.id);
    const cut = rowsAfterKill.find((r) => Number(r.msn) === flushed!.msn)!;
    assert.ok(cut && !cut.complete && cut.duration >= flushed!.duration, `the flushed part of the open segment is still indexed: ${JSON.stringify(cut)}`);
    const lastRun = rowsAfterKill.at(-1)!;
    const recordedEnd = new Date(lastRun.started_at).getTime() + lastRun.duration * 1000;
    console.log(`      kill -9: the recording ends ${killedAt - recordedEnd} ms before the kill (the flushed open segment: ${cut.duration.toFixed(3)} s)`);

    // The publisher reconnects to the other origin once the dead one's placement is released.
    let after: ChildProcess | undefined;
    try {
      await waitFor('the publish live on origin-2', async () => {
        if (!after || after.exitCode !== null) after = publishRtmp(`rtmp://127.0.0.1:${second.rtmpPort}/live/${streamKey}`, 120);
        const row = await db.knex('streams').where({ name: 'rec-failover' }).first();
        return row?.state === 'live' && row.origin_node_id === 'origin-2';
      }, 60_000, 1000).catch(explained);
      await waitFor('two segments recorded on origin-2', async () => (await segments(recording!.id).where({ node_id: 'origin-2', complete: true })).length >= 2, 60_000, 500).catch(explained);
    } finally {
      if (after) await stopProcess(after, 5000);
    }
    const listed = await recordings('rec-failover');
    assert.equal(listed.length, 1, 'one recording, continued');
    await waitFor('the recording closed', async () => (await recordings('rec-failover'))[0]?.live === false, 30_000, 250).catch(explained);
    const playlist = await (await fetch(recording!.playlistUrl)).text();
    const parsed = strictMedia(playlist);
    assert.equal(parsed.segments.filter((s) => s.discontinuity).length, 1, playlist);
    const runs = new Set((await segments(recording!.id)).map((r) => r.run));
    assert.equal(runs.size, 2);
    // The export holds both runs: the one cut by the kill as far as it was flushed, then the other.
    const [final] = await recordings('rec-failover');
    const { probe } = await exported(final!);
    assert.equal(probe.errors, '');
    assert.ok(Math.abs(probe.video!.duration - final!.duration) < 0.5, `export ${probe.video!.duration} s, index ${final!.duration} s`);
  });

  it('a private stream\'s recording needs a playback token, which its playlist passes on', async () => {
    const { streamKey } = await createStream('rec-private', { record: true, private: true });
    const origin = origins.get('origin-2')!;
    const ffmpeg = publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, 4);
    await new Promise((resolve) => ffmpeg.once('exit', resolve));
    await waitFor('the private recording closed', async () => (await recordings('rec-private'))[0]?.live === false, 30_000, 250).catch(explained);
    const [recording] = await recordings('rec-private');
    assert.equal((await fetch(recording!.playlistUrl)).status, 401);
    const play = await signStreamToken(SECRET, { stream: 'rec-private', action: 'play' });
    assert.equal((await fetch(`${recording!.playlistUrl}?token=${play}`)).status, 403);
    const token = await signStreamToken(SECRET, { stream: 'rec-private', action: 'playback' });
    const res = await fetch(`${recording!.playlistUrl}?token=${token}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('cache-control') ?? '', /private/);
    const playlist = await res.text();
    const uris = playlist.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(uris.length > 0 && uris.every((u) => u.includes(`token=${token}`)), playlist);
    const segment = await fetch(new URL(uris[0]!, recording!.playlistUrl));
    assert.equal(segment.status, 200);
    assert.equal((await fetch(new URL(uris[0]!.split('?')[0]!, recording!.playlistUrl))).status, 401);
    // A made-up id is a 404, as is one of the wrong shape.
    assert.equal((await fetch(`${balancer.url}/recordings/AAAAAAAAAAAAAAAAAAAAAA/index.m3u8`)).status, 404);
    assert.equal((await fetch(`${balancer.url}/recordings/..%2F..%2Fetc/index.m3u8`)).status, 404);
  });

  it('deletes a recording through the API: gone from the index and playback at once, audited, its files queued for their node', async () => {
    const deleted = await api('DELETE', `/recordings/${rtmpRecording.id}`);
    assert.equal(deleted.status, 204);
    assert.equal((await api('GET', `/recordings/${rtmpRecording.id}`)).status, 404);
    assert.equal((await fetch(rtmpRecording.playlistUrl)).status, 404);
    assert.equal((await segments(rtmpRecording.id)).length, 0);
    const garbage = await db.knex('recording_garbage').where('key', 'like', `${rtmpRecording.id}/%`);
    assert.ok(garbage.length >= 5 && garbage.every((g) => g.node_id === 'origin-1'), JSON.stringify(garbage.slice(0, 3)));
    const audit = await db.knex('audit').where({ action: 'recording.delete' });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].target, 'rec-rtmp');
    // Its files are still on disk: origin-1 (killed above) would delete them at its next sweep.
    assert.ok(readFileSync(join(recordDir, garbage[0].key)).length > 0);
  });
});
