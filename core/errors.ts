import { PROBLEM_TYPE_BASE, PROBLEMS, type ProblemName } from './problems.ts';

/**
 * The few named errors Relaycast throws. An HTTP handler throws a `Problem`; the error middleware
 * turns it (and anything else) into one application/problem+json shape (RFC 9457).
 */

/** A setting that is missing or wrong; `field` names it (config key, `roles` or `config`). */
export class ConfigError extends Error {
  readonly field: string;

  constructor(field: string, message: string, options?: ErrorOptions) {
    super(`${field}: ${message}`, options);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** An HTTP error with the status and problem+json fields the client gets (see core/problems.ts). */
export class Problem extends Error {
  readonly problem: ProblemName;
  readonly status: number;
  readonly title: string;
  readonly type: string;
  /** Members added to the problem+json body. */
  readonly extra: Record<string, unknown>;
  /** Response headers that go with it (WWW-Authenticate, Retry-After, Allow…). */
  readonly headers: Record<string, string>;

  constructor(
    problem: ProblemName,
    detail?: string,
    options: { extra?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    const known = PROBLEMS[problem];
    if (!known) throw new TypeError(`no problem named ${String(problem)} in core/problems.ts`);
    super(detail ?? known.title);
    this.name = 'Problem';
    this.problem = problem;
    this.status = known.status;
    this.title = known.title;
    this.type = `${PROBLEM_TYPE_BASE}${problem}`;
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }
}

/** An SDP offer (or sdpfrag) that cannot be parsed or breaks WebRTC's rules: answered 400. */
export class InvalidSdpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidSdpError';
  }
}

/**
 * A well-formed offer with nothing we can take (codecs, directions): answered 422. `details` go
 * into the problem+json body (e.g. the codecs the stream has and the ones the offer had).
 */
export class UnsupportedMediaError extends Error {
  readonly details: Record<string, unknown>;

  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'UnsupportedMediaError';
    this.details = details;
  }
}

/** Postgres error classes meaning "the server is not there or not taking queries". */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** Whether an error from a query means the database is unreachable (503), not a bug (500). */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { name?: string; code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.name === 'KnexTimeoutError') return true;
  if (e.code && (UNAVAILABLE_SQLSTATES.has(e.code) || UNAVAILABLE_CODES.has(e.code))) return true;
  return /Connection terminated|connection ended unexpectedly|Client was closed/i.test(e.message ?? '');
}
