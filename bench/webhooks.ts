/**
 * Event webhook benchmark (issue 32; reports, does not pass or fail). The product's outbox and
 * dispatcher (db/repositories/webhooks.ts, balancer/WebhookDispatcher.ts) on a fresh Postgres
 * database of DATABASE_URL's server, sending to the tests' receiver process
 * (kit/webhookReceiver.ts: it checks every signature), everything on 127.0.0.1. Three figures:
 *
 *   write     what an event adds to the change it reports: a transaction writing one audit row
 *             (what a change pays today) against one writing an audit row and an event with its
 *             delivery (recordEvent: the subject's lock, the event, one delivery), alternated
 *             over --writes
 *   lag       from the change (the event's created_at, the transaction's start) to its arrival at
 *             the receiver (the receiver's clock: the same machine), events written at --rate a
 *             second for --seconds over 10 streams, one dispatcher
 *   drain     a backlog of --backlog events over 1, 16 and 256 streams, sent by one dispatcher
 *             (and two, as two balancers would, for 256): events a second until the last is
 *             delivered (read from the deliveries' state). One stream's events go one at a time,
 *             in order; streams go side by side.
 *
 *   npm run bench:webhooks [-- --writes 500 --rate 50 --seconds 10 --backlog 5000]
 *   npm run bench:webhooks -- --quick      small sizes (the smoke test in test/bench.test.ts)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import type { Knex } from 'knex';
import { WebhookDispatcher } from '../balancer/WebhookDispatcher.ts';
import { createLogger } from '../core/logger.ts';
import { Metrics } from '../core/metrics.ts';
import { WebhookClient } from '../core/webhookHttp.ts';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import { Database } from '../db/Database.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { createEndpoint, recordEvent } from '../db/repositories/webhooks.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { fmt, percentile, sleep } from '../kit/stats.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../kit/webhookReceiver.ts';
import { defaultOut, integerOption, onInterrupt, parseBenchArgs, runCommand } from './lib/options.ts';
import { renderTable, type Table } from './lib/report.ts';

const USAGE = `npm run bench:webhooks [-- options]

  --writes N    transactions timed for the write cost, each way (default 500; --quick 50)
  --rate N      events a second for the lag (default 50; --quick 20)
  --seconds N   seconds the lag is measured over (default 10; --quick 3)
  --backlog N   events in each drain (default 5000; --quick 300)
  --out FILE    the figures as JSON (default bench/figures/webhooks-<date>.json; --quick: bench/results/)
  --quick       small sizes
`;

interface Options {
  writes: number;
  rate: number;
  seconds: number;
  backlog: number;
  out: string;
}

function parse(argv: string[]): Options | undefined {
  const args = parseBenchArgs(argv, ['writes', 'rate', 'seconds', 'backlog']);
  if (!args) return undefined;
  const { quick, values } = args;
  return {
    writes: integerOption('writes', values.writes, quick ? 50 : 500),
    rate: integerOption('rate', values.rate, quick ? 20 : 50),
    seconds: integerOption('seconds', values.seconds, quick ? 3 : 10),
    backlog: integerOption('backlog', values.backlog, quick ? 300 : 5000),
    out: args.out ?? defaultOut('webhooks', quick),
  };
}

const ms = (xs: number[], p: number) => fmt(percentile(xs, p), 2);

/** The write cost: an audit row alone against an audit row and an event, alternated. */
async function writeCost(knex: Knex, writes: number): Promise<{ baseline: number[]; withEvent: number[] }> {
  const baseline: number[] = [];
  const withEvent: number[] = [];
  for (let i = 0; i < writes * 2; i++) {
    const event = i % 2 === 1;
    const started = performance.now();
    await knex.transaction(async (trx) => {
      await recordAudit(trx, { actor: 'bench', action: 'stream.publish', target: `write-${i % 10}` });
      if (event) await recordEvent(trx, { type: 'stream.published', subject: `stream:write-${i % 10}`, data: { stream: `write-${i % 10}`, protocol: 'rtmp' } });
    });
    (event ? withEvent : baseline).push(performance.now() - started);
  }
  return { baseline, withEvent };
}

/** Lag at a steady rate: write, wait for every arrival, then read the receiver's clock of each. */
async function lag(knex: Knex, receiver: WebhookReceiver, dispatcher: () => WebhookDispatcher, options: Options): Promise<number[]> {
  await receiver.clear();
  const sending = dispatcher();
  sending.start();
  const total = options.rate * options.seconds;
  const started = performance.now();
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / options.rate;
    await sleep(Math.max(0, due - performance.now()));
    await recordEvent(knex, { type: 'stream.viewers', subject: `stream:lag-${i % 10}`, data: { stream: `lag-${i % 10}`, viewers: i } });
  }
  await waitDelivered(knex, 60_000);
  await sending.stop();
  const calls = (await receiver.calls({ path: '/events' })).filter((c) => String(c.body.subject).startsWith('stream:lag-'));
  return calls.map((c) => c.at - Date.parse(c.body.timestamp));
}

/** A backlog over `streams` streams, then the time `dispatchers` take to send it all. */
async function drain(knex: Knex, dispatcher: () => WebhookDispatcher, backlog: number, streams: number, dispatchers: number): Promise<{ seconds: number; perSecond: number }> {
  for (let i = 0; i < backlog; i += 100) {
    const batch = Array.from({ length: Math.min(100, backlog - i) }, (_, j) => ({
      type: 'stream.viewers' as const,
      subject: `stream:drain-${streams}-${(i + j) % streams}`,
      data: { stream: `drain-${streams}-${(i + j) % streams}`, viewers: i + j },
    }));
    await recordEvent(knex, batch);
  }
  const sending = Array.from({ length: dispatchers }, dispatcher);
  const started = performance.now();
  for (const d of sending) d.start();
  await waitDelivered(knex, 600_000);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(sending.map((d) => d.stop()));
  return { seconds, perSecond: backlog / seconds };
}

async function waitDelivered(knex: Knex, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = (await knex('webhook_deliveries').whereNot('state', 'delivered').count({ n: '*' }).first()) as { n: string | number };
    if (Number(row.n) === 0) return;
    if (Date.now() > deadline) throw new Error(`${row.n} deliveries still not made after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function main(options: Options): Promise<number> {
  const testDb = await createTestDatabase();
  const forget = onInterrupt(() => testDb.drop());
  const db = Database.open({ url: testDb.url });
  const secret = newWebhookSecret();
  const receiver = await startWebhookReceiver(secret, { quiet: true });
  const client = new WebhookClient();
  const logger = createLogger('silent');
  const odd: string[] = [];
  const tables: Table[] = [];
  const report: Record<string, unknown> = {};
  try {
    await db.migrate();
    await createEndpoint(db.knex, { url: `${receiver.url}/events`, secret, events: ['*'] });
    let n = 0;
    const dispatcher = () =>
      new WebhookDispatcher({ db: db.knex, nodeId: `bench-${n++}`, client, timeoutMs: 10_000, giveUpMs: 3_600_000, viewerThresholds: [], viewersPeriodS: 0, logger, metrics: new Metrics() });

    const write = await writeCost(db.knex, options.writes);
    report.write = write;
    const ratio = percentile(write.withEvent, 50) / percentile(write.baseline, 50);
    tables.push({
      title: 'What an event adds to the change it reports (Postgres, one transaction each)',
      head: ['transaction', 'p50 ms', 'p99 ms'],
      rows: [
        ['an audit row (today\'s change)', ms(write.baseline, 50), ms(write.baseline, 99)],
        ['an audit row + an event and its delivery', ms(write.withEvent, 50), ms(write.withEvent, 99)],
      ],
      how: [`${options.writes} of each, alternated, on 10 streams; one endpoint takes every event; median ratio ${fmt(ratio, 2)}×`],
    });

    const lags = await lag(db.knex, receiver, dispatcher, options);
    report.lag = { ms: lags };
    if (lags.length !== options.rate * options.seconds) odd.push(`lag: ${lags.length} arrivals for ${options.rate * options.seconds} events`);
    tables.push({
      title: `Event lag from the change to the receiver, ${options.rate} events/s over ${options.seconds} s`,
      head: ['events', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'],
      rows: [[String(lags.length), ms(lags, 50), ms(lags, 95), ms(lags, 99), ms(lags, 100)]],
      how: ['the event\'s created_at (its transaction\'s start, Postgres\'s clock) to its arrival (the receiver process\'s clock, same machine); one dispatcher polling every 100 ms when idle; 10 streams'],
    });

    const drains: Array<{ streams: number; dispatchers: number; seconds: number; perSecond: number }> = [];
    for (const [streams, dispatchers] of [[1, 1], [16, 1], [256, 1], [256, 2]] as const) {
      await receiver.clear();
      const result = await drain(db.knex, dispatcher, options.backlog, streams, dispatchers);
      drains.push({ streams, dispatchers, ...result });
      process.stderr.write(`drain ${streams} stream(s), ${dispatchers} dispatcher(s): ${fmt(result.perSecond, 0)} events/s\n`);
    }
    report.drain = drains;
    tables.push({
      title: `Outbox throughput: a backlog of ${options.backlog} events sent`,
      head: ['streams', 'dispatchers', 'seconds', 'events/s'],
      rows: drains.map((d) => [String(d.streams), String(d.dispatchers), fmt(d.seconds, 2), fmt(d.perSecond, 0)]),
      how: [
        'one stream: one delivery in flight at a time (in order); many: up to 32 at once per dispatcher (one per stream)',
        'two dispatchers: two balancers sharing the outbox through leases, here in one process (one event loop)',
        'each call signed and checked by the receiver, a Postgres round trip to claim and one to mark each delivery',
      ],
    });
  } finally {
    client.close();
    await receiver.stop();
    await db.close();
    await testDb.drop();
    forget();
  }
  for (const table of tables) console.log(`${renderTable(table)}\n`);
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; odd: ${odd.length ? odd.join(' | ') : 'nothing'}`);
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, `${JSON.stringify({ startedAt: new Date().toISOString(), options, ...report, odd, tables }, null, 2)}\n`);
  return 0;
}

await runCommand(parse, USAGE, main);
