import express, { type Request, type Router } from 'express';
import type { z } from 'zod';
import { Problem } from '../core/errors.ts';
import type { AdminScope, AdminTokenRecord } from '../db/repositories/adminTokens.ts';

/**
 * An admin API operation, declared once: its route, the scope it needs, its input shapes and
 * its handler. The router and the OpenAPI document are both built from the list of operations.
 */

type Schema = z.ZodType | undefined;
type Input<S extends Schema> = S extends z.ZodType ? z.output<S> : undefined;

export interface Reply {
  status: number;
  body?: unknown;
}

export interface Operation<P extends Schema = Schema, Q extends Schema = Schema, B extends Schema = Schema> {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** OpenAPI style: `/streams/{name}`. */
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  /** null: open to anyone (the OpenAPI document itself). */
  scope: AdminScope | null;
  params?: P;
  query?: Q;
  body?: B;
  /** Success responses (status → description and shape); the errors are added for every operation. */
  responses: Record<number, { description: string; schema?: z.ZodType }>;
  handle(input: { params: Input<P>; query: Input<Q>; body: Input<B>; token: AdminTokenRecord | undefined; req: Request }): Promise<Reply>;
}

/** Declares an operation, inferring its handler's input types from its schemas. */
export function operation<P extends Schema = undefined, Q extends Schema = undefined, B extends Schema = undefined>(
  op: Operation<P, Q, B>,
): Operation {
  return op as unknown as Operation;
}

function parse(schema: z.ZodType | undefined, value: unknown, where: string): unknown {
  if (!schema) return undefined;
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const detail = result.error.issues.map((i) => `${[where, ...i.path].join('.')}: ${i.message}`).join('; ');
  throw new Problem('invalid-request', detail, {
    extra: { errors: result.error.issues.map((i) => ({ in: where, path: i.path.join('.'), message: i.message })) },
  });
}

/** Who an admin API change is audited under. */
export const actor = (token: AdminTokenRecord | undefined) => `admin:${token?.id ?? '?'}`;

/** One page: the first `limit` of `rows` (which were read with one more to see if there is a next). */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (row: T) => string) {
  const items = rows.slice(0, limit);
  return { items, next: rows.length > limit ? cursorOf(items[items.length - 1]!) : null };
}

/** `/streams/{name}` → `/streams/:name` */
export const expressPath = (path: string) => path.replace(/\{(\w+)\}/g, ':$1');

/**
 * JSON bodies of the admin API are small (the largest is a token request); 16 KB leaves room
 * and refuses anything else with 413 before parsing it.
 */
const MAX_BODY = '16kb';

export function operationsRouter(operations: Operation[], authorize: (req: Request, scope: AdminScope) => Promise<AdminTokenRecord>): Router {
  const router = express.Router();
  const json = express.json({ limit: MAX_BODY });
  for (const op of operations) {
    router[op.method](expressPath(op.path), async (req, res) => {
      const token = op.scope ? await authorize(req, op.scope) : undefined;
      const params = parse(op.params, req.params, 'path');
      const query = parse(op.query, req.query, 'query');
      let body: unknown;
      if (op.body) {
        if (!req.is('application/json')) throw new Problem('unsupported-media-type', 'the body must be application/json', { headers: { 'Accept-Post': 'application/json' } });
        await new Promise<void>((resolve, reject) => json(req, res, (e?: unknown) => (e ? reject(e) : resolve())));
        body = parse(op.body, req.body, 'body');
      }
      const reply = await op.handle({ params, query, body, token, req } as never);
      res.status(reply.status);
      if (reply.body === undefined) res.end();
      else res.json(reply.body);
    });
  }
  return router;
}
