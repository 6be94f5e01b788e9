import assert from 'node:assert/strict';
import { LADDER_MAX_RUNGS, ladderProblem, parseLadder } from '../core/rtmpLadder.ts';
import { planLadder, renditionKbps } from '../origin/ladder.ts';

/** The plan as "WxH@kbps rid" lines, lowest first. */
const plan = (heights: number[], width: number, height: number, fps = 30) =>
  planLadder(heights, { width, height, fps }).map((r) => `${r.width}x${r.height}@${r.kbps} ${r.rid}`);

describe('RTMP ladder planning (heights → renditions)', () => {
  it('scales a larger input down to every rung, lowest first, with libwebrtc\'s bitrates', () => {
    assert.deepEqual(plan([720, 360, 180], 1920, 1080), ['320x180@200 180p', '640x360@700 360p', '1280x720@2500 720p']);
    assert.deepEqual(plan([1080, 540, 270], 1920, 1080), ['480x270@450 270p', '960x540@900 540p', '1920x1080@5000 1080p']);
    assert.deepEqual(plan([720, 360, 180], 1280, 720), ['320x180@200 180p', '640x360@700 360p', '1280x720@2500 720p']);
  });

  it('never upscales: rungs above the input come down to it and merge with the rungs they reach', () => {
    assert.deepEqual(plan([720, 360, 180], 640, 360), ['320x180@200 180p', '640x360@700 360p'], 'a 360p input gives 360 and 180 only');
    assert.deepEqual(plan([1080, 720, 360], 1280, 720), ['640x360@700 360p', '1280x720@2500 720p']);
    // 540p input: the 720 rung is the input's own size, well above 360.
    assert.deepEqual(
      plan([720, 360, 180], 960, 540).map((r) => r.split(' ')[1]),
      ['180p', '360p', '540p'],
    );
    // 400p: 400 and 360 would be 1.11× apart; the taller (the input's own picture) stays.
    assert.deepEqual(plan([720, 360, 180], 712, 400).map((r) => r.split('@')[0]), ['320x180', '712x400']);
    for (const [w, h] of [[320, 180], [356, 200], [160, 90]] as const) {
      assert.ok(plan([720, 360, 180], w, h).length < 2, `${w}x${h}: too small for a ladder`);
    }
  });

  it('keeps the input\'s aspect ratio in even sizes', () => {
    assert.deepEqual(plan([480, 240], 640, 480).map((r) => r.split('@')[0]), ['320x240', '640x480']);
    assert.deepEqual(plan([720, 360], 1280, 721).map((r) => r.split('@')[0]), ['640x360', '1280x720'], 'an odd input height is trimmed to even');
    assert.deepEqual(plan([360, 180], 1080, 1920).map((r) => r.split('@')[0]), ['102x180', '202x360'], 'portrait');
    for (const r of planLadder([720, 360, 180], { width: 1366, height: 768, fps: 30 })) {
      assert.equal(r.width % 2, 0);
      assert.equal(r.height % 2, 0);
    }
  });

  it('sets bitrates by pixels between the table\'s sizes, and half as much again above 30 fps', () => {
    assert.equal(renditionKbps(1280, 720, 30), 2500);
    assert.equal(renditionKbps(1280, 720, 60), 3750);
    assert.equal(renditionKbps(1280, 720, 25), 2500, 'no discount below 30 fps');
    const between = renditionKbps(854, 480, 30);
    assert.ok(between > 700 && between < 900, `480p: ${between}`);
    assert.equal(renditionKbps(3840, 2160, 30), 20_000, 'above 1080p in proportion to the pixels');
    assert.equal(renditionKbps(160, 90, 30), 50, 'below 180p in proportion to the pixels');
    const kbps = planLadder([1080, 720, 360], { width: 1920, height: 1080, fps: 30 }).map((r) => r.kbps);
    assert.deepEqual(kbps, [...kbps].sort((a, b) => a - b), 'bitrates rise with the layers');
  });
});

describe('RTMP ladder setting (core/rtmpLadder.ts)', () => {
  it('parses off and lists of heights, highest first', () => {
    assert.deepEqual(parseLadder('off'), []);
    assert.deepEqual(parseLadder('720,360,180'), [720, 360, 180]);
    assert.deepEqual(parseLadder(' 180, 720 ,360 '), [720, 360, 180]);
    assert.deepEqual(parseLadder('1080,540'), [1080, 540]);
  });

  it('refuses what is not a ladder, saying why', () => {
    for (const [text, why] of [
      ['720', /1 heights given/],
      ['1080,720,360,180', new RegExp(`4 heights given.*2 to ${LADDER_MAX_RUNGS}`)],
      ['720,361', /361 is not a height/],
      ['720,60', /60 is not a height/],
      ['4320,2160', /4320 is not a height/],
      ['720,640', /720 and 640 are too close/],
      ['720,720', /too close/],
      ['720p,360p', /is not a ladder/],
      ['on', /is not a ladder/],
      ['', /is not a ladder/],
    ] as const) {
      assert.throws(() => parseLadder(text), (error: Error) => error instanceof TypeError && why.test(error.message), text);
    }
    assert.equal(ladderProblem([720, 360, 180]), undefined);
    assert.match(ladderProblem([720.5, 360])!, /not a height/);
  });
});
