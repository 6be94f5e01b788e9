import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { Problem } from './errors.ts';

/**
 * Per-client-address limit on the POSTs that make work (API, WHIP, WHEP): a fixed one-minute
 * window, kept in this process (each node limits what reaches it). Over the limit: 429
 * problem+json with Retry-After. The internal API is not limited: nodes are trusted peers.
 */

const WINDOW_MS = 60_000;

/** Paths whose POSTs are limited. */
const LIMITED = /^\/(api\/v1|whip|whep)(\/|$)/;

export function postRateLimit(perMinute: number, clientAddress: (req: Request) => string): RequestHandler {
  const limiter = rateLimit({
    windowMs: WINDOW_MS,
    limit: perMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    // IPv6 clients are counted per /56: one host has a whole prefix to pick addresses from.
    keyGenerator: (req) => ipKeyGenerator(clientAddress(req), 56),
    handler: (_req, _res, next, options) => {
      next(
        new Problem('too-many-requests', `at most ${perMinute} POST requests a minute from one address`, {
          headers: { 'Retry-After': String(Math.ceil(options.windowMs / 1000)) },
        }),
      );
    },
  });
  return (req, res, next) => {
    if (perMinute === 0 || req.method !== 'POST' || !LIMITED.test(req.path)) return next();
    limiter(req, res, next);
  };
}
