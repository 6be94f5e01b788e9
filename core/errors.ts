/**
 * The few named errors Relaycast throws. An HTTP handler throws a `Problem`; the error middleware
 * turns it (and anything else) into one application/problem+json shape (RFC 9457).
 */

/** A setting that is missing or wrong; `field` names it (config key, `roles` or `config`). */
export class ConfigError extends Error {
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** An HTTP error with the status and problem+json fields the client gets. */
export class Problem extends Error {
  readonly status: number;
  readonly title: string;
  readonly type: string;
  /** Members added to the problem+json body. */
  readonly extra: Record<string, unknown>;
  /** Response headers that go with it (WWW-Authenticate, Retry-After, Allow…). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    title: string,
    detail?: string,
    options: { extra?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(detail ?? title);
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new TypeError(`Problem status must be 4xx or 5xx, got ${status}`);
    }
    this.name = 'Problem';
    this.status = status;
    this.title = title;
    this.type = `https://relaycast.dev/problems/${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
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
