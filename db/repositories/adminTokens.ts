import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { hashSecret } from './streamKeys.ts';

/**
 * Admin API tokens, kept in `tokens` as kind `admin`: only their sha256 is stored (the tokens are
 * 32 random bytes, so a fast hash is enough); the token itself is shown once, when it is issued.
 */

const KIND = 'admin';

export const ADMIN_SCOPES = ['read', 'write'] as const;
export type AdminScope = (typeof ADMIN_SCOPES)[number];

export interface AdminTokenRecord {
  id: string;
  label: string | null;
  scopes: AdminScope[];
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
}

interface TokenRow {
  id: string | number;
  label: string | null;
  scopes: string[];
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

const date = (d: Date | null) => (d ? new Date(d) : null);

function toRecord(row: TokenRow): AdminTokenRecord {
  return {
    id: String(row.id),
    label: row.label,
    scopes: row.scopes.filter((s): s is AdminScope => (ADMIN_SCOPES as readonly string[]).includes(s)),
    createdAt: new Date(row.created_at),
    expiresAt: date(row.expires_at),
    revokedAt: date(row.revoked_at),
    lastUsedAt: date(row.last_used_at),
  };
}

/** A new admin token: `rca_` and 32 random bytes. */
export function newAdminToken(): string {
  return `rca_${randomBytes(32).toString('base64url')}`;
}

/**
 * Stores a token (its hash). Storing one that is already there changes nothing and returns
 * undefined: the operator's RELAYCAST_ADMIN_TOKEN is stored at every start, and one revoked
 * through the API stays revoked.
 */
export async function storeAdminToken(
  db: Knex,
  token: string,
  options: { label?: string; scopes: readonly AdminScope[]; ttlSeconds?: number },
): Promise<AdminTokenRecord | undefined> {
  const rows: TokenRow[] = await db('tokens')
    .insert({
      kind: KIND,
      hash: hashSecret(token),
      scopes: [...options.scopes],
      label: options.label ?? null,
      expires_at: options.ttlSeconds ? db.raw(`now() + make_interval(secs => ?)`, [options.ttlSeconds]) : null,
    })
    .onConflict('hash')
    .ignore()
    .returning(['id', 'label', 'scopes', 'created_at', 'expires_at', 'revoked_at', 'last_used_at']);
  return rows[0] ? toRecord(rows[0]) : undefined;
}

/** How many admin tokens are neither revoked nor expired. */
export async function countUsableAdminTokens(db: Knex): Promise<number> {
  const [row] = await db('tokens')
    .where({ kind: KIND })
    .whereNull('revoked_at')
    .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()))
    .count<Array<{ count: string | number }>>({ count: '*' });
  return Number(row?.count ?? 0);
}

/** The usable token with this secret, or undefined; marks it used. */
export async function findAdminToken(db: Knex, token: string): Promise<AdminTokenRecord | undefined> {
  const [row] = (await db('tokens')
    .where({ kind: KIND, hash: hashSecret(token) })
    .whereNull('revoked_at')
    .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()))
    .update({ last_used_at: db.fn.now() })
    .returning(['id', 'label', 'scopes', 'created_at', 'expires_at', 'revoked_at', 'last_used_at'])) as TokenRow[];
  return row ? toRecord(row) : undefined;
}

export async function listAdminTokens(db: Knex): Promise<AdminTokenRecord[]> {
  const rows: TokenRow[] = await db('tokens').where({ kind: KIND }).orderBy('id');
  return rows.map(toRecord);
}

/** Revokes one token; false when there is no such live token. */
export async function revokeAdminToken(db: Knex, id: string): Promise<boolean> {
  if (!/^\d{1,18}$/.test(id)) return false;
  return (await db('tokens').where({ kind: KIND, id }).whereNull('revoked_at').update({ revoked_at: db.fn.now() })) === 1;
}
