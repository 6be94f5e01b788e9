import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as HLS from 'hls-parser';
import { HlsCache } from '../edge/HlsCache.ts';
import { createLogger } from '../core/logger.ts';
import { Fmp4Reader, type Fmp4Fragment } from '../media/hls/Fmp4Reader.ts';
import { HlsPackager } from '../media/hls/HlsPackager.ts';
import { answerHls, withQuery, type HlsAnswer } from '../media/hls/hlsFiles.ts';
import { LivePlaylist } from '../media/hls/LivePlaylist.ts';
import { type Problem } from '../core/errors.ts';

/**
 * The HLS packaging layer: a real ffmpeg encoding a test picture with x264's defaults (High
 * profile, B-frames, a key frame every 2 s) and AAC, packaged by HlsPackager, its playlists read by
 * hls-parser in strict mode (which checks RFC 8216bis's LL-HLS rules); LivePlaylist's grouping and
 * blocking with made-up fragments; the edge's cache coalescing a hundred requests into one.
 */

const quiet = createLogger('silent');

/** ffmpeg reading a synthetic source in real time: x264 (its defaults but a 2 s GOP), AAC. */
function testSource(seconds = 30) {
  return {
    args: [
      '-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
      '-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=30:duration=${seconds}`,
      '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
      '-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
    ],
  };
}

const strict = (text: string) => {
  HLS.setOptions({ strictMode: true, silent: true });
  try {
    return HLS.parse(text);
  } finally {
    HLS.setOptions({ strictMode: false });
  }
};

const text = (answer: HlsAnswer) => answer.body.toString();

function fragment(duration: number, independent: boolean, start = 0): Fmp4Fragment {
  return { data: Buffer.alloc(100), start, duration, independent };
}

describe('HLS packaging (ffmpeg → CMAF → LL-HLS playlists)', function () {
  this.timeout(60_000);
  let packager: HlsPackager;

  before(async () => {
    packager = new HlsPackager({ stream: 'unit', source: testSource(), logger: quiet });
    await packager.ready();
    // Two segments and a bit: a key frame every 2 s.
    await packager.playlist.waitUntil(() => packager.playlist.segments.length >= 2, 15_000);
  });

  after(() => packager?.close('test over'));

  it('reads the init segment: H.264 High and AAC-LC, with their codec strings and picture size', () => {
    const init = packager.init!;
    const video = init.tracks.find((t) => t.kind === 'video')!;
    const audio = init.tracks.find((t) => t.kind === 'audio')!;
    assert.match(video.codec, /^avc1\.64/, 'x264 defaults to High (profile_idc 100 = 0x64)');
    assert.equal(audio.codec, 'mp4a.40.2');
    assert.deepEqual([video.width, video.height], [640, 360]);
    assert.equal(init.data.toString('latin1', 4, 8), 'ftyp');
  });

  it('cuts segments at key frames (2 s) and parts within PART-TARGET; strict hls-parser takes the playlists', async () => {
    const media = strict(text(await answerHls([packager], 'media.m3u8', {}))) as InstanceType<typeof HLS.types.MediaPlaylist>;
    assert.equal(media.lowLatencyCompatibility?.canBlockReload, true);
    assert.ok(media.partTargetDuration! <= 0.5);
    const done = media.segments.filter((s) => s.uri);
    assert.ok(done.length >= 2, `complete segments: ${done.length}`);
    for (const s of done) {
      assert.ok(Math.abs(s.duration - 2) < 0.05, `segment of ${s.duration} s with a 2 s GOP`);
      assert.ok(s.programDateTime instanceof Date);
      assert.ok(s.parts.length === 0 || s.parts[0]!.independent, 'a segment starts with an independent part');
    }
    const parts = media.segments.flatMap((s) => s.parts).filter((p) => !p.hint);
    assert.ok(parts.length >= 6, `parts listed: ${parts.length}`);
    for (const p of parts) assert.ok(p.duration! <= media.partTargetDuration! + 1e-6, `part of ${p.duration} s`);
    assert.ok(media.prefetchSegments.length === 0 || media.renditionReports.length >= 0);
    assert.match(text(await answerHls([packager], 'media.m3u8', {})), /#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-[0-9a-f]{8}-\d+\.m4s"/);
    const multivariant = strict(text(await answerHls([packager], 'index.m3u8', {}))) as InstanceType<typeof HLS.types.MasterPlaylist>;
    assert.equal(multivariant.variants.length, 1);
    assert.match(multivariant.variants[0]!.codecs!, /^avc1\.64[0-9a-f]{4},mp4a\.40\.2$/);
    assert.ok(multivariant.variants[0]!.bandwidth > 10_000);
  });

  it('serves what the playlist lists: init, segments and parts as fMP4, immutable', async () => {
    const playlist = text(await answerHls([packager], 'media.m3u8', {}));
    const init = await answerHls([packager], packager.initUri, {});
    assert.equal(init.headers['cache-control'], 'public, max-age=31536000, immutable');
    const segmentUri = /^seg-.*\.m4s$/m.exec(playlist)![0];
    const partUri = /URI="(part-[^"]+)"/.exec(playlist)![1]!;
    for (const uri of [segmentUri, partUri]) {
      const answer = await answerHls([packager], uri, {});
      assert.equal(answer.status, 200);
      assert.equal(answer.body.toString('latin1', 4, 8), 'moof');
    }
    await assert.rejects(answerHls([packager], `seg-${packager.playlist.run}-1.m4s`, {}), (e: Problem) => e.status === 404);
  });

  it('holds a blocking reload until the part it names, and refuses one too far ahead (400) or malformed', async () => {
    const { playlist } = packager;
    const next = { msn: playlist.lastMsn + 1, part: 2 };
    const started = Date.now();
    const held = text(await answerHls([packager], 'media.m3u8', { _HLS_msn: String(next.msn), _HLS_part: String(next.part) }));
    const waited = Date.now() - started;
    assert.ok(playlist.holds(next));
    const parsed = strict(held) as InstanceType<typeof HLS.types.MediaPlaylist>;
    const last = parsed.segments.at(-1)!;
    assert.ok(parsed.mediaSequenceBase! + parsed.segments.length - 1 >= next.msn, `answered after ${waited} ms with the part asked for`);
    assert.ok(last.parts.length > 0 || last.uri);
    await assert.rejects(answerHls([packager], 'media.m3u8', { _HLS_msn: String(playlist.lastMsn + 10) }), (e: Problem) => e.status === 400);
    await assert.rejects(answerHls([packager], 'media.m3u8', { _HLS_part: '1' }), (e: Problem) => e.status === 400);
    await assert.rejects(answerHls([packager], 'media.m3u8', { _HLS_msn: 'x' }), (e: Problem) => e.status === 400);
  });

  it('waits for the part a preload hint names and answers it once it is made', async () => {
    const hinted = /PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/.exec(text(await answerHls([packager], 'media.m3u8', {})))![1]!;
    const answer = await answerHls([packager], hinted, {});
    assert.equal(answer.status, 200);
    assert.ok(answer.body.length > 0);
  });

  it('names a second run of the same stream apart: new run id, media sequence numbers going on forward', async () => {
    const second = new HlsPackager({ stream: 'unit', source: testSource(5), logger: quiet });
    try {
      await second.ready();
      assert.notEqual(second.playlist.run, packager.playlist.run);
      assert.ok(second.playlist.lastMsn + 1 >= packager.playlist.segments[0]!.msn, 'sequence numbers start from the clock, not 0');
      const closed = once(second, 'closed');
      second.close('test over', true);
      await closed;
      assert.match(second.playlist.render({ initUri: second.initUri }), /#EXT-X-ENDLIST\n$/);
    } finally {
      second.close('test over');
    }
  });
});

describe('LivePlaylist (made-up fragments)', () => {
  const options = { run: 'abcdef01', partTarget: 0.334, segmentMin: 1, targetDuration: 4, window: 36, now: () => 1_800_000_000_000 };

  it('groups 100 ms fragments into parts of at most the target, and starts a segment at a key frame after 1 s', () => {
    const playlist = new LivePlaylist(options);
    for (let i = 0; i < 45; i++) playlist.addFragment(fragment(0.1, i % 20 === 0, i * 0.1));
    assert.equal(playlist.segments.length, 2);
    for (const segment of playlist.segments) {
      assert.ok(Math.abs(segment.duration - 2) < 1e-9);
      assert.ok(segment.parts[0]!.independent);
      for (const part of segment.parts) assert.ok(part.duration <= 0.334 + 1e-9);
    }
    assert.equal(playlist.segments[0]!.msn, 1_800_000_000, 'the first media sequence number is the clock in seconds');
  });

  it('stamps a segment with the wall clock of its media once a burst (an RTMP server\'s cached GOP) is over', () => {
    let now = 1_800_000_000_000;
    const playlist = new LivePlaylist({ ...options, now: () => now });
    // The first 2 s of media arrive at once, 2 s late; then in real time.
    for (let i = 0; i < 20; i++) playlist.addFragment(fragment(0.1, i % 20 === 0, i * 0.1));
    for (let i = 20; i < 45; i++) {
      now += 100;
      playlist.addFragment(fragment(0.1, i % 20 === 0, i * 0.1));
    }
    // Fragment i ends at media (i + 1) × 0.1 s; from the burst's last one on, each arrives 100 ms
    // after the one before: the wall clock is 2 s behind the first arrival's.
    const offset = 1_800_000_000_000 - 2000;
    for (const segment of playlist.segments) assert.equal(segment.programDateTime, Math.round(segment.mediaStart * 1000 + offset));
  });

  it('cuts a segment at TARGETDURATION when key frames are further apart, and does not call it independent', () => {
    const playlist = new LivePlaylist(options);
    for (let i = 0; i < 100; i++) playlist.addFragment(fragment(0.1, i === 0, i * 0.1));
    assert.ok(playlist.segments.length >= 2);
    assert.ok(playlist.segments.every((s) => s.duration <= 4 + 1e-9));
    assert.equal(playlist.segments[1]!.parts[0]!.independent, false);
  });

  it('answers delta updates with EXT-X-SKIP, and lists parts only near the live edge', () => {
    const playlist = new LivePlaylist(options);
    for (let i = 0; i < 400; i++) playlist.addFragment(fragment(0.1, i % 20 === 0, i * 0.1));
    const full = playlist.render({ initUri: 'init-abcdef01.mp4' });
    const delta = playlist.render({ initUri: 'init-abcdef01.mp4', skip: true });
    const parsedFull = strict(full) as InstanceType<typeof HLS.types.MediaPlaylist>;
    assert.ok(parsedFull.segments.length >= 17, `window of ${parsedFull.segments.length} segments`);
    const skipped = Number(/#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)/.exec(delta)?.[1]);
    assert.ok(skipped > 0);
    assert.ok(delta.length < full.length);
    const withParts = parsedFull.segments.filter((s) => s.parts.length > 0).length;
    assert.equal(withParts, 3, 'parts are listed for the last three segments');
  });

  it('lists parts for three segments counting the preload hint\'s, also right after a key frame opened a segment', () => {
    const playlist = new LivePlaylist(options);
    // The key frame that opens the fifth segment is in, none of its parts is done yet.
    for (let i = 0; i <= 80; i++) playlist.addFragment(fragment(0.1, i % 20 === 0, i * 0.1));
    const parsed = strict(playlist.render({ initUri: 'init-abcdef01.mp4' })) as InstanceType<typeof HLS.types.MediaPlaylist>;
    assert.equal(parsed.segments.filter((s) => s.parts.length > 0).length, 3);
  });

  it('wakes a blocking reload when its part is made, and every waiter when the stream ends', async () => {
    const playlist = new LivePlaylist(options);
    playlist.addFragment(fragment(0.1, true));
    const point = { msn: playlist.lastMsn + 1, part: 1 };
    const waiting = playlist.waitUntil(() => playlist.holds(point), 5000);
    for (let i = 1; i < 6; i++) playlist.addFragment(fragment(0.1, false, i * 0.1));
    assert.equal(await waiting, false);
    const never = playlist.waitUntil(() => false, 5000);
    playlist.end();
    assert.equal(await never, true);
    assert.match(playlist.render({ initUri: 'i.mp4' }), /#EXT-X-ENDLIST/);
  });

  it('adds a query (a play token) to every URI of a playlist', () => {
    const playlist = new LivePlaylist(options);
    for (let i = 0; i < 25; i++) playlist.addFragment(fragment(0.1, i % 20 === 0, i * 0.1));
    const tokened = withQuery(playlist.render({ initUri: 'init-abcdef01.mp4' }), 'token=t%2F1');
    assert.match(tokened, /#EXT-X-MAP:URI="init-abcdef01\.mp4\?token=t%2F1"/);
    assert.match(tokened, /^seg-abcdef01-\d+\.m4s\?token=t%2F1$/m);
    assert.match(tokened, /URI="part-abcdef01-\d+\.m4s\?token=t%2F1"/);
    strict(tokened);
  });
});

describe('Fmp4Reader', () => {
  it('refuses a stream that is not MP4 boxes', () => {
    const reader = new Fmp4Reader();
    assert.throws(() => reader.push(Buffer.from('this is not an mp4 stream at all')), /unreadable MP4 stream/);
  });
});

describe('HlsCache', () => {
  const answer = (cacheControl: string, body = 'x'): HlsAnswer => ({ status: 200, headers: { 'cache-control': cacheControl }, body: Buffer.from(body) });

  it('sends one request upstream for a hundred at once, and serves the next from memory', async () => {
    const cache = new HlsCache(1024 * 1024);
    let fetched = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const fetch = async () => {
      fetched++;
      await gate;
      return answer('public, max-age=31536000, immutable', 'part');
    };
    const all = Array.from({ length: 100 }, () => cache.get('s/part-1.m4s', fetch));
    release();
    const outcomes = (await Promise.all(all)).map((r) => r.outcome);
    assert.equal(fetched, 1);
    assert.equal(outcomes.filter((o) => o === 'miss').length, 1);
    assert.equal(outcomes.filter((o) => o === 'coalesced').length, 99);
    assert.equal((await cache.get('s/part-1.m4s', fetch)).outcome, 'hit');
    assert.equal(fetched, 1);
  });

  it('keeps an answer as long as its max-age, nothing that is not a 200, and stays within its bytes', async () => {
    let now = 0;
    const cache = new HlsCache(1024 * 1024, () => now);
    let fetched = 0;
    const playlist = async () => (fetched++, answer('public, max-age=1'));
    await cache.get('p', playlist);
    now = 900;
    await cache.get('p', playlist);
    now = 1100;
    await cache.get('p', playlist);
    assert.equal(fetched, 2);
    let failures = 0;
    const failing = async (): Promise<HlsAnswer> => (failures++, { status: 503, headers: {}, body: Buffer.from('{}') });
    await cache.get('f', failing);
    await cache.get('f', failing);
    assert.equal(failures, 2);
    const big = 'b'.repeat(300 * 1024);
    for (let i = 0; i < 10; i++) await cache.get(`big-${i}`, async () => answer('immutable, max-age=100', big));
    assert.ok(cache.bytes <= 1024 * 1024, `${cache.bytes} bytes kept`);
    assert.ok(cache.entries < 10);
  });
});
