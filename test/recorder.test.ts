import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Fmp4Init } from '../media/hls/Fmp4Reader.ts';
import type { HlsPackager } from '../media/hls/HlsPackager.ts';
import { LivePlaylist } from '../media/hls/LivePlaylist.ts';
import { Recorder, type RecordedSegment, type RecordingIndex } from '../media/record/Recorder.ts';
import { LocalRecordingStore, type AppendFile } from '../media/record/RecordingStore.ts';

/**
 * The Recorder's logic against failures, with a real LivePlaylist and real files: a packager
 * stand-in feeds it 30 fps fragments (a key frame every 2 s), a local store that can be made to
 * fail (a full disk), an index that can be made to fail (Postgres away). What must hold: nothing
 * throws at the packager; a row never names more bytes than its file holds; a segment the disk
 * refused is left out and counted, the next ones are recorded; rows the index refused come in at a
 * later flush, with the recording's totals counted once.
 */

const FRAME_S = 1 / 30;
const logger = pino({ level: 'silent' });

/** The packager's side the recorder reads: its stream, its playlist, ready() and 'closed'. */
function fakePackager(): { packager: HlsPackager; feed(seconds: number): void; close(streamEnded: boolean): void } {
  const playlist = new LivePlaylist({ run: 'abcd1234', partTarget: 0.334, segmentMin: 1, targetDuration: 4, window: 36 });
  const emitter = new EventEmitter();
  let resolveReady!: (init: Fmp4Init) => void;
  const ready = new Promise<Fmp4Init>((resolve) => (resolveReady = resolve));
  const packager = Object.assign(emitter, { stream: 'rec', playlist, ready: () => ready }) as unknown as HlsPackager;
  let frame = 0;
  return {
    packager,
    feed(seconds) {
      for (let i = 0; i < Math.round(seconds / FRAME_S); i++, frame++) {
        // Two frames a fragment (as ffmpeg's 50 ms fragments at 30 fps), 1000 bytes each.
        if (frame % 2 === 1) continue;
        playlist.addFragment({ data: Buffer.alloc(1000, frame % 251), start: frame * FRAME_S, duration: 2 * FRAME_S, independent: frame % 60 === 0 });
        if (frame === 10) resolveReady({ data: Buffer.from('init'), tracks: [{ id: 1, kind: 'video', timescale: 90000, codec: 'avc1.64001f' }] });
      }
    },
    close(streamEnded) {
      playlist.end(streamEnded);
      emitter.emit('closed', 'test');
    },
  };
}

/** An in-memory index: the rows as last written, the recording's totals as the deltas add up. */
function memoryIndex() {
  const rows = new Map<string, RecordedSegment>();
  const totals = { duration: 0, bytes: 0, closed: false };
  let failing = false;
  const index: RecordingIndex = {
    open: async () => ({ id: 'recording-1', continued: false }),
    write: async (segment, added) => {
      if (failing) throw new Error('connection refused');
      rows.set(segment.key, { ...segment });
      totals.duration += added.duration;
      totals.bytes += added.bytes;
    },
    close: async () => {
      totals.closed = true;
    },
  };
  return { index, rows, totals, fail: (on: boolean) => (failing = on) };
}

/** A local store whose appends fail (ENOSPC) while `full` is set. */
class FillableStore extends LocalRecordingStore {
  full = false;
  override async append(key: string): Promise<AppendFile> {
    const file = await super.append(key);
    return {
      append: async (data) => {
        if (this.full) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        await file.append(data);
      },
      sync: () => file.sync(),
      close: () => file.close(),
    };
  }
}

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Recorder (media/record/Recorder.ts) against a full disk and an index away', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'relaycast-recorder-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('records every segment whole, rows matching the files, and closes the recording when the stream ends', async () => {
    const store = new FillableStore(dir);
    const { index, rows, totals } = memoryIndex();
    const source = fakePackager();
    const recorder = new Recorder({ packager: source.packager, store, index, logger, flushMs: 50 });
    source.feed(6.5);
    await tick(200);
    source.close(true);
    await recorder.closed();
    const segments = [...rows.values()].sort((a, b) => a.msn - b.msn);
    assert.equal(segments.length, 4, 'three 2 s segments and the last half second');
    for (const s of segments) {
      assert.equal(readFileSync(join(dir, s.key)).length, s.bytes, `${s.key}: the row names the file's bytes`);
      assert.ok(s.complete);
    }
    assert.ok(Math.abs(totals.duration - 6.5) < 0.1, `recorded ${totals.duration} s`);
    assert.equal(totals.bytes, segments.reduce((sum, s) => sum + s.bytes, 0));
    assert.ok(totals.closed);
    assert.equal(readFileSync(join(dir, 'recording-1/abcd1234/init.mp4')).toString(), 'init');
  });

  it('attached to a packager that started earlier (a recorded RTMP publish): records what it made before, then on, nothing twice', async () => {
    const store = new FillableStore(dir);
    const { index, rows, totals } = memoryIndex();
    const source = fakePackager();
    source.feed(3.2); // a complete segment and part of the next before the recorder
    const recorder = new Recorder({ packager: source.packager, store, index, logger, flushMs: 50 });
    source.feed(3);
    await tick(150);
    source.close(true);
    await recorder.closed();
    const segments = [...rows.values()].sort((a, b) => a.msn - b.msn);
    assert.equal(segments[0]!.msn, source.packager.playlist.segments[0]!.msn, 'the first segment the packager made is recorded');
    for (const s of segments) assert.equal(readFileSync(join(dir, s.key)).length, s.bytes, `${s.key}: the row names the file's bytes`);
    assert.ok(Math.abs(totals.duration - 6.2) < 0.1, `recorded ${totals.duration} s of 6.2 s`);
  });

  it('a full disk: the segment it cut short is indexed as far as its file goes, counted, and the next ones are recorded', async () => {
    const store = new FillableStore(dir);
    const { index, rows } = memoryIndex();
    const source = fakePackager();
    const recorder = new Recorder({ packager: source.packager, store, index, logger, flushMs: 50 });
    const failures: string[] = [];
    recorder.on('failure', (where) => failures.push(where));
    source.feed(3); // a segment and a half
    await tick(150);
    store.full = true;
    source.feed(1);
    await tick(150);
    store.full = false;
    source.feed(4);
    await tick(150);
    source.close(false);
    await recorder.closed();
    assert.ok(failures.length >= 1 && failures.every((f) => f === 'store'), failures.join());
    const segments = [...rows.values()].sort((a, b) => a.msn - b.msn);
    const cut = segments.find((s) => !s.complete);
    assert.ok(cut, 'the segment the disk refused is marked incomplete');
    for (const s of segments) assert.equal(readFileSync(join(dir, s.key)).length, s.bytes, `${s.key}: no row names bytes its file lacks`);
    assert.ok(segments.filter((s) => s.complete && s.msn > cut.msn).length >= 1, 'segments after the full disk are recorded');
  });

  it('an index that hangs holds up no file write: the segments reach the disk, and the rows follow once it answers', async () => {
    const store = new FillableStore(dir);
    const { index, rows } = memoryIndex();
    let release!: () => void;
    const hung = new Promise<void>((resolve) => (release = resolve));
    const hanging: RecordingIndex = { ...index, write: async (segment, added) => (await hung, index.write(segment, added)) };
    const source = fakePackager();
    const recorder = new Recorder({ packager: source.packager, store, index: hanging, logger, flushMs: 50 });
    source.feed(4.5);
    await tick(300);
    assert.equal(rows.size, 0, 'no row while the index hangs');
    const written = ['0', '1'].map((i) => readFileSync(join(dir, `recording-1/abcd1234/${source.packager.playlist.segments[Number(i)]!.msn}.m4s`)).length);
    assert.deepEqual(written, source.packager.playlist.segments.slice(0, 2).map((s) => s.data!.length), 'both complete segments are on disk whole');
    release();
    source.close(true);
    await recorder.closed();
    assert.equal([...rows.values()].filter((r) => r.complete).length, 3);
  });

  it('the index away: rows come in at a later flush, the recording\'s totals counted once', async () => {
    const store = new FillableStore(dir);
    const { index, rows, totals, fail } = memoryIndex();
    const source = fakePackager();
    const recorder = new Recorder({ packager: source.packager, store, index, logger, flushMs: 50 });
    let failures = 0;
    recorder.on('failure', () => failures++);
    source.feed(1);
    await tick(150);
    fail(true);
    source.feed(4);
    await tick(200);
    const duringOutage = rows.size;
    fail(false);
    await tick(200);
    source.feed(1.5);
    source.close(true);
    await recorder.closed();
    assert.ok(failures > 0);
    const segments = [...rows.values()];
    assert.ok(segments.length > duringOutage, 'the rows refused came in once the index was back');
    assert.ok(segments.every((s) => s.complete));
    assert.ok(Math.abs(totals.duration - 6.5) < 0.1, `the recording's duration counted once: ${totals.duration} s`);
    assert.equal(totals.bytes, segments.reduce((sum, s) => sum + s.bytes, 0));
  });
});
