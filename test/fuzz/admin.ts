import fc from 'fast-check';

/**
 * Admin API bodies from the API's own OpenAPI document: for each request body schema, values that
 * fit it, values with the right keys and wrong types (or out of range), arbitrary JSON, broken
 * JSON and oversized bodies.
 */

export interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  default?: unknown;
  anyOf?: JsonSchema[];
}

export interface ApiOperation {
  method: string;
  /** OpenAPI style: /streams/{name}. */
  path: string;
  operationId: string;
  params: Array<{ name: string; schema: JsonSchema }>;
  body?: JsonSchema;
  /** Documented success statuses. */
  success: number[];
}

/** The operations of an OpenAPI document, each with its path parameters and body schema. */
export function operationsOf(doc: { paths: Record<string, Record<string, any>> }): ApiOperation[] {
  const ops: ApiOperation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      ops.push({
        method: method.toUpperCase(),
        path,
        operationId: op.operationId,
        params: (op.parameters ?? []).filter((p: any) => p.in === 'path').map((p: any) => ({ name: p.name, schema: p.schema })),
        body: op.requestBody?.content?.['application/json']?.schema,
        success: Object.keys(op.responses)
          .map(Number)
          .filter((s) => s >= 200 && s < 300),
      });
    }
  }
  return ops;
}

const types = (s: JsonSchema): string[] => (Array.isArray(s.type) ? s.type : s.type ? [s.type] : []);

/** Values that fit the schema. */
export function valid(schema: JsonSchema): fc.Arbitrary<unknown> {
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map(valid));
  const [type] = types(schema);
  switch (type) {
    case 'object': {
      const props = schema.properties ?? {};
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, v] of Object.entries(props)) record[k] = valid(v);
      return fc.record(record, { requiredKeys: (schema.required ?? []).filter((k) => k in props) as never[] });
    }
    case 'array':
      return fc.array(valid(schema.items ?? {}), { minLength: schema.minItems ?? 0, maxLength: schema.maxItems ?? 5 });
    case 'string':
      if (schema.pattern) {
        const max = schema.maxLength;
        return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => max === undefined || s.length <= max);
      }
      return fc.string({ unit: 'grapheme', minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 20, 100) }).filter(
        (s) => s.length >= (schema.minLength ?? 0) && s.length <= (schema.maxLength ?? Infinity),
      );
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -(2 ** 31), max: schema.maximum ?? 2 ** 31 });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e9, max: schema.maximum ?? 1e9, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Values of the wrong type, or of the right type outside the schema's bounds. */
export function invalid(schema: JsonSchema): fc.Arbitrary<unknown> {
  const [type] = types(schema);
  const otherTypes = fc.oneof(
    fc.constantFrom(null, true, false, 0, -1, 1.5, '', 'true', '60', [], {}, [null], { '': '' }, 1e308, -0, 2 ** 53 + 1),
    fc.jsonValue({ maxDepth: 2 }),
  );
  const bounds: Array<fc.Arbitrary<unknown>> = [];
  if (schema.enum) bounds.push(fc.constantFrom(...schema.enum.map((e) => (typeof e === 'string' ? e.toUpperCase() : e)), 'write ', ' read', 'admin', '*'));
  if (type === 'string') {
    if (schema.pattern) bounds.push(fc.string({ unit: 'grapheme', maxLength: 80 }).filter((s) => !new RegExp(schema.pattern!).test(s)));
    if (schema.minLength) bounds.push(fc.constant('x'.repeat(schema.minLength - 1)));
    if (schema.maxLength !== undefined) bounds.push(fc.constant('x'.repeat(schema.maxLength + 1)));
    bounds.push(fc.constantFrom('\u0000', '\ud800', '💥'.repeat(50), 'a'.repeat(10_000)));
  }
  if (type === 'integer' || type === 'number') {
    const { minimum: min, maximum: max } = schema;
    if (min !== undefined) bounds.push(fc.constantFrom(min - 1, min - 0.5, -1e300));
    if (max !== undefined) bounds.push(fc.constantFrom(max + 1, max + 0.5, 1e300, 2 ** 63));
    bounds.push(fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n)));
    bounds.push(fc.constantFrom(`${min ?? 60}`, '1e2', '0x3c'));
  }
  if (type === 'array') {
    if (schema.minItems) bounds.push(fc.constant([]));
    if (schema.maxItems !== undefined) bounds.push(fc.array(valid(schema.items ?? {}), { minLength: schema.maxItems + 1, maxLength: schema.maxItems + 3 }));
    bounds.push(fc.array(invalid(schema.items ?? {}), { minLength: 1, maxLength: 3 }));
  }
  if (type === 'boolean') bounds.push(fc.constantFrom('true', 'false', 1, 0, 'yes', null));
  return bounds.length > 0 ? fc.oneof(otherTypes, ...bounds) : otherTypes;
}

const oddKey = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', ' ', 'name ', 'NAME', '\u0000'), fc.string({ maxLength: 12 }));

/**
 * An object with the schema's keys where each value is right or wrong, some keys missing and some
 * keys added (including __proto__ and friends).
 */
export function wrongObject(schema: JsonSchema): fc.Arbitrary<Record<string, unknown>> {
  const props = Object.entries(schema.properties ?? {});
  return fc
    .record({
      values: fc.tuple(...props.map(([, s]) => fc.oneof({ weight: 1, arbitrary: valid(s) }, { weight: 2, arbitrary: invalid(s) }))),
      present: fc.array(fc.boolean(), { minLength: props.length, maxLength: props.length }),
      extra: fc.array(fc.tuple(oddKey, fc.jsonValue({ maxDepth: 1 })), { maxLength: 2 }),
    })
    .map(({ values, present, extra }) => {
      // Built with defineProperty so that "__proto__" is an own key, as JSON.parse would make it.
      const out: Record<string, unknown> = {};
      props.forEach(([k], i) => {
        if (present[i]) Object.defineProperty(out, k, { value: values[i], enumerable: true, writable: true, configurable: true });
      });
      for (const [k, v] of extra) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      return out;
    });
}

/** A JSON body as text for a schema: valid, wrong, arbitrary, broken, or too large (> 16 KB). */
export function jsonBody(schema: JsonSchema | undefined): fc.Arbitrary<string> {
  const fitting = schema ? valid(schema).map((v) => JSON.stringify(v)) : fc.constant('{}');
  const wrong = schema ? wrongObject(schema).map((v) => JSON.stringify(v)) : fc.jsonValue().map((v) => JSON.stringify(v));
  const broken = fc.oneof(
    fc.constantFrom(
      '', '{', '}', '{"name":', '{"name":"a",}', "{'name':'a'}", '{"name":"a"}{"name":"b"}', 'null', 'true', '0', '"x"', '[]', '[{}]',
      '{"name":"a","name":1}', '\uFEFF{"name":"bom-stream"}', '{"name":"\\ud800"}', '{"name":"a\\u0000b"}', '{"a":1e999999}',
      '{"private":tru}', 'NaN', '{"__proto__":{"private":true},"name":"proto-x"}', '{"constructor":{"prototype":{"x":1}}}',
      `${'['.repeat(3000)}${']'.repeat(3000)}`, `${'{"a":'.repeat(1500)}1${'}'.repeat(1500)}`,
    ),
    fc.string({ unit: 'grapheme', maxLength: 100 }),
    fc.string({ unit: 'binary', maxLength: 100 }),
  );
  const oversized = fc.oneof(
    fc.nat(2000).map((n) => JSON.stringify({ name: 'big', pad: 'x'.repeat(16 * 1024 + n) })),
    fc.constant(JSON.stringify({ label: 'x'.repeat(200_000), scopes: ['read'] })),
  );
  return fc.oneof(
    { weight: 3, arbitrary: fitting },
    { weight: 6, arbitrary: wrong },
    { weight: 3, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 2, arbitrary: broken },
    { weight: 1, arbitrary: oversized },
  );
}
