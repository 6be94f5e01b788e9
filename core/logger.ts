import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

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

/** `auto`: readable lines on a terminal, JSON lines (for a log collector) anywhere else. */
export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * The logger of a process. Pretty or JSON, a line carries the same fields; the pretty stream is
 * synchronous (in-process, not a transport thread), so that the last lines before an exit are
 * not lost — a terminal is not where throughput matters.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, format: LogFormat = 'json'): Logger {
  const options = { level, base: { pid: process.pid, ...bindings }, redact: { paths: REDACT, censor: '[redacted]' } };
  const readable = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (!readable) return pino(options);
  return pino(options, pretty({ sync: true, singleLine: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}
