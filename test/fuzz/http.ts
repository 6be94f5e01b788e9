import { appendFileSync } from 'node:fs';
import http from 'node:http';
import fc from 'fast-check';

/**
 * The HTTP side of the fuzz tests: raw requests (node:http, so that the test decides every header
 * and byte — fetch would add a content type, normalise the path and refuse some bodies), the one
 * check every refusal must pass (a 4xx application/problem+json with type, title, status and
 * detail), a tally of what each endpoint answered, and fast-check runs with a fixed seed.
 */

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RequestSpec {
  method: string;
  /** The path as sent, verbatim (no URL parsing: `..`, `%zz` and `#` reach the server as they are). */
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** A request that gets no answer within this is a hang, and fails the property. */
const ANSWER_TIMEOUT_MS = 15_000;

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

/** Sends one request to `base` (http://host:port) and reads the whole answer. */
export function send(base: string, spec: RequestSpec): Promise<Answer> {
  const { hostname, port } = new URL(base);
  const body = spec.body === undefined ? undefined : typeof spec.body === 'string' ? Buffer.from(spec.body, 'utf8') : Buffer.from(spec.body);
  const headers: Record<string, string> = { ...spec.headers };
  if (body) headers['content-length'] = String(body.length);
  return new Promise<Answer>((resolve, reject) => {
    const req = http.request({ host: hostname, port: Number(port), method: spec.method, path: spec.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        if (process.env.FUZZ_DEBUG) {
          appendFileSync(process.env.FUZZ_DEBUG, `${JSON.stringify({ ...spec, body: body?.toString('base64'), status: res.statusCode, type: res.headers['content-type'] })}\n`);
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms to ${spec.method} ${spec.path} (a hang)`));
    }, ANSWER_TIMEOUT_MS);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${spec.method} ${spec.path}: ${error.message} (the connection failed instead of an answer)`));
    });
    // An oversized body may be refused (413) before it is all read; the server may then close the
    // connection while this side still writes. The answer is what counts, so write errors are
    // left to the response (or the 'error' above when there is none).
    if (body) req.write(body, () => undefined);
    req.end();
  });
}

const show = (a: Answer) => `${a.status} ${a.headers['content-type'] ?? '(no content type)'} ${a.body.slice(0, 300)}`;

/** Throws unless `a` is a 4xx application/problem+json with type, title, status (= the HTTP status) and detail. */
export function assertProblem(a: Answer, what: string): void {
  if (a.status < 400 || a.status > 499) throw new Error(`${what}: expected a 4xx problem, got ${show(a)}`);
  if (!/^application\/problem\+json(\s*;|$)/.test(a.headers['content-type'] ?? '')) throw new Error(`${what}: not application/problem+json: ${show(a)}`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(a.body) as Record<string, unknown>;
  } catch {
    throw new Error(`${what}: the problem body is not JSON: ${show(a)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${what}: the problem body is not an object: ${show(a)}`);
  for (const key of ['type', 'title', 'detail'] as const) {
    if (typeof json[key] !== 'string' || (json[key] as string).length === 0) throw new Error(`${what}: the problem has no ${key}: ${show(a)}`);
  }
  if (json.status !== a.status) throw new Error(`${what}: the problem's status ${String(json.status)} is not the HTTP status: ${show(a)}`);
}

/** Throws unless the status is `status` (the answer a valid input must get). */
export function assertStatus(a: Answer, status: number, what: string): void {
  if (a.status !== status) throw new Error(`${what}: expected ${status}, got ${show(a)}`);
}

/** What one endpoint answered over a property run: statuses, and the 2xx it had to clean up. */
export class Tally {
  readonly name: string;
  readonly statuses = new Map<number, number>();
  requests = 0;
  /** Valid inputs among the generated ones: the resource they made was removed again. */
  created = 0;
  started = Date.now();
  /** Set when the tally is first printed, right after its property ran. */
  ended: number | undefined;

  constructor(name: string) {
    this.name = name;
  }

  count(a: Answer): void {
    this.requests++;
    this.statuses.set(a.status, (this.statuses.get(a.status) ?? 0) + 1);
  }

  toString(): string {
    const statuses = [...this.statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ');
    this.ended ??= Date.now();
    const seconds = ((this.ended - this.started) / 1000).toFixed(1);
    return `${this.name}: ${this.requests} requests in ${seconds} s [${statuses}]${this.created ? `, ${this.created} valid (cleaned up)` : ''}`;
  }
}

export const tallies: Tally[] = [];

export function tally(name: string): Tally {
  const t = new Tally(name);
  tallies.push(t);
  return t;
}

/**
 * The seed of every property: fixed, so CI runs the same cases each time and a failure can be
 * replayed; FUZZ_SEED overrides it (and FUZZ_PATH replays one counterexample's shrink path).
 */
export const BASE_SEED = Number(process.env.FUZZ_SEED ?? 20_250_609);
/** FUZZ_SCALE multiplies every run count (0.1 for a smoke run, 10 for a long one). */
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);

export const runs = (n: number) => Math.max(1, Math.round(n * SCALE));

/** A property's own seed: the base seed plus a hash of its name, so properties do not share cases. */
export function seedOf(name: string): number {
  let h = 0;
  for (const ch of name) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  return (BASE_SEED + h) | 0;
}

export const seeds: Array<{ name: string; seed: number; numRuns: number }> = [];

/**
 * Runs an async property with a fixed seed. A failure is reported with the seed and the shrink
 * path, and how to replay it; shrinking stops after a minute so that a hang cannot stall CI.
 */
export async function check<T>(name: string, arbitrary: fc.Arbitrary<T>, predicate: (value: T) => Promise<void>, numRuns: number): Promise<void> {
  const seed = seedOf(name);
  seeds.push({ name, seed, numRuns });
  try {
    await fc.assert(fc.asyncProperty(arbitrary, predicate), {
      seed,
      numRuns,
      ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}),
      interruptAfterTimeLimit: 180_000,
      markInterruptAsFailure: true,
      includeErrorInReport: true,
    });
  } catch (error) {
    const message = (error as Error).message;
    (error as Error).message = `property "${name}" (seed ${seed}; replay: FUZZ_SEED=${BASE_SEED} and FUZZ_PATH from the report below)\n${message}`;
    throw error;
  }
}
