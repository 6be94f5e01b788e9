import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import type { Page } from 'playwright-core';
import { getStream } from '../db/repositories/streams.ts';
import { TestBrowser, play, playbackStats, selectLayer, viewerExtensions } from '../kit/browser.ts';
import { waitFor } from '../kit/processes.ts';
import { startOriginEdge, type OriginEdge } from './helpers/originEdge.ts';

/**
 * The RTMP ladder end to end: real ffmpeg publishes x264 with its default settings (High profile,
 * B-frames) over RTMP; the origin's bridge makes the ladder's layers in one ffmpeg, as one
 * simulcast producer on one PlainTransport; the edge relays every layer and Chromium plays the top
 * one. What the test reads is what an operator sees: the origin's /metrics (each layer's incoming
 * bitrate), the admin API, the log.
 */

const SECRET = 'rtmp-ladder-test-secret-0123456789';
const ADMIN = 'rtmp-ladder-test-admin-token-0123456789';
/** The origin's own ladder: per-stream settings must win over it, and a smaller input must not be scaled up to it. */
const NODE_LADDER = '540,270';

const publishers = new Set<ChildProcess>();

/** ffmpeg publishing a test picture and a tone with x264's defaults (High, B-frames) and 2-second key frames, until killed. */
function publishRtmp(url: string, size: string): ChildProcess {
  const child = spawn(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', `testsrc=size=${size}:rate=30`, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
      '-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '180', '-f', 'flv', url],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  publishers.add(child);
  child.once('exit', () => publishers.delete(child));
  return child;
}

/** The origin's relaycast_ingest_layer_bitrate_bps for one stream, by layer. */
async function layerBitrates(baseUrl: string, stream: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const match of text.matchAll(/^relaycast_ingest_layer_bitrate_bps\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (labels.stream === stream) out[labels.layer!] = Number(match[2]);
  }
  return out;
}

/** Waits until exactly `layers` report incoming media; returns their bitrates. */
async function layersReceiving(baseUrl: string, stream: string, layers: string[]): Promise<Record<string, number>> {
  let seen: Record<string, number> = {};
  await waitFor(
    `layers ${layers.join(', ')} of ${stream} receiving media`,
    async () => {
      seen = await layerBitrates(baseUrl, stream);
      return Object.keys(seen).sort().join() === [...layers].sort().join() && Object.values(seen).every((bps) => bps > 0);
    },
    20_000,
    500,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last seen ${JSON.stringify(seen)}`);
  });
  return seen;
}

function bridgePids(key: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `ffmpeg.*-i rtmp://127.0.0.1:.*${key}`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function decodingAt(viewer: Page, height: number, what: string, moreThan = 10): Promise<number> {
  let last = { framesDecoded: 0, frameHeight: 0 };
  await waitFor(
    `${what}: frames decoded at ${height} lines`,
    async () => {
      last = await playbackStats(viewer);
      return last.framesDecoded > moreThan && last.frameHeight === height;
    },
    30_000,
    250,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last ${JSON.stringify(last)}`);
  });
  return last.framesDecoded;
}

describe('RTMP ladder: simulcast layers made from one RTMP publish', function () {
  let cluster: OriginEdge;
  let browser: TestBrowser;

  before(async () => {
    cluster = await startOriginEdge({ secret: SECRET, admin: ADMIN, originArgs: ['--rtmp-ladder', NODE_LADDER] });
    browser = await TestBrowser.launch();
  });
  afterEach(() => {
    for (const child of publishers) child.kill('SIGKILL');
  });
  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  it('makes 720/360/180 from a 720p x264 High publish when the stream asks through the admin API; every layer receives media, the edge plays the top one, a restarted bridge carries on, a viewer can pin a lower layer', async () => {
    const { origin, edge, db } = cluster;
    const name = 'ladder-720';
    const { streamKey } = await cluster.createStream(name);
    const patched = await fetch(`${origin.url}/api/v1/streams/${name}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rtmpLadder: [360, 720, 180] }),
    });
    assert.equal(patched.status, 200, await patched.clone().text());
    assert.deepEqual(((await patched.json()) as { rtmpLadder: unknown }).rtmpLadder, [720, 360, 180]);

    publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, '1280x720');
    const viewer = await browser.page(edge.url);
    try {
      await waitFor('the stream live', async () => (await getStream(db.knex, name))?.state === 'live', 20_000);
      assert.match(origin.output(), /"mode":"ladder"/);
      assert.match(origin.output(), /"layers":\["320x180@200k","640x360@700k","1280x720@2500k"\]/);
      const layers = await layersReceiving(origin.url, name, ['180p', '360p', '720p']);
      assert.ok(layers['720p']! > layers['180p']!, `the top layer carries more than the lowest: ${JSON.stringify(layers)}`);

      assert.equal((await play(viewer, `${edge.url}/whep/${name}`)).status, 201);
      const frames = await decodingAt(viewer, 720, 'the viewer');
      const stats = await playbackStats(viewer);
      assert.equal(stats.videoCodec, 'video/H264');
      assert.ok(stats.audioPacketsReceived > 0, 'audio plays too');

      // The supervisor restarts a bridge that dies, each layer's sequence numbers going on forward.
      const [bridge] = bridgePids(streamKey);
      assert.ok(bridge, 'one bridge ffmpeg');
      process.kill(bridge, 'SIGKILL');
      await waitFor('a new bridge', () => bridgePids(streamKey).some((pid) => pid !== bridge), 10_000);
      await decodingAt(viewer, 720, 'the viewer after the restart', frames + 60);
      await layersReceiving(origin.url, name, ['180p', '360p', '720p']);
      assert.equal(bridgePids(streamKey).length, 1, 'still one ffmpeg for all the layers');

      // Each layer is a layer of one simulcast producer: a viewer pins the lowest by its rid (its
      // height) and gets it (the switch needs each layer's RTCP sender reports).
      const layerUrl = (await viewerExtensions(viewer))['urn:ietf:params:whep:ext:core:layer'];
      assert.ok(layerUrl, 'the WHEP layer extension is offered');
      const pinned = await selectLayer(viewer, layerUrl, { rid: '180p' });
      assert.equal(pinned.status, 200, pinned.body);
      await decodingAt(viewer, 180, 'the viewer pinned to 180p');
    } finally {
      await viewer.close();
    }
  });

  it('serves the ladder over HLS as variants: the publish itself (x264 High, copied) and each smaller rung, with rendition reports; ffprobe reads each', async () => {
    const { origin, edge, db } = cluster;
    const name = 'ladder-hls';
    const { streamKey } = await cluster.createStream(name, { rtmpLadder: [720, 360, 180] });
    publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, '1280x720');
    await waitFor('the stream live', async () => (await getStream(db.knex, name))?.state === 'live', 20_000);
    await layersReceiving(origin.url, name, ['180p', '360p', '720p']);
    const started = Date.now();
    const index = await fetch(`${edge.url}/hls/${name}/index.m3u8`);
    assert.equal(index.status, 200, await index.clone().text());
    console.log(`      multivariant playlist of a cold stream (three packagers started) in ${Date.now() - started} ms`);
    const variants = [...(await index.text()).matchAll(/#EXT-X-STREAM-INF:BANDWIDTH=(\d+),CODECS="([^"]+)",RESOLUTION=(\d+x\d+)\n(\S+)/g)].map((m) => ({
      bandwidth: Number(m[1]),
      codecs: m[2]!,
      resolution: m[3]!,
      uri: m[4]!,
    }));
    // The 720p rung is no smaller than the publish: the publish itself (High profile, as sent) stands for it.
    assert.deepEqual(variants.map((v) => [v.resolution, v.uri]), [['1280x720', 'media.m3u8'], ['640x360', 'media-1.m3u8'], ['320x180', 'media-2.m3u8']]);
    assert.match(variants[0]!.codecs, /^avc1\.64/, 'the publish as it is: x264 High');
    assert.match(variants[2]!.codecs, /^avc1\.[0-9a-f]{6},mp4a\.40\.2$/, 'a rung: encoded from the publish for HLS, with its audio');
    const lowest = await (await fetch(`${edge.url}/hls/${name}/media-2.m3u8`)).text();
    assert.match(lowest, /#EXT-X-RENDITION-REPORT:URI="media\.m3u8",LAST-MSN=\d+,LAST-PART=\d+/);
    assert.match(lowest, /#EXT-X-RENDITION-REPORT:URI="media-1\.m3u8",LAST-MSN=\d+,LAST-PART=\d+/);
    for (const [i, variant] of variants.entries()) {
      // A plain HLS client (ffmpeg) reads segments, not parts: it finds nothing in a playlist that lists no complete segment yet.
      await waitFor(`${variant.uri} to list a segment`, async () => /#EXTINF/.test(await (await fetch(`${edge.url}/hls/${name}/${variant.uri}`)).text()), 20_000, 250);
      const probed = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height', '-of', 'csv=p=0', `${edge.url}/hls/${name}/${variant.uri}`], {
        encoding: 'utf8',
        timeout: 30_000,
      }).trim();
      // ffprobe lists an HLS input's video under its program (when it finds one) and again on its own.
      assert.equal(probed.split('\n').find(Boolean), `h264,${variant.resolution.replace('x', ',')}`, `variant ${i}: ${JSON.stringify(probed)}`);
    }
  });

  it('follows the origin\'s --rtmp-ladder when the stream sets none, never scaling a 360p input up: 360 and 270 only', async () => {
    const { origin, db } = cluster;
    const name = 'ladder-default-360';
    const { streamKey } = await cluster.createStream(name);
    const shown = (await (await fetch(`${origin.url}/api/v1/streams/${name}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { rtmpLadder: unknown };
    assert.equal(shown.rtmpLadder, null, 'the stream follows the node');
    publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, '640x360');
    await waitFor('the stream live', async () => (await getStream(db.knex, name))?.state === 'live', 20_000);
    await layersReceiving(origin.url, name, ['270p', '360p']);
    assert.match(origin.output(), /"layers":\["480x270@450k","640x360@700k"\]/);
  });

  it('passes a stream through as one layer when its own setting is off, whatever the node\'s', async () => {
    const { origin, db } = cluster;
    const name = 'ladder-off';
    const { streamKey } = await cluster.createStream(name, { rtmpLadder: 'off' });
    publishRtmp(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, '640x360');
    await waitFor('the stream live', async () => (await getStream(db.knex, name))?.state === 'live', 20_000);
    assert.deepEqual(await layerBitrates(origin.url, name), {}, 'no layers');
    const line = origin.output().split('\n').find((l) => l.includes('rtmp bridge started') && l.includes(`"stream":"${name}"`));
    assert.match(line ?? '', /"mode":"transcode"/, 'x264 defaults have B-frames: re-encoded, as one layer');
  });
});
