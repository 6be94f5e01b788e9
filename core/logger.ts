import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The one logger. Secrets never reach the logs: anything under these keys is redacted wherever
 * it appears in a logged object.
 */
const REDACT = [
  'adminToken',
  'clusterSecret',
  'databaseUrl',
  'password',
  'token',
  'streamKey',
  '*.adminToken',
  '*.clusterSecret',
  '*.databaseUrl',
  '*.password',
  '*.token',
  '*.streamKey',
  'req.headers.authorization',
];

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, redact: { paths: REDACT, censor: '[redacted]' } });
}
