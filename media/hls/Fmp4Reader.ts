import { EventEmitter } from 'node:events';

/**
 * Reads a fragmented MP4 (CMAF) byte stream as ffmpeg's mp4 muxer writes it to a pipe, and cuts
 * it where HLS needs cuts: the init segment (ftyp + moov), then one fragment per moof + mdat, with
 * what the playlist needs to know of each (where it starts, how long it lasts, whether it starts
 * on a key frame). The boxes are ffmpeg's; this only reads the few fields HLS needs (ISO/IEC
 * 14496-12: tkhd, mdhd, hdlr, stsd, tfhd, tfdt, trun).
 */

export interface Fmp4Track {
  id: number;
  kind: 'video' | 'audio';
  timescale: number;
  /** The RFC 6381 codec string, as a multivariant playlist's CODECS names it: avc1.64001f, mp4a.40.2. */
  codec: string;
  /** A video track's picture size. */
  width?: number;
  height?: number;
}

export interface Fmp4Init {
  data: Buffer;
  tracks: Fmp4Track[];
}

export interface Fmp4Fragment {
  /** moof + mdat (and any box between the previous mdat and this moof). */
  data: Buffer;
  /** When its first sample plays, in seconds of the (video, else first) track's timeline. */
  start: number;
  /** How long it plays, in seconds, by the same track. */
  duration: number;
  /** Whether it starts on a key frame (a video sync sample; always, for audio only). */
  independent: boolean;
}

export interface Fmp4ReaderEvents {
  init: [init: Fmp4Init];
  fragment: [fragment: Fmp4Fragment];
}

/** A box larger than this is not what ffmpeg writes for a live fragment: the input is taken for corrupt. */
const MAX_BOX_BYTES = 64 * 1024 * 1024;

interface Box {
  type: string;
  /** The box's payload (after its header). */
  body: Buffer;
}

/** The boxes directly inside `data`. */
function children(data: Buffer): Box[] {
  const boxes: Box[] = [];
  for (let at = 0; at + 8 <= data.length; ) {
    let size = data.readUInt32BE(at);
    let header = 8;
    if (size === 1) {
      size = Number(data.readBigUInt64BE(at + 8));
      header = 16;
    } else if (size === 0) size = data.length - at;
    if (size < header || at + size > data.length) break;
    boxes.push({ type: data.toString('latin1', at + 4, at + 8), body: data.subarray(at + header, at + size) });
    at += size;
  }
  return boxes;
}

/** The first box of `type` along `path` from `data` (each step a child box type). */
function find(data: Buffer, ...path: string[]): Buffer | undefined {
  let current: Buffer | undefined = data;
  for (const type of path) {
    current = children(current).find((b) => b.type === type)?.body;
    if (!current) return undefined;
  }
  return current;
}

const hex = (n: number) => n.toString(16).padStart(2, '0');

/** A sample entry's codec string: from avcC for H.264, from esds's audio object type for AAC. */
function codecOf(entry: Box): string {
  if (entry.type === 'avc1' || entry.type === 'avc3') {
    // VisualSampleEntry: 6 reserved + 2 index + 70 bytes of fields, then its boxes.
    const avcC = find(entry.body.subarray(78), 'avcC');
    return avcC && avcC.length >= 4 ? `${entry.type}.${hex(avcC[1]!)}${hex(avcC[2]!)}${hex(avcC[3]!)}` : entry.type;
  }
  if (entry.type === 'mp4a') {
    // AudioSampleEntry: 28 bytes of fields, then esds. The audio object type is the first 5 bits
    // of the DecoderSpecificInfo (tag 5); AAC-LC (2) when it cannot be read.
    const esds = find(entry.body.subarray(28), 'esds');
    const tag = esds ? esds.indexOf(0x05, 4) : -1;
    let objectType = 2;
    if (esds && tag > 0) {
      let at = tag + 1;
      while (at < esds.length && esds[at]! & 0x80) at++; // the descriptor's size, 7 bits a byte
      if (at + 1 < esds.length) objectType = esds[at + 1]! >> 3 || 2;
    }
    return `mp4a.40.${objectType}`;
  }
  if (entry.type === 'Opus') return 'opus';
  return entry.type;
}

function readTrack(trak: Buffer): Fmp4Track | undefined {
  const tkhd = find(trak, 'tkhd');
  const mdhd = find(trak, 'mdia', 'mdhd');
  const hdlr = find(trak, 'mdia', 'hdlr');
  const stsd = find(trak, 'mdia', 'minf', 'stbl', 'stsd');
  if (!tkhd || !mdhd || !hdlr || !stsd) return undefined;
  const handler = hdlr.toString('latin1', 8, 12);
  if (handler !== 'vide' && handler !== 'soun') return undefined;
  const v1 = (box: Buffer) => box[0] === 1;
  const id = tkhd.readUInt32BE(v1(tkhd) ? 20 : 12);
  const timescale = mdhd.readUInt32BE(v1(mdhd) ? 20 : 12);
  const entry = children(stsd.subarray(8))[0];
  if (!entry) return undefined;
  const track: Fmp4Track = { id, kind: handler === 'vide' ? 'video' : 'audio', timescale, codec: codecOf(entry) };
  if (track.kind === 'video' && entry.body.length >= 28) {
    track.width = entry.body.readUInt16BE(24);
    track.height = entry.body.readUInt16BE(26);
  }
  return track;
}

/** One track's run in a fragment: its start (tfdt), total duration and first sample's flags, in its timescale. */
interface TrackRun {
  trackId: number;
  decodeTime: number;
  duration: number;
  firstFlags: number | undefined;
}

function readTraf(traf: Buffer): TrackRun | undefined {
  const tfhd = find(traf, 'tfhd');
  if (!tfhd) return undefined;
  const tfhdFlags = tfhd.readUInt32BE(0) & 0xffffff;
  const trackId = tfhd.readUInt32BE(4);
  let at = 8;
  if (tfhdFlags & 0x01) at += 8; // base-data-offset
  if (tfhdFlags & 0x02) at += 4; // sample-description-index
  let defaultDuration = 0;
  if (tfhdFlags & 0x08) {
    defaultDuration = tfhd.readUInt32BE(at);
    at += 4;
  }
  if (tfhdFlags & 0x10) at += 4; // default-sample-size
  const defaultFlags = tfhdFlags & 0x20 ? tfhd.readUInt32BE(at) : undefined;

  const tfdt = find(traf, 'tfdt');
  const decodeTime = !tfdt ? 0 : tfdt[0] === 1 ? Number(tfdt.readBigUInt64BE(4)) : tfdt.readUInt32BE(4);

  let duration = 0;
  let firstFlags: number | undefined;
  for (const run of children(traf).filter((b) => b.type === 'trun')) {
    const flags = run.body.readUInt32BE(0) & 0xffffff;
    const count = run.body.readUInt32BE(4);
    let p = 8;
    if (flags & 0x01) p += 4; // data-offset
    let first: number | undefined;
    if (flags & 0x04) {
      first = run.body.readUInt32BE(p);
      p += 4;
    }
    for (let i = 0; i < count && p <= run.body.length; i++) {
      let sampleDuration = defaultDuration;
      if (flags & 0x100) {
        sampleDuration = run.body.readUInt32BE(p);
        p += 4;
      }
      if (flags & 0x200) p += 4; // size
      let sampleFlags = i === 0 && first !== undefined ? first : defaultFlags;
      if (flags & 0x400) {
        sampleFlags = run.body.readUInt32BE(p);
        p += 4;
      }
      if (flags & 0x800) p += 4; // composition time offset
      duration += sampleDuration;
      if (firstFlags === undefined) firstFlags = sampleFlags ?? 0;
    }
  }
  return { trackId, decodeTime, duration, firstFlags };
}

/** ISO BMFF sample flags: sample_is_non_sync_sample. */
const NON_SYNC = 0x00010000;

export class Fmp4Reader extends EventEmitter<Fmp4ReaderEvents> {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Boxes read since the last mdat: ftyp + moov, then each moof (and whatever precedes it). */
  #held: Buffer[] = [];
  #init: Fmp4Init | undefined;

  get init(): Fmp4Init | undefined {
    return this.#init;
  }

  /** Takes the next bytes of the stream; throws on a box no live muxer writes (the stream is then unusable). */
  push(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    let buffer = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    let at = 0;
    while (buffer.length - at >= 8) {
      let size = buffer.readUInt32BE(at);
      if (size === 1) {
        if (buffer.length - at < 16) break;
        size = Number(buffer.readBigUInt64BE(at + 8));
      }
      if (size < 8 || size > MAX_BOX_BYTES) throw new Error(`unreadable MP4 stream: a box of ${size} bytes`);
      if (buffer.length - at < size) break;
      this.#box(buffer.toString('latin1', at + 4, at + 8), buffer.subarray(at, at + size));
      at += size;
    }
    buffer = buffer.subarray(at);
    this.#pending = buffer.length > 0 ? [Buffer.from(buffer)] : [];
    this.#pendingBytes = buffer.length;
  }

  #box(type: string, box: Buffer): void {
    if (type === 'moov') {
      const data = Buffer.concat([...this.#held, box]);
      this.#held = [];
      const tracks = children(box.subarray(8))
        .filter((b) => b.type === 'trak')
        .flatMap((b) => readTrack(b.body) ?? []);
      this.#init = { data, tracks };
      this.emit('init', this.#init);
      return;
    }
    if (type !== 'mdat') {
      this.#held.push(Buffer.from(box));
      return;
    }
    const moof = this.#held.find((b) => b.toString('latin1', 4, 8) === 'moof');
    const data = Buffer.concat([...this.#held, box]);
    this.#held = [];
    if (!moof || !this.#init) return;
    const runs = children(moof.subarray(8))
      .filter((b) => b.type === 'traf')
      .flatMap((b) => readTraf(b.body) ?? []);
    const tracks = this.#init.tracks;
    const main = tracks.find((t) => t.kind === 'video') ?? tracks[0];
    // A fragment without a sample of the main track (audio only, between two frames) is timed by
    // the track it has, and is no place to start.
    const run = runs.find((r) => r.trackId === main?.id) ?? runs[0];
    const track = tracks.find((t) => t.id === run?.trackId);
    if (!main || !run || !track) return;
    const independent = track === main && (main.kind === 'audio' || (run.firstFlags !== undefined && (run.firstFlags & NON_SYNC) === 0));
    this.emit('fragment', { data, start: run.decodeTime / track.timescale, duration: run.duration / track.timescale, independent });
  }
}
