// @ts-check
/**
 * The web player's DVR window (relaycast-player.js imports this): a live stream that is being
 * recorded can be watched behind live, back to the start of its recording (at most the balancer's
 * window, two hours), and then live again.
 *
 * The balancer says whether there is such a window: `GET {server}/v1/dvr?stream=…` answers 200
 * with the stream's live recording and the playlist of its window, an HLS `EVENT` playlist
 * (`/recordings/{id}/index.m3u8?from=…`: it grows as the recording goes on, and its start stays
 * fixed), or 404 when the stream is not being recorded. A private stream's window needs a
 * `playback` token (not the `play` token of live viewing): 401/403 without one, which counts as no
 * window here. DvrWatch asks when the player starts, each time it starts playing a session, and every
 * DVR_CHECK_MS while it plays; the player plays the window's playlist with hls.js (DVR_HLS_CONFIG)
 * when the viewer asks for it (RelaycastPlayer.enterDvr).
 */

/**
 * How often the player asks the balancer whether the stream it plays is being recorded, while it
 * plays: one small request (two indexed reads on the balancer) per viewer every 30 s. A recording
 * starts with the stream (or when an operator switches recording on), so a DVR control shows
 * within 30 s of there being one; nothing else depends on it.
 */
export const DVR_CHECK_MS = 30_000;

/**
 * An answer younger than this is not asked again (a player that starts and plays at once would
 * ask twice within a second).
 */
const DVR_FRESH_MS = 5000;

/** The /v1/dvr request's own time limit: a balancer that does not answer means no window, for now. */
const DVR_REQUEST_TIMEOUT_MS = 8000;

/**
 * hls.js's settings for a DVR window (an EVENT playlist of whole segments): not lowLatencyMode (no
 * parts, no blocking reloads in a recording's playlist); no catching up (maxLiveSyncPlaybackRate 1:
 * a viewer behind live on purpose stays where they are; liveMaxLatencyDurationCount stays
 * Infinity, hls.js's default, so it never jumps to live by itself); the live end it starts at when
 * asked for none is hls.js's default, three target durations before the playlist's end.
 * backBufferLength: 90 s behind the playhead are kept for a seek back (a longer seek loads the
 * segments again), not the hours a viewer may watch. No worker, as for live HLS.
 * @type {Partial<import('hls.js').HlsConfig>}
 */
export const DVR_HLS_CONFIG = {
  lowLatencyMode: false,
  maxLiveSyncPlaybackRate: 1,
  backBufferLength: 90,
  enableWorker: false,
};

/**
 * A live stream's DVR window, as the balancer names it (`GET /v1/dvr`).
 * @typedef {object} DvrWindow
 * @property {string} recordingId   the recording being made of the stream
 * @property {string} recordingStartedAt   when it started (ISO 8601)
 * @property {string} from   where the window starts (ISO 8601): the later of the recording's start and two hours ago, when it was asked
 * @property {string} playlistUrl   its HLS playlist (EVENT; on the balancer, which redirects to an edge; a private stream's token in it)
 */

/**
 * Asks the balancer for `stream`'s DVR window: null when there is none (404), or none this viewer
 * may see (401, 403: a private stream without a playback token). Throws on anything else (network,
 * 5xx, an answer it cannot read): the caller keeps what it knew.
 * @param {{ server: string, stream: string, token?: string, signal?: AbortSignal }} options
 * @returns {Promise<DvrWindow | null>}
 */
export async function fetchDvrWindow({ server, stream, token, signal }) {
  const query = new URLSearchParams({ stream, ...(token ? { token } : {}) });
  const timeout = AbortSignal.timeout(DVR_REQUEST_TIMEOUT_MS);
  const res = await fetch(`${server}/v1/dvr?${query}`, { signal: signal && 'any' in AbortSignal ? AbortSignal.any([signal, timeout]) : timeout, cache: 'no-store' });
  if (res.status === 404 || res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok) throw new Error(`GET /v1/dvr answered ${res.status}`);
  const body = await res.json();
  const playlistUrl = new URL(String(body?.playlistUrl), res.url).href; // relative or absolute: made absolute
  if (typeof body?.recording?.id !== 'string' || typeof body.from !== 'string' || !/^https?:/.test(playlistUrl)) throw new Error('GET /v1/dvr: an answer without a window');
  return { recordingId: body.recording.id, recordingStartedAt: String(body.recording.startedAt), from: body.from, playlistUrl };
}

/**
 * Keeps `window` up to date with the balancer's word: check() asks (one request at a time; an
 * answer younger than DVR_FRESH_MS stands unless forced), start() asks at once and every
 * DVR_CHECK_MS while `when()` holds, stop() ends that and forgets the window. `onChange` is called
 * when the window appears, goes, or is another recording's (a new `from` alone is not a change:
 * it moves on with every answer).
 */
export class DvrWatch {
  /** @type {{ server: string, stream: string, token?: string, onChange: () => void }} */
  #options;
  /** @type {DvrWindow | null} */
  #window = null;
  /** When the last answer came (performance.now()), or null before the first. */
  /** @type {number | null} */
  #answeredAt = null;
  /** @type {Promise<DvrWindow | null> | null} */
  #pending = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #timer;
  /** Aborts the request in flight at stop(). */
  /** @type {AbortController | null} */
  #requests = null;

  /** @param {{ server: string, stream: string, token?: string, onChange: () => void }} options */
  constructor(options) {
    this.#options = options;
  }

  /** The stream's DVR window as last heard, or null: none, or not known yet. */
  get window() {
    return this.#window;
  }

  /**
   * Asks the balancer (unless an answer is fresh and `force` is not set) and resolves with the
   * window; a failed request leaves it as it was.
   * @param {boolean} [force]
   * @returns {Promise<DvrWindow | null>}
   */
  check(force = false) {
    if (this.#pending) return this.#pending;
    if (!force && this.#answeredAt !== null && performance.now() - this.#answeredAt < DVR_FRESH_MS) return Promise.resolve(this.#window);
    const { server, stream, token } = this.#options;
    this.#requests ??= new AbortController();
    const signal = this.#requests.signal;
    const pending = fetchDvrWindow({ server, stream, token, signal })
      .then((window) => {
        if (signal.aborted) return this.#window;
        this.#answeredAt = performance.now();
        this.#set(window);
        return window;
      })
      .catch(() => this.#window)
      .finally(() => {
        if (this.#pending === pending) this.#pending = null;
      });
    this.#pending = pending;
    return pending;
  }

  /**
   * Asks now, and every DVR_CHECK_MS while `when()` holds, until stop().
   * @param {() => boolean} when
   */
  start(when) {
    clearInterval(this.#timer);
    void this.check();
    this.#timer = setInterval(() => {
      if (when()) void this.check();
    }, DVR_CHECK_MS);
  }

  /** No more asking; the window is forgotten (onChange if there was one). */
  stop() {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#requests?.abort();
    this.#requests = null;
    this.#pending = null;
    this.#answeredAt = null;
    this.#set(null);
  }

  /** @param {DvrWindow | null} window */
  #set(window) {
    const changed = (window?.recordingId ?? null) !== (this.#window?.recordingId ?? null);
    this.#window = window;
    if (changed) this.#options.onChange();
  }
}
