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
  readonly extra: Record<string, unknown>;

  constructor(status: number, title: string, detail?: string, extra: Record<string, unknown> = {}) {
    super(detail ?? title);
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new TypeError(`Problem status must be 4xx or 5xx, got ${status}`);
    }
    this.name = 'Problem';
    this.status = status;
    this.title = title;
    this.type = `https://relaycast.dev/problems/${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
    this.extra = extra;
  }
}

/** The database could not be reached; handlers map it to 503 and the process stays up. */
export class DatabaseUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`database unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'DatabaseUnavailableError';
  }
}
