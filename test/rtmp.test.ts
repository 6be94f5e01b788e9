import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Page } from 'playwright-core';
import { type Database } from '../db/Database.ts';
import { listAudit } from '../db/repositories/audit.ts';
import { listRelays } from '../db/repositories/relays.ts';
import { getStream } from '../db/repositories/streams.ts';
import { TestBrowser, play, playbackStats } from '../kit/browser.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { startOriginEdge, type OriginEdge } from './helpers/originEdge.ts';

/**
 * RTMP in, WebRTC out: real ffmpeg publishes to the origin's node-media-server, the origin bridges
 * it into mediasoup, an edge process relays it, Chromium plays it over WHEP.
 */

const SECRET = 'rtmp-test-secret-0123456789';
const ADMIN = 'rtmp-test-admin-token-0123456789';

const publishers = new Set<ChildProcess>();

/** ffmpeg publishing a 640x360 test picture and a tone, with or without B-frames, until killed. */
function publishRtmp(url: string, bframes: boolean): ChildProcess {
  const video = bframes
    ? ['-c:v', 'libx264', '-preset', 'veryfast', '-g', '30'] // x264's defaults: 3 B-frames
    : ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '30', '-bf', '0'];
  const child = spawn(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
      ...video, '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '120', '-f', 'flv', url],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  publishers.add(child);
  child.once('exit', () => publishers.delete(child));
  return child;
}

/** ffmpeg processes (pids) whose command line mentions `needle`, other than our publishers. */
function bridgePids(needle: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `ffmpeg.*-i rtmp://127.0.0.1:.*${needle}`], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function exitCode(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

async function decoding(viewer: Page, what: string, width = 640): Promise<number> {
  let frames = 0;
  await waitFor(
    `${what}: frames decoded and audio received`,
    async () => {
      const s = await playbackStats(viewer);
      frames = s.framesDecoded;
      return s.framesDecoded > 10 && s.videoWidth === width && s.audioPacketsReceived > 10;
    },
    25_000,
    250,
  );
  return frames;
}

describe('RTMP ingest played over WebRTC', function () {
  let cluster: OriginEdge;
  let db: Database;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let browser: TestBrowser;

  const createStream = (name: string) => cluster.createStream(name);
  const rtmpUrl = (key: string) => `rtmp://127.0.0.1:${origin.rtmpPort}/live/${key}`;

  before(async () => {
    cluster = await startOriginEdge({ secret: SECRET, admin: ADMIN });
    ({ db, origin, edge } = cluster);
    browser = await TestBrowser.launch();
  });
  afterEach(() => {
    for (const child of publishers) child.kill('SIGKILL');
  });
  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  for (const bframes of [false, true]) {
    const mode = bframes ? 'transcode' : 'passthrough';
    it(`plays H.264 ${bframes ? 'with B-frames (re-encoded)' : 'without B-frames (passed through)'} and AAC (as Opus) in Chromium`, async () => {
      const name = `rtmp-${mode}`;
      const { streamKey, rtmpUrl: advertised } = await createStream(name);
      // The admin API names the origin's RTMP address, and ffmpeg publishes to it as a user would.
      assert.equal(advertised, rtmpUrl(streamKey));
      const publisher = publishRtmp(advertised, bframes);
      const viewer = await browser.page(edge.url);
      try {
        await waitFor('the stream live', async () => (await getStream(db.knex, name))?.state === 'live', 20_000);
        const row = await getStream(db.knex, name);
        assert.equal(row?.ingestProtocol, 'rtmp');
        assert.equal(row?.originNodeId, 'origin-1');
        assert.deepEqual(row?.codecs, { video: 'H264', audio: 'opus' });
        assert.match(origin.output(), new RegExp(`"mode":"${mode}"`));
        assert.equal((await play(viewer, `${edge.url}/whep/${name}`)).status, 201);
        await decoding(viewer, mode);
        assert.equal((await playbackStats(viewer)).videoCodec, 'video/H264');
      } finally {
        publisher.kill('SIGKILL');
        await viewer.close();
      }
    });
  }

  it('refuses unknown and revoked keys, and a second publisher on a live key without disturbing the first', async () => {
    const unknown = publishRtmp(rtmpUrl(`sk_${'x'.repeat(43)}`), false);
    assert.notEqual(await exitCode(unknown, 20_000), 0, 'an unknown key is refused');

    const { streamKey: revoked } = await createStream('rtmp-revoked');
    const revoke = await fetch(`${origin.url}/api/v1/streams/rtmp-revoked/key`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(revoke.status, 204);
    assert.notEqual(await exitCode(publishRtmp(rtmpUrl(revoked), false), 20_000), 0, 'a revoked key is refused');
    assert.equal((await getStream(db.knex, 'rtmp-revoked'))?.state, 'idle');
    const denied = (await listAudit(db.knex, { action: 'stream.publish' })).filter((e) => e.outcome === 'denied');
    assert.ok(denied.length >= 2, 'both refusals are in the audit log');

    const { streamKey } = await createStream('rtmp-busy');
    const first = publishRtmp(rtmpUrl(streamKey), false);
    const viewer = await browser.page(edge.url);
    try {
      await waitFor('the stream live', async () => (await getStream(db.knex, 'rtmp-busy'))?.state === 'live', 20_000);
      const session = (await db.knex('streams').where({ name: 'rtmp-busy' }).first('publisher_session')).publisher_session;
      assert.equal((await play(viewer, `${edge.url}/whep/rtmp-busy`)).status, 201);
      const before = await decoding(viewer, 'the first publisher');
      const second = publishRtmp(rtmpUrl(streamKey), false);
      assert.notEqual(await exitCode(second, 20_000), 0, 'the second publisher is refused');
      await waitFor('frames still coming from the first publisher', async () => (await playbackStats(viewer)).framesDecoded > before + 30, 10_000);
      assert.equal(first.exitCode, null, 'the first publisher is still connected');
      assert.equal((await db.knex('streams').where({ name: 'rtmp-busy' }).first('publisher_session')).publisher_session, session);
    } finally {
      first.kill('SIGKILL');
      await viewer.close();
    }
  });

  it('restarts a bridge that dies, and on publisher disconnect clears the stream, its relays and its bridge', async () => {
    const { streamKey } = await createStream('rtmp-leaving');
    const publisher = publishRtmp(rtmpUrl(streamKey), false);
    const viewer = await browser.page(edge.url);
    try {
      await waitFor('the stream live', async () => (await getStream(db.knex, 'rtmp-leaving'))?.state === 'live', 20_000);
      assert.equal((await play(viewer, `${edge.url}/whep/rtmp-leaving`)).status, 201);
      await decoding(viewer, 'before the bridge dies');
      const [bridge] = bridgePids(streamKey);
      assert.ok(bridge, 'a bridge ffmpeg runs for the stream');

      process.kill(bridge, 'SIGKILL');
      await waitFor('a new bridge', () => bridgePids(streamKey).some((pid) => pid !== bridge), 10_000);
      const frames = (await playbackStats(viewer)).framesDecoded;
      await waitFor('frames again after the restart', async () => (await playbackStats(viewer)).framesDecoded > frames + 30, 15_000);
      assert.equal((await getStream(db.knex, 'rtmp-leaving'))?.state, 'live');
      assert.equal((await listRelays(db.knex)).length, 1);

      const [restarted] = bridgePids(streamKey);
      publisher.kill('SIGKILL');
      await waitFor('the stream idle', async () => (await getStream(db.knex, 'rtmp-leaving'))?.state === 'idle', 15_000);
      await waitFor('the relay gone', async () => (await listRelays(db.knex)).length === 0, 10_000);
      await waitFor('the bridge process gone', () => !alive(restarted!), 10_000);
      assert.deepEqual(bridgePids(streamKey), []);
    } finally {
      publisher.kill('SIGKILL');
      await viewer.close();
    }
  });

  it('takes a publisher back within node-media-server\'s 30 s grace window (an encoder reconnecting, or any publisher through HAProxy)', async () => {
    const { streamKey } = await createStream('rtmp-again');
    for (const round of ['first', 'again']) {
      const publisher = publishRtmp(rtmpUrl(streamKey), false);
      try {
        await waitFor(`the stream live (${round})`, async () => (await getStream(db.knex, 'rtmp-again'))?.state === 'live', 20_000);
        assert.equal(bridgePids(streamKey).length, 1, 'a bridge for the publish');
      } finally {
        publisher.kill('SIGKILL');
      }
      await waitFor('the stream idle', async () => (await getStream(db.knex, 'rtmp-again'))?.state === 'idle', 15_000);
    }
  });
});

describe('RTMP bridges when the origin goes away', () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`leaves no bridge behind when the origin gets ${signal}`, async () => {
      const node = await startRelaycast({ roles: ['all'], env: { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN } });
      let publisher: ChildProcess | undefined;
      try {
        const res = await fetch(`${node.url}/api/v1/streams`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'orphan-check' }),
        });
        const { streamKey } = (await res.json()) as { streamKey: string };
        publisher = publishRtmp(`rtmp://127.0.0.1:${node.rtmpPort}/live/${streamKey}`, false);
        await waitFor('a bridge ffmpeg', () => bridgePids(streamKey).length === 1, 20_000);
        const [bridge] = bridgePids(streamKey);
        if (signal === 'SIGTERM') assert.equal(await node.stop(), 0, 'a clean exit');
        else await node.kill();
        await waitFor('the bridge to exit with its origin', () => !alive(bridge!), 20_000);
      } finally {
        publisher?.kill('SIGKILL');
        await node.kill();
      }
    });
  }
});
