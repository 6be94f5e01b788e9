import type { Duplex } from 'node:stream';
import express, { type ErrorRequestHandler, type Express, type Request, type RequestHandler } from 'express';
import type { Logger } from './logger.ts';
import { InvalidSdpError, isDatabaseUnavailable, Problem, UnsupportedMediaError } from './errors.ts';

/**
 * The HTTP glue every role shares: one express app per process, one error shape
 * (application/problem+json, RFC 9457) for every failure, whatever threw it.
 */

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** CORS for WHIP/WHEP: browsers on any page may publish and play; the token is what authorizes. */
export const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PATCH, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, If-Match, Prefer',
  'Access-Control-Expose-Headers': 'Location, ETag, Link, Accept-Post, Accept-Patch, Preference-Applied',
  'Access-Control-Max-Age': '86400',
};

export function createApp(): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  return app;
}

/** Mount after every router: unknown paths get a 404 problem. */
export const notFound: RequestHandler = (req, _res, next) => {
  next(new Problem('not-found', `no route for ${req.method} ${req.path}`));
};

function toProblem(error: unknown): Problem {
  if (error instanceof Problem) return error;
  if (error instanceof InvalidSdpError) return new Problem('malformed-sdp', error.message);
  if (error instanceof UnsupportedMediaError) return new Problem('unsupported-media', error.message, { extra: error.details });
  if (isDatabaseUnavailable(error)) {
    return new Problem('service-unavailable', 'the cluster database is unreachable; try again shortly', {
      headers: { 'Retry-After': '2' },
    });
  }
  // body-parser and friends flag client errors with status/statusCode and `expose`.
  const e = error as { status?: number; statusCode?: number; expose?: boolean; message?: string; type?: string };
  const status = e.status ?? e.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const name = status === 413 ? 'payload-too-large' : status === 415 ? 'unsupported-media-type' : 'bad-request';
    return new Problem(name, e.expose ? e.message : undefined);
  }
  return new Problem('internal-server-error', 'the server failed to handle this request');
}

export interface ErrorHandlerOptions {
  /** Called for every 401 and 403 (the audit log keeps them). */
  onRefused?(req: Request, problem: Problem): void;
}

export function errorHandler(logger: Logger, options: ErrorHandlerOptions = {}): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const problem = toProblem(error);
    if (problem.status === 401 || problem.status === 403) options.onRefused?.(req, problem);
    if (problem.status >= 500) logger.error({ err: error, method: req.method, path: req.path }, 'request failed');
    else logger.debug({ status: problem.status, method: req.method, path: req.path, detail: problem.message }, 'request refused');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.set(problem.headers).status(problem.status).type(PROBLEM_CONTENT_TYPE).send(problemBody(problem, req.originalUrl));
  };
}

/** The application/problem+json body of `problem`. */
function problemBody(problem: Problem, instance?: string): string {
  return JSON.stringify({ type: problem.type, title: problem.title, status: problem.status, detail: problem.message, instance, ...problem.extra });
}

/**
 * For the HTTP server's 'clientError': a request Node's own parser refuses (bad bytes in the
 * target, broken headers) never reaches express; it gets the one error shape too, not a bare 400.
 */
export function refuseUnparsable(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || error.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  endWithProblem(socket, new Problem(error.code === 'HPE_HEADER_OVERFLOW' ? 'request-header-fields-too-large' : 'bad-request', 'the request could not be parsed'));
}

/** Answers on a raw connection, below express, with the one error shape, and closes it. */
export function endWithProblem(socket: Duplex, problem: Problem): void {
  const body = problemBody(problem);
  socket.end(
    `HTTP/1.1 ${problem.status} ${problem.title}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
