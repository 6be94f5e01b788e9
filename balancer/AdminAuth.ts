import type { Knex } from 'knex';
import { Problem } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { bearerToken } from '../core/tokens.ts';
import {
  ADMIN_SCOPES,
  countUsableAdminTokens,
  findAdminToken,
  newAdminToken,
  storeAdminToken,
  type AdminScope,
  type AdminTokenRecord,
} from '../db/repositories/adminTokens.ts';
import { hashSecret } from '../db/repositories/streamKeys.ts';

/**
 * Who may use the admin API. Tokens are stored hashed with their scopes: `read` for GETs, `write`
 * for the rest. The first token is the operator's RELAYCAST_ADMIN_TOKEN, or — when there is none
 * and the cluster has no usable token — one made up and printed once on the terminal (never into
 * the log).
 */

/**
 * How long a checked token is believed without asking the database again. The dashboard polls
 * twice every 2 s; this keeps the database out of that path, at the cost that a token revoked on
 * another balancer keeps working here for up to 5 s (one revoked here stops at once).
 */
const CACHE_MS = 5000;

/** Refusals say how to authenticate (RFC 6750). */
const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="relaycast-admin"' };

export class AdminAuth {
  readonly #db: Knex;
  readonly #cache = new Map<string, { at: number; token: AdminTokenRecord }>();

  constructor(db: Knex) {
    this.#db = db;
  }

  /**
   * Stores the operator's token (a no-op when it is there already, or was revoked), or, when the
   * cluster has no usable admin token at all, makes one and returns it for the caller to print.
   */
  async bootstrap(operatorToken: string | undefined, logger: Logger): Promise<string | undefined> {
    if (operatorToken) {
      const stored = await storeAdminToken(this.#db, operatorToken, { label: 'RELAYCAST_ADMIN_TOKEN', scopes: ADMIN_SCOPES });
      if (stored) logger.info({ tokenId: stored.id }, 'admin token from RELAYCAST_ADMIN_TOKEN stored');
      return undefined;
    }
    if ((await countUsableAdminTokens(this.#db)) > 0) return undefined;
    const token = newAdminToken();
    const stored = await storeAdminToken(this.#db, token, { label: 'first start', scopes: ADMIN_SCOPES });
    logger.warn({ tokenId: stored?.id }, 'no admin token was set: made one and printed it on stderr (shown once)');
    return token;
  }

  /** The token of the request if it has `scope`; throws a 401 or 403 Problem otherwise. */
  async authorize(authorization: string | undefined, scope: AdminScope): Promise<AdminTokenRecord> {
    const secret = bearerToken(authorization);
    if (!secret) throw new Problem('unauthorized', 'an admin token is required (Authorization: Bearer …)', { headers: CHALLENGE });
    const hash = hashSecret(secret);
    const cached = this.#cache.get(hash);
    let token = cached && Date.now() - cached.at < CACHE_MS ? cached.token : undefined;
    if (!token) {
      token = await findAdminToken(this.#db, secret);
      if (!token) {
        this.#cache.delete(hash);
        throw new Problem('unauthorized', 'the admin token is not valid (unknown, revoked or expired)', { headers: CHALLENGE });
      }
      this.#cache.set(hash, { at: Date.now(), token });
    }
    if (!token.scopes.includes(scope)) {
      throw new Problem('forbidden', `this token lacks the "${scope}" scope`, { extra: { requiredScope: scope } });
    }
    return token;
  }

  /** Forgets checked tokens, after one was revoked. */
  forget(): void {
    this.#cache.clear();
  }
}
