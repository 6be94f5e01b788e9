/**
 * A viewer's way from its WHEP POST to its first frame, in phases, each timed from the POST: what
 * `play` reports per viewer (`phases` line, and in `stats`), and bench/sections/ttff.ts breaks
 * the time to first frame down with.
 *
 *   answerMs    the POST's response (the answer) received: HTTP signalling
 *   iceMs       iceConnectionState connected (or completed): a candidate pair answered a check
 *   dtlsMs      connectionState connected: ICE and the DTLS handshake done (SRTP keys)
 *   rtpMs       the first video RTP packet (inbound-rtp video packetsReceived > 0). A new
 *               mediasoup consumer forwards no video before a key frame (its stream managers
 *               drop packets until one), so this is the first packet of a key frame.
 *   completeMs  the first complete frame (framesReceived > 0): that key frame, all its packets in
 *   frameMs     the first decoded frame out of the video sink (not for a receive-only viewer)
 *
 * The state changes and the sink's frame are events; this libwebrtc has no event for a track's
 * first packet, so rtpMs and completeMs come from getStats() polled every STATS_POLL_MS until the
 * first frame (receive-only: the first packet), each stamped when its getStats() call returns (up
 * to STATS_POLL_MS plus one call late). A phase the poll has not seen by the first frame is counted
 * at the frame.
 */
import { max, median, sleep } from '../stats.ts';
import { accepted, type Answer } from './negotiate.ts';
import { isMediaInbound } from './report.ts';

/**
 * How often getStats() is polled for the first packet and the first complete frame: the
 * granularity of rtpMs and completeMs. Every call crosses libwebrtc's threads, so not tighter; and
 * only until the first frame, so a viewer that plays costs nothing after.
 */
export const STATS_POLL_MS = 15;
/** How long the poll waits for a first packet before it gives up (a bound, not a figure). */
const POLL_LIMIT_MS = 30_000;

export interface PhaseTimes {
  answerMs: number | null;
  iceMs: number | null;
  dtlsMs: number | null;
  rtpMs: number | null;
  completeMs: number | null;
  frameMs: number | null;
}

export const PHASES = ['answerMs', 'iceMs', 'dtlsMs', 'rtpMs', 'completeMs', 'frameMs'] as const satisfies ReadonlyArray<keyof PhaseTimes>;

/** Stamps (performance.now()) of one viewer's phases; made on its PeerConnection before it negotiates. */
export class Phases {
  readonly #pc: any;
  /** Receives but does not decode (sdp.ts): its last phase is the first packet. */
  readonly receiveOnly: boolean;
  /** When the offer was POSTed (negotiate.ts Answer), once known: what every phase is timed from. */
  #postedAt: number | undefined;
  #at: Partial<Record<keyof PhaseTimes, number>> = {};
  #polling = false;
  /** How long each getStats() call took: a polled phase is stamped when its call returns. */
  #calls: number[] = [];
  /** Resolves once the viewer's last phase (its first frame; receive-only: its first packet) is in. */
  readonly done: Promise<void>;
  #finish!: () => void;

  constructor(pc: any, receiveOnly = false) {
    this.#pc = pc;
    this.receiveOnly = receiveOnly;
    this.done = new Promise((resolve) => (this.#finish = resolve));
    // Listeners, not the on… properties: play.ts reports the connection through those. The state
    // is read when the event runs (a tick later): a change that went on meanwhile is stamped then.
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') this.#stamp('iceMs');
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') {
        this.#stamp('iceMs');
        this.#stamp('dtlsMs');
      }
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this.#finish();
    });
  }

  /** The answer is in (negotiate.ts): the POST's time is known, and if it was accepted the poll for the first packet starts. */
  answered(answer: Answer): void {
    this.#postedAt = answer.postedAt;
    this.#at.answerMs = answer.answeredAt;
    if (!accepted(answer)) this.#finish();
    else if (!this.#polling) void this.#poll();
  }

  /** The first decoded frame: every phase before it is in by now, at the latest. */
  frame(): void {
    if (this.#at.frameMs !== undefined) return;
    const now = performance.now();
    for (const key of PHASES) if (key !== 'answerMs') this.#at[key] ??= now;
    this.#finish();
  }

  /** Milliseconds from the POST to each phase (null: not reached, or no POST). */
  times(): PhaseTimes {
    const from = this.#postedAt;
    const ms = (key: keyof PhaseTimes) => (from === undefined || this.#at[key] === undefined ? null : Math.round(this.#at[key]! - from));
    return Object.fromEntries(PHASES.map((key) => [key, ms(key)])) as unknown as PhaseTimes;
  }

  /** The poll: how many getStats() calls, and the median and longest one, in ms. */
  poll(): { calls: number; medianMs: number | null; maxMs: number | null } {
    const round = (x: number) => Math.round(x * 10) / 10;
    return { calls: this.#calls.length, medianMs: this.#calls.length ? round(median(this.#calls)) : null, maxMs: this.#calls.length ? round(max(this.#calls)) : null };
  }

  #stamp(key: keyof PhaseTimes): void {
    this.#at[key] ??= performance.now();
  }

  async #poll(): Promise<void> {
    this.#polling = true;
    const until = performance.now() + POLL_LIMIT_MS;
    const last = this.receiveOnly ? 'rtpMs' : 'frameMs';
    while (this.#at[last] === undefined && performance.now() < until) {
      const state = this.#pc.connectionState;
      if (state === 'failed' || state === 'closed') break;
      let packets = 0;
      let frames = 0;
      const asked = performance.now();
      try {
        (await this.#pc.getStats()).forEach((s: any) => {
          if (!isMediaInbound(s) || s.kind !== 'video') return;
          packets += s.packetsReceived ?? 0;
          frames += s.framesReceived ?? 0;
        });
      } catch {
        break; // closed under us
      }
      this.#calls.push(performance.now() - asked);
      if (packets > 0) this.#stamp('rtpMs');
      if (frames > 0) this.#stamp('completeMs');
      if (this.#at[last] === undefined) await sleep(STATS_POLL_MS);
    }
    this.#polling = false;
    this.#finish();
  }
}
