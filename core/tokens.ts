import { createHash, timingSafeEqual } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { Problem } from './errors.ts';

/**
 * The one token format for publishers and viewers: a JWT (HS256, signed with the cluster secret)
 * naming one stream and one action, with an expiry. Every node verifies it without a database
 * round trip. Admin API tokens are something else: opaque, stored hashed with scopes
 * (balancer/AdminAuth.ts); the internal API takes the cluster secret itself.
 */

/** publish: WHIP or RTMP; play: watch it live (WHEP, HLS); playback: its recordings. */
export const STREAM_ACTIONS = ['publish', 'play', 'playback'] as const;
export type StreamAction = (typeof STREAM_ACTIONS)[number];

export const STREAM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const STREAM_NAME_RULE = 'stream names are 1 to 64 letters, digits, "_" or "-"';

/** `name`, if it is a valid stream name; else a 400 invalid-stream-name problem. */
export function streamName(name: unknown): string {
  const text = String(name ?? '');
  if (!STREAM_NAME.test(text)) throw new Problem('invalid-stream-name', STREAM_NAME_RULE);
  return text;
}

const ISSUER = 'relaycast';

function key(secret: string): Uint8Array {
  return new TextEncoder().encode(secret);
}

export async function signStreamToken(
  secret: string,
  claims: { stream: string; action: StreamAction; ttlSeconds?: number },
): Promise<string> {
  if (!STREAM_NAME.test(claims.stream)) throw new TypeError(`invalid stream name: ${claims.stream}`);
  return new SignJWT({ act: claims.action })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(ISSUER)
    .setSubject(claims.stream)
    .setIssuedAt()
    .setExpirationTime(`${claims.ttlSeconds ?? 3600}s`)
    .sign(key(secret));
}

/** The bearer token of an Authorization header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

export function secretsEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

const unauthorized = (detail: string) =>
  new Problem('unauthorized', detail, { headers: { 'WWW-Authenticate': 'Bearer realm="relaycast"' } });

/** A verified stream token's claims, as the admission endpoint gets them (core/Admission.ts). */
export interface StreamClaims {
  /** The stream. */
  sub: string;
  act: StreamAction;
  /** Issued and expiry times, Unix seconds. */
  iat: number | undefined;
  exp: number | undefined;
}

/**
 * Checks that `token` is a stream token for exactly `action` on `stream` and returns its claims.
 * Throws a 401 Problem for a missing, forged, expired or malformed token and a 403 for a valid one
 * that names another stream or action.
 */
export async function authorizeStream(
  token: string | undefined,
  options: { secret: string; stream: string; action: StreamAction },
): Promise<StreamClaims> {
  if (!token) throw unauthorized('a Bearer token is required');
  let payload;
  try {
    ({ payload } = await jwtVerify(token, key(options.secret), { issuer: ISSUER, algorithms: ['HS256'] }));
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw unauthorized('the token has expired');
    throw unauthorized('the token is not valid');
  }
  if (payload.sub !== options.stream) throw new Problem('forbidden', 'the token is for another stream');
  if (payload.act !== options.action) throw new Problem('forbidden', `the token does not allow ${options.action}`);
  return { sub: options.stream, act: options.action, iat: payload.iat, exp: payload.exp };
}
