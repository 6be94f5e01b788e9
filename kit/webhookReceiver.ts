/**
 * An operator's webhook endpoint, for the tests and benchmarks: a small HTTP server, run as its
 * own process (startWebhookReceiver() below, or `node --import tsx kit/webhookReceiver.ts --secret
 * whsec_… [--port N] [--quiet]`), that records every POST (path, headers, body, whether its
 * Standard Webhooks signature verifies with the secret, checked by the npm standardwebhooks
 * library, not our code) and answers as it is told. Generic: the admission webhook (POST /admit,
 * answered per stream) and event webhooks (POST /events) alike.
 *
 * It speaks JSON lines: on stdout `{"event":"listening","port"}`, then `{"event":"call",…}` per
 * POST (not with --quiet); on stdin one command a line, each answered by `{"event":"done"}` (or
 * `{"event":"calls","calls":[…]}`):
 *
 *   {"cmd":"rule","path":"/admit","stream":"s","status":200,"body":{"allow":false,"reason":"no"},"delayMs":0,"mode":"ok"}
 *       how POSTs to `path` (of stream `s`: the body's `stream` or `data.stream`; none: any) are
 *       answered: `status` and JSON `body` (default 200, empty), after `delayMs`; mode `fail`
 *       answers 500, mode `down` closes the connection unanswered. The latest matching rule wins.
 *   {"cmd":"clear"}                     forgets the rules and the calls
 *   {"cmd":"calls","path":"/admit","stream":"s"}   the calls recorded (either filter optional)
 *   {"cmd":"close"} / {"cmd":"listen"}  closes the port (every connection too) / listens again on it
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';
import { startChild, type Child } from './processes.ts';

export const WEBHOOK_RECEIVER = fileURLToPath(import.meta.url);

/** A POST the receiver got. */
export interface ReceivedCall {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The body parsed as JSON (the text when it is not JSON). */
  body: any;
  /** Whether its signature verifies with the receiver's secret. */
  verified: boolean;
  /** When it arrived (epoch ms). */
  at: number;
}

export interface ReceiverRule {
  path: string;
  stream?: string;
  status?: number;
  body?: unknown;
  delayMs?: number;
  mode?: 'ok' | 'fail' | 'down';
}

/** Calls kept at most (a benchmark makes thousands): the oldest go first. */
const MAX_CALLS = 20_000;

/** The receiver as a child process, with its commands typed. */
export interface WebhookReceiver {
  child: Child;
  port: number;
  url: string;
  rule(rule: ReceiverRule): Promise<void>;
  clear(): Promise<void>;
  calls(filter?: { path?: string; stream?: string }): Promise<ReceivedCall[]>;
  close(): Promise<void>;
  listen(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a receiver process checking signatures with `secret`; resolves once it listens. */
export async function startWebhookReceiver(secret: string, options: { quiet?: boolean } = {}): Promise<WebhookReceiver> {
  const child = startChild(WEBHOOK_RECEIVER, ['--secret', secret, ...(options.quiet ? ['--quiet'] : [])]);
  const port = Number((await child.next('listening', 30_000)).port);
  const command = async (cmd: Record<string, unknown>) => void (await child.ask(JSON.stringify(cmd), 'done', 10_000));
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    rule: (rule) => command({ cmd: 'rule', ...rule }),
    clear: () => command({ cmd: 'clear' }),
    calls: async (filter = {}) => (await child.ask(JSON.stringify({ cmd: 'calls', ...filter }), 'calls', 10_000)).calls as ReceivedCall[],
    close: () => command({ cmd: 'close' }),
    listen: () => command({ cmd: 'listen' }),
    stop: () => child.stop(),
  };
}

// ---- the receiver process ---------------------------------------------------------------------

const streamOf = (body: any): string | undefined => (typeof body?.stream === 'string' ? body.stream : typeof body?.data?.stream === 'string' ? body.data.stream : undefined);

async function serve(): Promise<void> {
  const { values } = parseArgs({ options: { secret: { type: 'string' }, port: { type: 'string', default: '0' }, quiet: { type: 'boolean', default: false } } });
  const secret = values.secret;
  if (!secret) throw new Error('--secret whsec_… is required');
  const print = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);
  // Checked with the Standard Webhooks reference library (npm standardwebhooks), not our own code:
  // what an operator's receiver would run.
  const webhook = new Webhook(secret);
  const verifies = (text: string, headers: IncomingMessage['headers']): boolean => {
    try {
      webhook.verify(text, Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, String(v)])));
      return true;
    } catch {
      return false;
    }
  };
  let rules: ReceiverRule[] = [];
  let calls: ReceivedCall[] = [];

  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // recorded as text
    }
    const path = (req.url ?? '/').split('?')[0]!;
    const call: ReceivedCall = { path, headers: req.headers, body, verified: req.method === 'POST' && verifies(text, req.headers), at: Date.now() };
    calls.push(call);
    if (calls.length > MAX_CALLS) calls = calls.slice(-MAX_CALLS / 2);
    if (!values.quiet) print({ event: 'call', ...call });
    const stream = streamOf(body);
    const rule = [...rules].reverse().find((r) => r.path === path && (r.stream === undefined || r.stream === stream));
    if (rule?.delayMs) await new Promise((resolve) => setTimeout(resolve, rule.delayMs));
    if (rule?.mode === 'down') return void req.socket.destroy();
    if (rule?.mode === 'fail') return void res.writeHead(500, { 'content-type': 'text/plain' }).end('failing as told');
    const out = rule?.body === undefined ? '' : JSON.stringify(rule.body);
    res.writeHead(rule?.status ?? 200, out ? { 'content-type': 'application/json' } : {}).end(out);
  };

  const server = createServer((req, res) => void answer(req, res).catch(() => req.socket.destroy()));
  server.listen(Number(values.port), '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  print({ event: 'listening', port });

  createInterface({ input: process.stdin }).on('line', (line) => {
    let cmd: ReceiverRule & { cmd?: string };
    try {
      cmd = JSON.parse(line);
    } catch {
      return print({ event: 'error', message: `not JSON: ${line}` });
    }
    if (cmd.cmd === 'rule') {
      const { cmd: _, ...rule } = cmd;
      rules.push(rule);
    } else if (cmd.cmd === 'clear') {
      rules = [];
      calls = [];
    } else if (cmd.cmd === 'calls') {
      return print({ event: 'calls', calls: calls.filter((c) => (cmd.path === undefined || c.path === cmd.path) && (cmd.stream === undefined || streamOf(c.body) === cmd.stream)) });
    } else if (cmd.cmd === 'close') {
      server.close();
      server.closeAllConnections();
    } else if (cmd.cmd === 'listen') {
      server.listen(port, '127.0.0.1');
      return void once(server, 'listening').then(() => print({ event: 'done' }));
    } else {
      return print({ event: 'error', message: `unknown command: ${line}` });
    }
    print({ event: 'done' });
  });
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] === WEBHOOK_RECEIVER) {
  serve().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  });
}
