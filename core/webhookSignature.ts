import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * How every call Relaycast makes to an operator's endpoint (event webhooks, admission) is signed:
 * the Standard Webhooks scheme (standardwebhooks.com), which Svix, Clerk and others use and for
 * which verifiers exist in most languages. Three headers:
 * - `webhook-id`: the event's (or admission request's) unique id; a receiver deduplicates on it;
 * - `webhook-timestamp`: Unix seconds when this attempt was signed; a receiver refuses old ones;
 * - `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the
 *   bytes of the secret after its `whsec_` prefix (base64).
 */

export const SECRET_PREFIX = 'whsec_';

/**
 * Random bytes in a new secret: 32, as the Standard Webhooks reference libraries make (the scheme
 * allows 24 to 64), a full HMAC-SHA256 key.
 */
const SECRET_BYTES = 32;

/**
 * How far a receiver's clock may be from the signer's before `verifyWebhook` refuses: 5 minutes,
 * the tolerance of the Standard Webhooks libraries, so a replayed capture is useless soon after.
 */
export const TIMESTAMP_TOLERANCE_S = 300;

export function newWebhookSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;
}

function keyOf(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new TypeError(`a webhook secret starts with ${SECRET_PREFIX}`);
  return Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
}

function signature(secret: string, id: string, timestamp: number, body: string): string {
  return createHmac('sha256', keyOf(secret)).update(`${id}.${timestamp}.${body}`).digest('base64');
}

/** The three headers of one signed call. */
export function signWebhook(secret: string, id: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${signature(secret, id, timestamp, body)}` };
}

/**
 * Whether `headers` (lower-case names) sign `body` with `secret`, within the timestamp tolerance.
 * For tests and for the receiver in docs/integrating/webhooks.md; any Standard Webhooks library does the same.
 */
export function verifyWebhook(secret: string, headers: Record<string, string | string[] | undefined>, body: string, now = Date.now()): boolean {
  const id = headers['webhook-id'];
  const timestamp = Number(headers['webhook-timestamp']);
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || !Number.isInteger(timestamp) || typeof signatures !== 'string') return false;
  if (Math.abs(now / 1000 - timestamp) > TIMESTAMP_TOLERANCE_S) return false;
  const expected = Buffer.from(signature(secret, id, timestamp, body));
  return signatures.split(' ').some((entry) => {
    const [version, value] = entry.split(',', 2);
    const given = Buffer.from(value ?? '');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}
