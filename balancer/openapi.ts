import { z } from 'zod';
import { problem } from './apiSchemas.ts';
import type { Operation } from './apiOperations.ts';

/**
 * The admin API's OpenAPI 3.1 document, generated from the operations and their zod shapes
 * (JSON Schema 2020-12, which OpenAPI 3.1 uses as is).
 */

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

export function openApiDocument(operations: Operation[], options: { version: string; serverUrl: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations) {
    const parameters: unknown[] = [];
    for (const [where, schema] of [['path', op.params], ['query', op.query]] as const) {
      if (!schema) continue;
      const object = jsonSchema(schema, 'input') as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
      for (const [name, property] of Object.entries(object.properties ?? {})) {
        const { description, ...propertySchema } = property;
        parameters.push({
          name,
          in: where,
          required: where === 'path' || (object.required ?? []).includes(name),
          ...(description ? { description } : {}),
          schema: propertySchema,
        });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, { description, schema }] of Object.entries(op.responses)) {
      responses[status] = schema ? { description, content: { 'application/json': { schema: jsonSchema(schema, 'output') } } } : { description };
    }
    if (op.params || op.query || op.body) responses['400'] = problemResponse('invalid request');
    if (op.scope) {
      responses['401'] = problemResponse('missing, unknown, revoked or expired admin token');
      responses['403'] = problemResponse(`the token lacks the "${op.scope}" scope`);
    }
    if (op.method === 'post') responses['429'] = problemResponse('too many requests from this address');
    responses['503'] = problemResponse('the cluster database is unreachable');
    (paths[op.path] ??= {})[op.method] = {
      operationId: op.operationId,
      summary: op.summary,
      tags: [op.tag],
      security: op.scope ? [{ adminToken: [op.scope] }] : [],
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(op.body, 'input') } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Relaycast admin API',
      version: options.version,
      description:
        'Streams, their keys and tokens, the nodes of the cluster, admin tokens and the audit log. ' +
        'Authenticate with an admin token: `Authorization: Bearer <token>`; GETs need the read scope, everything else write. ' +
        'Errors are application/problem+json (RFC 9457).',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: `${options.serverUrl}/api/v1` }],
    components: {
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'an admin token (scopes: read, write)' } },
      schemas: { Problem: jsonSchema(problem, 'output') },
    },
    paths,
  };
}
