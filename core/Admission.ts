import { createHash, randomUUID } from 'node:crypto';
import type { Request } from 'express';
import { ADMISSION_FAILURE_ANSWERS } from './config.ts';
import { Problem } from './errors.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import type { StreamClaims } from './tokens.ts';
import type { TrustedProxies } from './TrustedProxies.ts';
import { WebhookCallError, type WebhookClient } from './webhookHttp.ts';

/**
 * Admission webhooks: before a publish (WHIP, RTMP) or a play (WHEP, HLS) is accepted, after its
 * stream token was checked, the operator's endpoint is asked whether to let it in. One signed JSON
 * POST (Standard Webhooks, core/webhookSignature.ts):
 *
 *   {id, action, protocol, stream, client: {ip, userAgent}, token: claims | null, node: {id, region}, timestamp}
 *
 * The answer contract:
 * - 2xx with `{"allow": true}`, or an empty 2xx body: allowed;
 * - 2xx with `{"allow": false, "reason": "…"}`: refused, 403 admission-refused with the reason;
 * - 401 or 403: refused, the reason taken from a JSON body's `reason` or `detail` if any;
 * - anything else (3xx, 4xx, 5xx, a 2xx that is not JSON or has no boolean `allow`, no answer
 *   within --admission-timeout-ms, a refused connection): a failure, answered as
 *   --admission-on-failure says: refuse (503 admission-unavailable, Retry-After) or allow (logged).
 * An answer may carry `"ttl"` (seconds its decision is reused, at most an hour; else
 * --admission-cache-ms) and `"scope": "stream"`: the decision then holds for every client of that
 * stream, action and protocol for the ttl, which is how an operator keeps a join storm of
 * thousands of distinct viewers from becoming thousands of calls.
 *
 * Decisions are cached by action, protocol, stream, client address and token; identical lookups
 * under way share one call (single flight); a failure is remembered for FAILURE_MEMORY_MS.
 */

export const ADMISSION_ACTIONS = ['publish', 'play'] as const;
export type AdmissionAction = (typeof ADMISSION_ACTIONS)[number];
export const ADMISSION_PROTOCOLS = ['whip', 'rtmp', 'whep', 'hls'] as const;
export type AdmissionProtocol = (typeof ADMISSION_PROTOCOLS)[number];

export interface AdmissionQuery {
  action: AdmissionAction;
  protocol: AdmissionProtocol;
  stream: string;
  /** The client's address (behind trusted proxies, theirs). */
  clientIp: string;
  userAgent?: string;
  /** The verified stream token's claims; null (or absent) when none was given (a public stream). */
  token?: StreamClaims | null;
  /** The token as given: only its hash goes into the cache key, it is never sent. */
  bearer?: string;
}

export interface AdmissionOptions {
  url: string;
  /** whsec_… the calls are signed with. */
  secret: string;
  timeoutMs: number;
  onFailure: (typeof ADMISSION_FAILURE_ANSWERS)[number];
  /** How long a decision is reused when the answer says nothing (0: not at all). */
  cacheMs: number;
  node: { id: string; region: string };
  /** The process's one client for calls to operators' endpoints. */
  client: WebhookClient;
  metrics: Metrics;
  logger: Logger;
  /** Whose X-Forwarded-For is believed, for admitRequest(). */
  proxies: TrustedProxies;
}

/** The longest reuse an answer's `ttl` may ask for: an hour, so a mistaken answer does not outlive an operator's fix by a day. */
const MAX_TTL_S = 3600;

/**
 * Decisions kept at most; past it the least recently used go first. An entry is a few hundred
 * bytes, so 10,000 (a join storm of ten thousand distinct viewers within one TTL) is a few MB.
 */
const MAX_DECISIONS = 10_000;

/**
 * How long a failure (no answer in time, connection refused, an answer outside the contract) is
 * answered without calling again: during an outage a join storm of hundreds a second costs one
 * call (one timeout) a second rather than hundreds of sockets waiting out the timeout, and an
 * endpoint that comes back is asked again within a second.
 */
export const FAILURE_MEMORY_MS = 1000;

/** Seconds a client refused for a failure is told to wait (Retry-After): the failure memory, rounded up, and a margin. */
const FAILURE_RETRY_AFTER_S = 2;

/** Longest reason passed on to the client: a sentence, not a page. */
const MAX_REASON_CHARS = 300;

type Scope = 'client' | 'stream';

/** What the endpoint said, or why it said nothing usable. */
type Outcome = { allow: boolean; reason?: string; ttlMs: number; scope: Scope } | { failure: string };

interface Decision {
  allow: boolean;
  reason?: string;
  until: number;
}

const hash = (text: string) => createHash('sha256').update(text).digest('base64url');

export class Admission {
  readonly #options: AdmissionOptions;
  /** Decisions by key (client or stream scope), least recently used first. */
  readonly #decisions = new Map<string, Decision>();
  /** Calls under way, by client key. */
  readonly #inFlight = new Map<string, Promise<Outcome>>();
  /** Until when the last failure is answered without a call, and what it was. */
  #failedUntil = 0;
  #lastFailure = '';

  constructor(options: AdmissionOptions) {
    if (!options || typeof options !== 'object') throw new TypeError('options must be an object');
    if (!/^https?:\/\//.test(options.url)) throw new TypeError('url must be an http:// or https:// URL');
    if (typeof options.secret !== 'string' || !options.secret) throw new TypeError('secret is required');
    if (!Number.isInteger(options.timeoutMs) || options.timeoutMs <= 0) throw new TypeError('timeoutMs must be a positive integer');
    if (!Number.isInteger(options.cacheMs) || options.cacheMs < 0) throw new TypeError('cacheMs must be an integer ≥ 0');
    if (!ADMISSION_FAILURE_ANSWERS.includes(options.onFailure)) throw new TypeError(`onFailure must be one of ${ADMISSION_FAILURE_ANSWERS.join(', ')}`);
    this.#options = options;
  }

  /** Resolves when the client may go on; throws a 403 admission-refused or 503 admission-unavailable Problem when not. */
  async admit(query: AdmissionQuery): Promise<void> {
    checkQuery(query);
    const { action } = query;
    const key = `${action} ${query.protocol} ${query.stream} ${query.clientIp} ${query.bearer ? hash(query.bearer) : ''}`;
    const cached = this.#cached(key) ?? this.#cached(streamKey(query));
    if (cached) return this.#apply(query, { allow: cached.allow, reason: cached.reason, ttlMs: 0, scope: 'client' }, 'cache');
    if (Date.now() < this.#failedUntil) return this.#apply(query, { failure: this.#lastFailure }, 'cache');
    let call = this.#inFlight.get(key);
    const source = call ? 'cache' : 'endpoint';
    if (!call) {
      call = this.#ask(query, key).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, call);
    }
    return this.#apply(query, await call, source);
  }

  /** admit() for an HTTP request: the client's address (behind trusted proxies) and user agent from it. */
  admitRequest(req: Request, query: Omit<AdmissionQuery, 'clientIp' | 'userAgent'>): Promise<void> {
    const clientIp = this.#options.proxies.clientAddress(req.socket.remoteAddress ?? '', req.get('x-forwarded-for'));
    return this.admit({ ...query, clientIp, userAgent: req.get('user-agent') });
  }

  /** A decision still valid under `key`, made the most recently used. */
  #cached(key: string): Decision | undefined {
    const decision = this.#decisions.get(key);
    if (!decision) return undefined;
    this.#decisions.delete(key);
    if (decision.until <= Date.now()) return undefined;
    this.#decisions.set(key, decision);
    return decision;
  }

  #remember(key: string, decision: Decision): void {
    this.#decisions.delete(key);
    while (this.#decisions.size >= MAX_DECISIONS) this.#decisions.delete(this.#decisions.keys().next().value!);
    this.#decisions.set(key, decision);
  }

  /** Calls the endpoint; remembers the decision (or the failure). */
  async #ask(query: AdmissionQuery, key: string): Promise<Outcome> {
    const { url, secret, timeoutMs, node, client, metrics } = this.#options;
    const id = randomUUID();
    const body = JSON.stringify({
      id,
      action: query.action,
      protocol: query.protocol,
      stream: query.stream,
      client: { ip: query.clientIp, userAgent: query.userAgent ?? null },
      token: query.token ?? null,
      node,
      timestamp: new Date().toISOString(),
    });
    const started = performance.now();
    let outcome: Outcome;
    try {
      const answer = await client.post(url, { id, secret, body, timeoutMs });
      outcome = readAnswer(answer.status, answer.body, this.#options.cacheMs);
    } catch (error) {
      const timedOut = error instanceof WebhookCallError && error.timedOut;
      outcome = { failure: timedOut ? `did not answer within ${timeoutMs} ms (timeout)` : `is down: ${(error as Error).message}` };
    }
    const label = 'failure' in outcome ? 'failed' : outcome.allow ? 'allowed' : 'refused';
    metrics.admissionSeconds.observe({ action: query.action, outcome: label }, (performance.now() - started) / 1000);
    if ('failure' in outcome) {
      this.#failedUntil = Date.now() + FAILURE_MEMORY_MS;
      this.#lastFailure = outcome.failure;
    } else if (outcome.ttlMs > 0) {
      this.#remember(outcome.scope === 'stream' ? streamKey(query) : key, { allow: outcome.allow, reason: outcome.reason, until: Date.now() + outcome.ttlMs });
    }
    return outcome;
  }

  /** Lets the client on, or throws; counts the decision. */
  #apply(query: AdmissionQuery, outcome: Outcome, source: 'endpoint' | 'cache'): void {
    const { metrics, logger, onFailure } = this.#options;
    const count = (outcome: string) => metrics.admissionDecisions.inc({ action: query.action, outcome, source });
    if (!('failure' in outcome)) {
      count(outcome.allow ? 'allowed' : 'refused');
      if (outcome.allow) return;
      throw new Problem('admission-refused', outcome.reason ?? 'refused by the admission endpoint');
    }
    const log = { action: query.action, protocol: query.protocol, stream: query.stream, client: query.clientIp, failure: outcome.failure, source };
    if (onFailure === 'allow') {
      count('failed_allowed');
      logger.warn(log, 'admission endpoint failed: allowed (--admission-on-failure allow)');
      return;
    }
    count('failed_refused');
    logger.warn(log, 'admission endpoint failed: refused (--admission-on-failure refuse)');
    throw new Problem('admission-unavailable', `the admission endpoint ${outcome.failure}; try again shortly`, {
      headers: { 'Retry-After': String(FAILURE_RETRY_AFTER_S) },
    });
  }
}

const streamKey = (query: AdmissionQuery) => `${query.action} ${query.protocol} ${query.stream} *`;

function checkQuery(query: AdmissionQuery): void {
  if (!query || typeof query !== 'object') throw new TypeError('query must be an object');
  if (!ADMISSION_ACTIONS.includes(query.action)) throw new TypeError(`action must be one of ${ADMISSION_ACTIONS.join(', ')}`);
  if (!ADMISSION_PROTOCOLS.includes(query.protocol)) throw new TypeError(`protocol must be one of ${ADMISSION_PROTOCOLS.join(', ')}`);
  if (typeof query.stream !== 'string' || !query.stream) throw new TypeError('stream must be a non-empty string');
  if (typeof query.clientIp !== 'string') throw new TypeError('clientIp must be a string');
}

/** What an answer means under the contract (see the class doc). */
function readAnswer(status: number, text: string, cacheMs: number): Outcome {
  let json: Record<string, unknown> | undefined;
  if (text.trim() !== '') {
    try {
      const value: unknown = JSON.parse(text);
      if (value && typeof value === 'object' && !Array.isArray(value)) json = value as Record<string, unknown>;
    } catch {
      json = undefined;
    }
  }
  const ttl = json?.ttl;
  const ttlMs = typeof ttl === 'number' && Number.isFinite(ttl) && ttl >= 0 ? Math.min(ttl, MAX_TTL_S) * 1000 : cacheMs;
  const scope: Scope = json?.scope === 'stream' ? 'stream' : 'client';
  const reasonOf = (value: unknown) => (typeof value === 'string' && value ? value.slice(0, MAX_REASON_CHARS) : undefined);
  if (status === 401 || status === 403) return { allow: false, reason: reasonOf(json?.reason) ?? reasonOf(json?.detail), ttlMs, scope };
  if (status < 200 || status > 299) return { failure: `answered ${status}` };
  if (text.trim() === '') return { allow: true, ttlMs, scope };
  if (typeof json?.allow !== 'boolean') return { failure: `answered ${status} without a boolean "allow"` };
  return { allow: json.allow, reason: json.allow ? undefined : reasonOf(json.reason), ttlMs, scope };
}
