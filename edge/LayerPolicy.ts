/**
 * Which simulcast layer (step, see stepLayers) a viewer without a bandwidth estimate may receive, from the losses its
 * receiver reports tell (RTCP RR fraction lost, about one a second). It is the fallback for the
 * viewers mediasoup cannot estimate bandwidth toward (see LayerSelector): down a layer as soon as
 * the link drops much of what is sent, up a layer after a quiet spell, and a longer spell after
 * each failed try, so that a link that cannot carry the next layer is not hit every few seconds.
 *
 * Pure logic: no timers, no mediasoup; LayerSelector feeds it reports and applies its answer.
 */

/**
 * One receiver report: when it was read (ms), the fraction of packets lost since the last one
 * (0–1), and the bitrate being sent to the viewer then (bits/s), when known.
 */
export interface LossReport {
  at: number;
  loss: number;
  sent?: number;
}

/**
 * A report losing this much means the link cannot carry the layer: a tenth of the packets gone is
 * a frozen picture until the next key frame. Down at once.
 */
export const HEAVY_LOSS = 0.1;

/**
 * Losing this much on average over SUSTAINED_REPORTS reports is a link that is slowly too small
 * (a queue overflowing now and then). Random loss of 2 % — which NACK repairs — stays well below:
 * at 100–200 packets a second, three reports of 2 % loss average above 5 % less than once a day.
 */
const SUSTAINED_LOSS = 0.05;
const SUSTAINED_REPORTS = 3;

/**
 * A layer fits a link that delivered D bits/s if it needs at most this share of D: the rest is
 * headroom for key frames (several times a delta frame) and the audio beside it.
 */
const FIT = 0.8;

/** A report under this is clean: the link has room for what it carries now. */
export const CLEAN_LOSS = 0.02;

/**
 * After a step down, reports for this long still count losses of the layer before (the queue
 * draining, the receiver's report interval): they do not make another step.
 */
const SETTLE_MS = 2500;

/** How long the link must be clean before the first try of the next layer up. */
export const UP_AFTER_MS = 6000;

/** The wait before a try grows to at most this after failed tries (doubling each time). */
const MAX_UP_AFTER_MS = 30_000;

/** A step down this soon after a step up means the try failed: the next try waits twice as long. */
const PROBE_WINDOW_MS = 6000;

/**
 * The steps LayerPolicy moves along, as layers: below the lowest spatial layer at full frame rate
 * come its lower temporal layers (VP8 L1T3: 1/2, then 1/4 of the frames), for links too narrow
 * even for the smallest picture; above it, each spatial layer at full frame rate. With S spatial
 * and T temporal layers the steps are 0..(S − 1) + (T − 1).
 */
export function stepLayers(step: number, temporalLayers: number): { spatialLayer: number; temporalLayer: number } {
  const full = temporalLayers - 1;
  return step < full ? { spatialLayer: 0, temporalLayer: step } : { spatialLayer: step - full, temporalLayer: full };
}

/** The step of a layer (see stepLayers); a higher spatial layer at a reduced frame rate counts as its full rate. */
export function layerStep(layers: { spatialLayer: number; temporalLayer?: number }, temporalLayers: number): number {
  const full = temporalLayers - 1;
  return layers.spatialLayer > 0 ? full + layers.spatialLayer : Math.min(layers.temporalLayer ?? full, full);
}

/** `top` checked as a layer index (both policies start at their stream's top). */
function layerIndex(top: number): number {
  if (!Number.isInteger(top) || top < 0) throw new TypeError(`top must be a layer index, not ${top}`);
  return top;
}

export class LayerPolicy {
  /** The highest layer allowed now (the viewer gets it or the best below it the publisher sends). */
  #ceiling: number;
  readonly #top: number;
  #recent: number[] = [];
  #lastDown = -Infinity;
  #lastUp = -Infinity;
  #cleanSince: number | undefined;
  #upAfter = UP_AFTER_MS;

  /** `top`: the highest step of the stream (steps are 0..top). */
  constructor(top: number) {
    this.#top = this.#ceiling = layerIndex(top);
  }

  get ceiling(): number {
    return this.#ceiling;
  }

  get top(): number {
    return this.#top;
  }

  /** How long the link must stay clean before the next try up (grows after failed tries). */
  get upAfter(): number {
    return this.#upAfter;
  }

  /**
   * Takes a report; returns the ceiling from now on. `current` is the layer the viewer receives
   * (below the ceiling when the publisher does not send the higher ones). `layerBitrates` (bits/s
   * of each layer, lowest first), with the report's `sent`, lets a step down on heavy loss go
   * straight to the layer the link can carry: a link that drops a share L of S bits/s delivered
   * about S × (1 − L), since a saturated link loses what exceeds it.
   */
  report({ at, loss, sent }: LossReport, current = this.#ceiling, layerBitrates: number[] = []): number {
    this.#recent.push(loss);
    if (this.#recent.length > SUSTAINED_REPORTS) this.#recent.shift();
    const mean = this.#recent.reduce((a, b) => a + b, 0) / this.#recent.length;
    const lossy = loss >= HEAVY_LOSS || (this.#recent.length === SUSTAINED_REPORTS && mean >= SUSTAINED_LOSS);

    if (lossy) {
      this.#cleanSince = undefined;
      if (at - this.#lastDown < SETTLE_MS || Math.min(current, this.#ceiling) === 0) return this.#ceiling;
      const failedTry = at - this.#lastUp < PROBE_WINDOW_MS;
      let next = Math.min(current, this.#ceiling) - 1;
      if (failedTry) {
        // The link carried the step below the try: back there, not lower (the try's own losses
        // say what the tried step costs, not what the link carries), and wait longer next time.
        this.#upAfter = Math.min(this.#upAfter * 2, MAX_UP_AFTER_MS);
        next = this.#ceiling - 1;
      } else if (loss >= HEAVY_LOSS && sent && layerBitrates.length > 0) {
        const delivered = sent * (1 - loss);
        while (next > 0 && (layerBitrates[next] ?? 0) > FIT * delivered) next--;
      }
      this.#ceiling = next;
      this.#lastDown = at;
      this.#recent = [];
      return this.#ceiling;
    }

    if (loss >= CLEAN_LOSS) {
      this.#cleanSince = undefined;
      return this.#ceiling;
    }
    this.#cleanSince ??= at;
    // A try that lasted the probe window succeeded: the next one need not wait longer.
    if (this.#lastUp > this.#lastDown && at - this.#lastUp >= PROBE_WINDOW_MS) this.#upAfter = UP_AFTER_MS;
    if (this.#ceiling < this.#top && at - this.#cleanSince >= this.#upAfter) {
      this.#ceiling++;
      this.#lastUp = at;
      this.#cleanSince = undefined;
      this.#recent = [];
    }
    return this.#ceiling;
  }
}

/**
 * How long a bandwidth estimate must carry a higher spatial layer before an estimated viewer may
 * get it. mediasoup probes the link with bursts of padding, and a shaper's burst allowance (tc's
 * token bucket, a provider's policer) lets a burst through at many times the link's rate: the
 * estimate leaps for a second or two, and mediasoup would switch the viewer to a layer the link
 * cannot carry, a frozen picture until the next key frame (seen on a 250 kbit/s tc link: 170 →
 * 1,361 → 219 kbit/s within 1.5 s, every 8 s). Five seconds outlasts such a leap and still
 * follows a link that really grew within a few seconds.
 */
export const ESTIMATE_UP_HOLD_MS = 5000;

/** A layer fits an estimate E if it needs at most this share of E: the rest carries audio and key frames. */
const ESTIMATE_FIT = 0.85;

/** The estimate (bits/s) that carries a layer of this bitrate (see ESTIMATE_FIT). */
export function estimateCarrying(layerBitrate: number): number {
  return Math.ceil(layerBitrate / ESTIMATE_FIT);
}

/**
 * How long an estimate may sit below the next layer up before the viewer tries that layer (EstimatePolicy.tryUp), and at most after failed tries (doubling each
 * time). mediasoup 3.32's estimate can stay low on a link that has room (issue 33): after losses
 * (a link cut by tc, 0.5 % lost over the cut) its loss-based controller (RTC::BWE::
 * LossBasedController) holds the estimate and lets it grow only to 1.5 times the acknowledged
 * bitrate, and an edge sends only the layer the estimate carries, so the acknowledged bitrate
 * stays below the estimate and it never grows; its probes, which do reach the viewer, raise only
 * the delay-based estimate. Seen with the worker instrumented: 318 kbit/s for 90 s after a 400
 * kbit/s link was restored to 2,000, probes measuring 450–510 kbit/s every 5 s meanwhile. The
 * first wait is longer than ESTIMATE_UP_HOLD_MS and than mediasoup's own probing after a drop
 * (5 s): a link that recovers by itself has done so by then. An estimate that grows slowly still
 * gets the try (a first version waited while it grew by a tenth per wait: 41 s between two
 * layers after the link was restored, the estimate creeping up below the next layer).
 */
export const ESTIMATE_TRY_AFTER_MS = 10_000;
const ESTIMATE_MAX_TRY_AFTER_MS = 60_000;

/**
 * How long a try lasts: the transport's floor holds the estimate at the tried layer's bitrate
 * (LayerSelector), so mediasoup sends that layer and its loss-based controller sees what the link
 * does with it (feedback every ~50 ms, receiver reports every second), and the layer's first key
 * frame has gone out. A link that cannot carry the layer freezes the picture about this long (the
 * loss-driven path's tries cost about 3 s each).
 */
export const ESTIMATE_TRY_MS = 3000;

/**
 * The floor during a try, over the estimate that just carries the tried layer: mediasoup's
 * loss-based controller keeps the floor as its estimate after the try, and a floor that just
 * carried the layer left it on the edge of fitting, off again as the layer's bitrate moved a few
 * percent (seen: two tries of the middle layer 20 s apart, both judged failed on a link of 2,000
 * kbit/s). With the layer on, the controller may grow to 1.5 times what is acknowledged.
 */
export const ESTIMATE_TRY_HEADROOM = 1.25;

/** A try counts as failed when the ceiling falls below the tried layer this soon after it began. */
const ESTIMATE_TRY_JUDGED_MS = 15_000;

/**
 * Which spatial layer a viewer with a bandwidth estimate may receive at most (mediasoup picks
 * within it by the estimate, temporal layers too): down at once when the estimate no longer
 * carries it, up to the highest layer the estimate has carried all along for ESTIMATE_UP_HOLD_MS,
 * and one layer up as a try (tryUp) when the estimate has sat below the next layer for a while.
 *
 * Pure logic, as LayerPolicy: LayerSelector feeds it each estimate and applies its answer.
 */
export class EstimatePolicy {
  #ceiling: number;
  readonly #top: number;
  /** Since when every estimate carried a layer above the ceiling, and the lowest such layer. */
  #upSince: number | undefined;
  #upTo = 0;
  /** Since when the estimate has not carried the layer above the ceiling (below the top). */
  #stuckSince: number | undefined;
  /** The last try: when, the layer tried; and the wait before the next one. */
  #triedAt: number | undefined;
  #tried = 0;
  #tryAfter = ESTIMATE_TRY_AFTER_MS;

  /** `top`: the highest spatial layer of the stream (layers are 0..top). */
  constructor(top: number) {
    this.#top = this.#ceiling = layerIndex(top);
  }

  get ceiling(): number {
    return this.#ceiling;
  }

  /**
   * Takes an estimate (bits/s, at `at` ms) and the spatial layers' bitrates (lowest first; 0: not
   * sent now, which fits anything: mediasoup passes over a layer that is not there); returns the
   * ceiling from now on.
   */
  report(at: number, estimate: number, layerBitrates: number[]): number {
    let fits = 0;
    for (let layer = 1; layer <= this.#top; layer++) if ((layerBitrates[layer] ?? 0) <= ESTIMATE_FIT * estimate) fits = layer;
    this.#judgeTry(at, fits);
    if (fits <= this.#ceiling) {
      this.#upSince = undefined;
      this.#ceiling = fits;
      // Below the top and not carrying the next layer: the wait for a try runs.
      if (this.#ceiling >= this.#top) this.#stuckSince = undefined;
      else this.#stuckSince ??= at;
      return this.#ceiling;
    }
    // An estimate that carries the layer above only now and then (a layer's bitrate near the
    // estimate's 85 %) does not restart the wait: only a climb does (seen: a try 26 s after the
    // link was restored, the estimate at the middle layer's edge).
    this.#stuckSince ??= at;
    if (this.#upSince === undefined) {
      this.#upSince = at;
      this.#upTo = fits;
    } else {
      this.#upTo = Math.min(this.#upTo, fits);
    }
    if (at - this.#upSince >= ESTIMATE_UP_HOLD_MS) {
      this.#ceiling = this.#upTo;
      this.#upSince = undefined;
      this.#stuckSince = undefined;
    }
    return this.#ceiling;
  }

  /**
   * Whether to try the layer above the ceiling now (at `at` ms): the estimate has sat below it
   * for the current wait (ESTIMATE_TRY_AFTER_MS, doubled after each failed try). When
   * so, the ceiling is that layer from now on, and the layer is returned: the caller holds the
   * estimate there for ESTIMATE_TRY_MS (the transport's floor). The estimates after it decide as
   * any other: one that does not carry the layer takes the ceiling down again.
   */
  tryUp(at: number): number | undefined {
    if (this.#stuckSince === undefined || this.#ceiling >= this.#top) return undefined;
    if (at - this.#stuckSince < this.#tryAfter) return undefined;
    this.#judgeTry(at, this.#ceiling);
    this.#ceiling++;
    this.#triedAt = at;
    this.#tried = this.#ceiling;
    this.#stuckSince = undefined;
    this.#upSince = undefined;
    return this.#ceiling;
  }

  /** The wait before the next try (see ESTIMATE_TRY_AFTER_MS). */
  get tryAfter(): number {
    return this.#tryAfter;
  }

  /** A try is judged by the estimates after it: failed if they do not carry the layer within ESTIMATE_TRY_JUDGED_MS. */
  #judgeTry(at: number, fits: number): void {
    if (this.#triedAt === undefined || at - this.#triedAt < ESTIMATE_TRY_MS) return;
    if (fits < this.#tried && at - this.#triedAt < ESTIMATE_TRY_JUDGED_MS) {
      this.#tryAfter = Math.min(ESTIMATE_MAX_TRY_AFTER_MS, this.#tryAfter * 2);
      this.#triedAt = undefined;
    } else if (at - this.#triedAt >= ESTIMATE_TRY_JUDGED_MS || fits >= this.#tried) {
      if (fits >= this.#tried) this.#tryAfter = ESTIMATE_TRY_AFTER_MS;
      this.#triedAt = undefined;
    }
  }
}
