import type { Knex } from 'knex';

/** The `audit` table: who did what, when, and whether it was allowed. */

export interface AuditEntry {
  actor: string;
  action: string;
  target?: string;
  outcome?: 'ok' | 'denied' | 'failed';
  detail?: Record<string, unknown>;
}

export interface AuditRecord extends Required<Omit<AuditEntry, 'detail' | 'target'>> {
  id: string;
  at: Date;
  target: string | null;
  detail: Record<string, unknown> | null;
}

export async function recordAudit(db: Knex, entries: AuditEntry | AuditEntry[]): Promise<void> {
  const list = Array.isArray(entries) ? entries : [entries];
  if (list.length === 0) return;
  await db('audit').insert(
    list.map((e) => ({
      actor: e.actor,
      action: e.action,
      target: e.target ?? null,
      outcome: e.outcome ?? 'ok',
      detail: e.detail ? JSON.stringify(e.detail) : null,
    })),
  );
}

export async function listAudit(
  db: Knex,
  filter: { action?: string; actor?: string; target?: string; outcome?: AuditEntry['outcome']; before?: string; limit?: number } = {},
): Promise<AuditRecord[]> {
  const query = db('audit')
    .orderBy('id', 'desc')
    .limit(filter.limit ?? 100);
  if (filter.action) query.where('action', filter.action);
  if (filter.actor) query.where('actor', filter.actor);
  if (filter.target) query.where('target', filter.target);
  if (filter.outcome) query.where('outcome', filter.outcome);
  if (filter.before !== undefined) query.where('id', '<', filter.before);
  // Postgres gives bigint ids as text and timestamps as Date; PGlite may give numbers and text.
  const rows: Array<Omit<AuditRecord, 'id' | 'at'> & { id: string | number; at: Date | string }> = await query;
  return rows.map((r) => ({
    id: String(r.id),
    at: new Date(r.at),
    actor: r.actor,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    detail: r.detail,
  }));
}
