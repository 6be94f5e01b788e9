import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * Stream keys (RTMP publish secrets), kept in `tokens` as kind `stream_key`: only their sha256 is
 * stored; the key itself is shown once, when it is issued.
 */

const KIND = 'stream_key';

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The stream's row, created idle if it does not exist yet; returns its id. */
export async function ensureStream(db: Knex, name: string): Promise<string> {
  const [row] = (await db('streams').insert({ name }).onConflict('name').merge({ name }).returning('id')) as Array<{ id: string | number }>;
  return String(row!.id);
}

/**
 * Issues a new key for the stream and revokes the ones before it (rotation). Returns the key:
 * `sk_` and 32 random bytes, unguessable and safe in an RTMP URL.
 */
export async function issueStreamKey(db: Knex, stream: string): Promise<string> {
  const key = `sk_${randomBytes(32).toString('base64url')}`;
  await db.transaction(async (trx) => {
    const streamId = await ensureStream(trx, stream);
    await trx('tokens').where({ kind: KIND, stream_id: streamId }).whereNull('revoked_at').update({ revoked_at: trx.fn.now() });
    await trx('tokens').insert({ kind: KIND, hash: hashSecret(key), stream_id: streamId, label: `stream key of ${stream}` });
  });
  return key;
}

/** Revokes every key of the stream; returns how many were live. */
export async function revokeStreamKeys(db: Knex, stream: string): Promise<number> {
  return db('tokens')
    .where({ kind: KIND })
    .whereNull('revoked_at')
    .whereIn('stream_id', db('streams').select('id').where({ name: stream }))
    .update({ revoked_at: db.fn.now() });
}

/** The stream a live (unrevoked, unexpired) key publishes to, or undefined. */
export async function streamOfKey(db: Knex, key: string): Promise<string | undefined> {
  const row: { name: string } | undefined = await db('tokens')
    .join('streams', 'streams.id', 'tokens.stream_id')
    .where({ 'tokens.kind': KIND, 'tokens.hash': hashSecret(key) })
    .whereNull('tokens.revoked_at')
    .andWhere((q) => q.whereNull('tokens.expires_at').orWhere('tokens.expires_at', '>', db.fn.now()))
    .first('streams.name');
  if (row) await db('tokens').where({ kind: KIND, hash: hashSecret(key) }).update({ last_used_at: db.fn.now() });
  return row?.name;
}
