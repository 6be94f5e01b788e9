import express, { type Request, type Router } from 'express';
import type { Admission } from '../core/Admission.ts';
import { CORS } from '../core/http.ts';
import { Problem } from '../core/errors.ts';
import { authorizeInternal, internalFetch } from '../core/internalApi.ts';
import type { Metrics } from '../core/metrics.ts';
import { bearerToken, streamName, type StreamClaims } from '../core/tokens.ts';
import { INTERNAL_HLS_PATH, isHlsFile, parseReloadQuery, PUBLIC_HLS_PATH, sendHls, withQuery, type HlsAnswer } from '../media/hls/hlsFiles.ts';
import { type HlsCache } from './HlsCache.ts';
import type { UplinkTarget } from './Uplink.ts';

/**
 * An edge's HLS: viewers' requests (`GET /hls/{stream}/{file}`, a play token as `?token=` for a
 * private stream) and the edges it feeds (`GET /internal/v1/hls/…`) are answered from one
 * HlsCache, which asks upstream, the node this edge's relay of the stream pulls from, else the
 * stream's origin, once per URL however many ask. So HLS follows the relay tree: an edge fed by
 * another edge asks that edge, whose cache answers for all its children.
 */

export interface HlsProxyOptions {
  cache: HlsCache;
  /** Where to ask for the stream's files (a Problem when it is not live). */
  upstream: (stream: string) => Promise<UplinkTarget>;
  /** Lets a viewer play the stream, or throws the 401/403 Problem (the edge's own check, as for WHEP); the token's claims, null without one. */
  authorize: (stream: string, token: string | undefined) => Promise<StreamClaims | null>;
  /** The viewer's address (behind trusted proxies, theirs): viewers are counted by address and user agent. */
  clientAddress: (req: Request) => string;
  /** Asked for every viewer request, after the token check: its cache answers all but the first of a client's requests within a TTL. */
  admission?: Admission;
  clusterSecret: string;
  metrics: Metrics;
}

/**
 * How long an upstream request may take: a blocking reload is held up to three target durations
 * (12 s) upstream, and one more hop's worth of margin.
 */
const UPSTREAM_TIMEOUT_MS = 20_000;

/** An HLS viewer is one that reloaded a playlist within this long: players reload every part (a third of a second) or every few seconds at most. */
const VIEWER_WINDOW_MS = 10_000;

/** Browsers' players fetch HLS from pages of other origins (the player page is the balancer's). */
const HLS_CORS = { 'Access-Control-Allow-Origin': CORS['Access-Control-Allow-Origin'], 'Access-Control-Expose-Headers': 'Age, Date' };

type FileKind = 'playlist' | 'init' | 'segment' | 'part';

const kindOf = (file: string): FileKind => (file.endsWith('.m3u8') ? 'playlist' : file.startsWith('init-') ? 'init' : file.startsWith('seg-') ? 'segment' : 'part');

export class HlsProxy {
  readonly router: Router;
  readonly cache: HlsCache;
  readonly #options: HlsProxyOptions;
  /** Per stream: when each viewer (address + user agent) last reloaded a playlist. */
  readonly #viewers = new Map<string, Map<string, number>>();

  constructor(options: HlsProxyOptions) {
    this.#options = options;
    this.cache = options.cache;
    this.router = express.Router();
    this.router.options(`${PUBLIC_HLS_PATH}/:stream/:file`, (_req, res) => {
      res.set(CORS).status(204).end();
    });
    this.router.get(`${PUBLIC_HLS_PATH}/:stream/:file`, async (req, res) => {
      res.set(HLS_CORS);
      const { stream, file } = this.#target(req);
      const token = typeof req.query.token === 'string' ? req.query.token : bearerToken(req.get('authorization'));
      const claims = await options.authorize(stream, token);
      await options.admission?.admitRequest(req, { action: 'play', protocol: 'hls', stream, token: claims, bearer: token });
      if (file.endsWith('.m3u8')) this.#countViewer(stream, req);
      const answer = await this.#answer(stream, file, req);
      if (!token || answer.status !== 200) return sendHls(res, answer);
      // Played with a token: no shared cache may keep the answer for others (a token in the
      // Authorization header does not make the URL anyone's own), and a playlist's URIs carry the
      // token on, for a player sends nothing else with them.
      const headers = { ...answer.headers, 'cache-control': (answer.headers['cache-control'] ?? 'no-cache').replace(/\bpublic\b/, 'private') };
      const body = file.endsWith('.m3u8') ? Buffer.from(withQuery(answer.body.toString(), `token=${encodeURIComponent(token)}`)) : answer.body;
      sendHls(res, { ...answer, headers, body });
    });
    this.router.get(`${INTERNAL_HLS_PATH}/:stream/:file`, async (req, res) => {
      authorizeInternal(req, options.clusterSecret);
      const { stream, file } = this.#target(req);
      sendHls(res, await this.#answer(stream, file, req));
    });
  }

  /** HLS viewers now, by stream. */
  viewers(): Map<string, number> {
    const since = Date.now() - VIEWER_WINDOW_MS;
    const counts = new Map<string, number>();
    for (const [stream, clients] of this.#viewers) {
      for (const [client, seen] of clients) if (seen < since) clients.delete(client);
      if (clients.size === 0) this.#viewers.delete(stream);
      else counts.set(stream, clients.size);
    }
    return counts;
  }

  #target(req: Request): { stream: string; file: string } {
    const stream = streamName(String(req.params.stream));
    const file = String(req.params.file);
    if (!isHlsFile(file)) throw new Problem('not-found', `${file} is no HLS file`);
    return { stream, file };
  }

  #countViewer(stream: string, req: Request): void {
    let clients = this.#viewers.get(stream);
    if (!clients) this.#viewers.set(stream, (clients = new Map()));
    clients.set(`${this.#options.clientAddress(req)} ${req.get('user-agent') ?? ''}`, Date.now());
  }

  /** From the cache, or upstream once for everybody asking the same. The key holds only what upstream answers differently to. */
  async #answer(stream: string, file: string, req: Request): Promise<HlsAnswer> {
    let query = '';
    if (file === 'media.m3u8') {
      const reload = parseReloadQuery(req.query as Record<string, unknown>);
      const params = new URLSearchParams();
      if (reload._HLS_msn !== undefined) params.set('_HLS_msn', String(reload._HLS_msn));
      if (reload._HLS_part !== undefined) params.set('_HLS_part', String(reload._HLS_part));
      if (reload._HLS_skip !== undefined) params.set('_HLS_skip', reload._HLS_skip);
      query = params.size > 0 ? `?${params.toString()}` : '';
    }
    const key = `${stream}/${file}${query}`;
    const { answer, outcome } = await this.cache.get(key, () => this.#fetch(stream, `${file}${query}`));
    this.#options.metrics.hlsRequests.inc({ kind: kindOf(file), cache: outcome });
    return answer;
  }

  async #fetch(stream: string, fileAndQuery: string): Promise<HlsAnswer> {
    const upstream = await this.#options.upstream(stream);
    let response: globalThis.Response;
    try {
      response = await internalFetch(upstream.url, `${INTERNAL_HLS_PATH}/${stream}/${fileAndQuery}`, this.#options.clusterSecret, {
        signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Problem('bad-gateway', `${upstream.nodeId} did not answer for ${stream}/${fileAndQuery}: ${(error as Error).message}`);
    }
    const body = Buffer.from(await response.arrayBuffer());
    const headers: Record<string, string> = { 'content-type': response.headers.get('content-type') ?? 'application/octet-stream' };
    const cacheControl = response.headers.get('cache-control');
    if (cacheControl) headers['cache-control'] = cacheControl;
    const retryAfter = response.headers.get('retry-after');
    if (retryAfter) headers['retry-after'] = retryAfter;
    return { status: response.status, headers, body };
  }
}
