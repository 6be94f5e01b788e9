import type { Producer, Router } from 'mediasoup/types';

/**
 * The order of a simulcast producer's layers from lowest to highest, as mediasoup's simulcast
 * consumers take them (encodings[0] is the lowest; a consumer's "higher layer" is a higher index).
 * Publishers do not all list their layers so: Chromium apps usually do (rids q;h;f), but OBS 32's
 * WHIP output lists its main encoder first (rids "0;1;2" from full size down), and an SDP says
 * nothing of sizes. Bitrates cannot tell either: Chromium pads its lowest layer while it probes
 * for bandwidth, so for many seconds its smallest picture can carry the most bits.
 *
 * So the sizes decide: a key frame of each layer says its picture size (VP8's frame header, H.264's
 * sequence parameter set). The producer keeps the publisher's order (its encodings cannot change);
 * the order is applied where the stream is relayed (origin/PublishedStream.openPipe re-lists the
 * pipe's encodings), which is where every viewer's consumer comes from.
 */

/**
 * How long to wait for a key frame of every layer. A publisher answers a key frame request within
 * a frame or two (OBS, Chromium: under 200 ms); a layer not heard of by then is likely not being
 * sent yet (Chromium turns its upper layers on as its estimate grows), and the publisher's order
 * stands.
 */
const PROBE_TIMEOUT_MS = 2000;

export interface PictureSize {
  width: number;
  height: number;
}

/** Reads unsigned Exp-Golomb and fixed-width fields from an RBSP (H.264 7.2). */
class BitReader {
  #bit = 0;
  readonly #data: Uint8Array;
  constructor(data: Uint8Array) {
    this.#data = data;
  }
  bits(n: number): number {
    let value = 0;
    for (let i = 0; i < n; i++) {
      const byte = this.#data[this.#bit >> 3];
      if (byte === undefined) throw new RangeError('read past the end of the SPS');
      value = value * 2 + ((byte >> (7 - (this.#bit & 7))) & 1);
      this.#bit++;
    }
    return value;
  }
  ue(): number {
    let zeros = 0;
    while (this.bits(1) === 0) if (++zeros > 31) throw new RangeError('bad Exp-Golomb code in the SPS');
    return 2 ** zeros - 1 + this.bits(zeros);
  }
  se(): number {
    const k = this.ue();
    return k % 2 === 0 ? -(k / 2) : (k + 1) / 2;
  }
}

/** Profiles whose SPS carries chroma format and scaling lists (H.264 7.3.2.1.1). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/** The picture size an H.264 sequence parameter set (a NAL unit, header byte included) describes. */
export function spsPictureSize(nal: Uint8Array): PictureSize {
  // Emulation prevention: 00 00 03 → 00 00.
  const rbsp: number[] = [];
  for (let i = 1; i < nal.length; i++) {
    if (i >= 3 && nal[i] === 3 && nal[i - 1] === 0 && nal[i - 2] === 0) continue;
    rbsp.push(nal[i]!);
  }
  const r = new BitReader(Uint8Array.from(rbsp));
  const profile = r.bits(8);
  r.bits(16); // constraint flags, level
  r.ue(); // seq_parameter_set_id
  let chromaFormat = 1;
  if (HIGH_PROFILES.has(profile)) {
    chromaFormat = r.ue();
    if (chromaFormat === 3) r.bits(1);
    r.ue(); // bit depth luma
    r.ue(); // bit depth chroma
    r.bits(1);
    if (r.bits(1)) {
      for (let i = 0; i < (chromaFormat === 3 ? 12 : 8); i++) {
        if (!r.bits(1)) continue;
        let last = 8;
        let next = 8;
        for (let j = 0; j < (i < 6 ? 16 : 64) && next !== 0; j++) {
          next = (last + r.se() + 256) % 256;
          last = next === 0 ? last : next;
        }
      }
    }
  }
  r.ue(); // log2_max_frame_num
  const pocType = r.ue();
  if (pocType === 0) r.ue();
  else if (pocType === 1) {
    r.bits(1);
    r.se();
    r.se();
    const cycle = r.ue();
    for (let i = 0; i < cycle; i++) r.se();
  }
  r.ue(); // max_num_ref_frames
  r.bits(1);
  const widthMbs = r.ue() + 1;
  const heightUnits = r.ue() + 1;
  const frameMbsOnly = r.bits(1);
  if (!frameMbsOnly) r.bits(1);
  r.bits(1);
  let [cropLeft, cropRight, cropTop, cropBottom] = [0, 0, 0, 0];
  if (r.bits(1)) [cropLeft, cropRight, cropTop, cropBottom] = [r.ue(), r.ue(), r.ue(), r.ue()];
  const cropX = chromaFormat === 0 || chromaFormat === 3 ? 1 : 2;
  const cropY = (chromaFormat === 1 ? 2 : 1) * (2 - frameMbsOnly);
  return {
    width: widthMbs * 16 - (cropLeft + cropRight) * cropX,
    height: (2 - frameMbsOnly) * heightUnits * 16 - (cropTop + cropBottom) * cropY,
  };
}

/** The payload of an RTP packet (after CSRCs, header extensions and before padding). */
function rtpPayload(packet: Uint8Array): Uint8Array | undefined {
  if (packet.length < 12) return undefined;
  let offset = 12 + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) {
    if (packet.length < offset + 4) return undefined;
    offset += 4 + ((packet[offset + 2]! << 8) | packet[offset + 3]!) * 4;
  }
  const padding = packet[0]! & 0x20 ? packet[packet.length - 1]! : 0;
  return offset < packet.length - padding ? packet.subarray(offset, packet.length - padding) : undefined;
}

/** A VP8 key frame's picture size (RFC 7741 payload descriptor, RFC 6386 frame header), if this payload starts one. */
export function vp8PictureSize(payload: Uint8Array): PictureSize | undefined {
  let i = 1;
  const x = payload[0]! & 0x80;
  const start = payload[0]! & 0x10;
  const partition = payload[0]! & 0x07;
  if (!start || partition !== 0) return undefined;
  if (x) {
    const ext = payload[i++]!;
    if (ext & 0x80) i += payload[i]! & 0x80 ? 2 : 1; // PictureID
    if (ext & 0x40) i++; // TL0PICIDX
    if (ext & 0x30) i++; // TID / KEYIDX
  }
  const frame = payload.subarray(i);
  if (frame.length < 10 || frame[0]! & 0x01) return undefined; // inter frame
  if (frame[3] !== 0x9d || frame[4] !== 0x01 || frame[5] !== 0x2a) return undefined;
  return { width: (frame[6]! | (frame[7]! << 8)) & 0x3fff, height: (frame[8]! | (frame[9]! << 8)) & 0x3fff };
}

/** An H.264 payload's SPS picture size (a single SPS NAL or one inside a STAP-A), if it carries one. */
export function h264PictureSize(payload: Uint8Array): PictureSize | undefined {
  const type = payload[0]! & 0x1f;
  if (type === 7) return spsPictureSize(payload);
  if (type !== 24) return undefined;
  for (let i = 1; i + 2 < payload.length; ) {
    const size = (payload[i]! << 8) | payload[i + 1]!;
    const nal = payload.subarray(i + 2, i + 2 + size);
    if (nal.length > 0 && (nal[0]! & 0x1f) === 7) return spsPictureSize(nal);
    i += 2 + size;
  }
  return undefined;
}

/**
 * Each layer's picture size, in the producer's order (undefined for a layer no key frame told of
 * within PROBE_TIMEOUT_MS). Listens to the producer through a pipe consumer on a DirectTransport
 * and asks for key frames.
 */
export async function probeLayerSizes(router: Router, producer: Producer): Promise<Array<PictureSize | undefined>> {
  const encodings = producer.rtpParameters.encodings ?? [];
  const codec = producer.rtpParameters.codecs[0]?.mimeType.toLowerCase();
  const parse = codec === 'video/vp8' ? vp8PictureSize : codec === 'video/h264' ? h264PictureSize : undefined;
  const sizes: Array<PictureSize | undefined> = encodings.map(() => undefined);
  if (!parse || encodings.length < 2 || producer.closed) return sizes;
  const transport = await router.createDirectTransport();
  try {
    const consumer = await transport.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities, pipe: true });
    const ssrcs = (consumer.rtpParameters.encodings ?? []).map((e) => e.ssrc);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, PROBE_TIMEOUT_MS);
      consumer.on('rtp', (packet) => {
        const layer = ssrcs.indexOf(packet.readUInt32BE(8));
        const payload = layer >= 0 && !sizes[layer] ? rtpPayload(packet) : undefined;
        if (!payload) return;
        try {
          sizes[layer] = parse(payload);
        } catch {
          // A malformed SPS says nothing: the layer stays unknown.
        }
        if (sizes.every(Boolean)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void consumer.requestKeyFrame().catch(() => undefined);
    });
  } finally {
    transport.close();
  }
  return sizes;
}

/**
 * Indices of the layers from the smallest picture to the largest. With every size known, sorted
 * (ties keep the publisher's order). With some known, the direction they show: two or more known
 * sizes that fall along the publisher's order mean it listed its largest first (the order is
 * reversed); otherwise, and with fewer than two known, the publisher's order.
 */
export function orderBySize(sizes: Array<PictureSize | undefined>): number[] {
  const offered = sizes.map((_, i) => i);
  const pixels = sizes.map((s) => (s ? s.width * s.height : undefined));
  if (pixels.every((p) => p !== undefined)) return offered.sort((a, b) => pixels[a]! - pixels[b]! || a - b);
  const known = pixels.filter((p) => p !== undefined);
  const falling = known.length >= 2 && known.every((p, i) => i === 0 || p < known[i - 1]!);
  return falling ? offered.reverse() : offered;
}

/**
 * Rounds of probing while a layer is still unheard of, and the gap between them: Chromium turns
 * its upper layers on within about half a minute of a publish starting. Each round asks the
 * publisher for one key frame; six early in a publish cost nothing a viewer would notice.
 */
const PROBE_ROUNDS = 6;
const ROUND_GAP_MS = 5000;

/**
 * One simulcast producer's layer sizes, learnt in the background from the start of the publish:
 * a first probe (a relay opened meanwhile waits for it, at most PROBE_TIMEOUT_MS), then more
 * rounds until every layer's size is known; sizes learnt in one round are kept.
 */
export class LayerSizes {
  readonly #producer: Producer;
  readonly #router: Router;
  readonly #sizes: Array<PictureSize | undefined>;
  #rounds = 0;
  #probing: Promise<void> | undefined;

  constructor(router: Router, producer: Producer) {
    this.#producer = producer;
    this.#router = router;
    this.#sizes = (producer.rtpParameters.encodings ?? []).map(() => undefined);
    void this.#probe().then(() => this.#more());
  }

  /**
   * The layers smallest first, as far as known now (orderBySize). When fewer than two sizes are
   * known and probing has not given up, one more probe first.
   */
  async order(): Promise<number[]> {
    if (this.#probing) await this.#probing;
    if (this.#sizes.filter(Boolean).length < 2 && this.#rounds < PROBE_ROUNDS) await this.#probe();
    return orderBySize(this.#sizes);
  }

  #probe(): Promise<void> {
    this.#probing ??= (async () => {
      this.#rounds++;
      const sizes = await probeLayerSizes(this.#router, this.#producer).catch(() => []);
      sizes.forEach((size, i) => {
        if (size) this.#sizes[i] = size;
      });
    })().finally(() => (this.#probing = undefined));
    return this.#probing;
  }

  async #more(): Promise<void> {
    while (this.#rounds < PROBE_ROUNDS && !this.#sizes.every(Boolean) && !this.#producer.closed) {
      await new Promise((resolve) => setTimeout(resolve, ROUND_GAP_MS));
      if (!this.#producer.closed) await this.#probe();
    }
  }
}
