import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebhookCallError, WebhookClient } from '../core/webhookHttp.ts';
import { newWebhookSecret, signWebhook, verifyWebhook } from '../core/webhookSignature.ts';
import { issueCertificate, makeTestCa } from '../kit/tls.ts';

/**
 * The client every call to an operator's endpoint goes through: an https:// endpoint signed by a
 * private CA is reached with --webhook-ca-file and refused without it; an endpoint that does not
 * answer is given up at the deadline; what arrives verifies as Standard Webhooks says.
 */

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return String((server.address() as AddressInfo).port);
}

async function read(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

describe('webhook client (core/webhookHttp.ts) and signatures', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-webhook-tls-'));
  const ca = makeTestCa(dir);
  const certificate = issueCertificate(ca, 'receiver');
  const secret = newWebhookSecret();
  const verified: boolean[] = [];
  const https = createHttpsServer({ cert: readFileSync(certificate.certFile), key: readFileSync(certificate.keyFile) }, (req, res) => {
    void read(req).then((body) => {
      verified.push(verifyWebhook(secret, req.headers, body));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  // Reads the request and never answers.
  const silent = createHttpServer((req) => void read(req));
  let httpsPort: string;
  let silentPort: string;
  before(async () => {
    [httpsPort, silentPort] = await Promise.all([listen(https), listen(silent)]);
  });
  after(() => {
    https.closeAllConnections();
    silent.closeAllConnections();
    https.close();
    silent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches an https:// endpoint of a private CA with --webhook-ca-file, signed; refuses it without', async () => {
    const trusting = new WebhookClient({ caFile: ca.certFile });
    const plain = new WebhookClient();
    try {
      const body = JSON.stringify({ id: 'evt_1', type: 'stream.published' });
      const answer = await trusting.post(`https://127.0.0.1:${httpsPort}/events`, { id: 'evt_1', secret, body, timeoutMs: 5000 });
      assert.deepEqual(answer, { status: 200, body: '{"ok":true}' });
      assert.deepEqual(verified, [true], 'the receiver verified the signature');
      const refused = await plain.post(`https://127.0.0.1:${httpsPort}/events`, { id: 'evt_2', secret, body, timeoutMs: 5000 }).catch((error: unknown) => error);
      assert.ok(refused instanceof WebhookCallError && !refused.timedOut, String(refused));
      assert.match(refused.message, /certificate/i);
      assert.equal(verified.length, 1, 'nothing reached the receiver without a trusted certificate');
    } finally {
      trusting.close();
      plain.close();
    }
  });

  it('gives up on an endpoint that does not answer at its deadline', async () => {
    const client = new WebhookClient();
    try {
      const started = performance.now();
      const error = await client.post(`http://127.0.0.1:${silentPort}/events`, { id: 'evt_3', secret, body: '{}', timeoutMs: 300 }).catch((e: unknown) => e);
      assert.ok(error instanceof WebhookCallError && error.timedOut, String(error));
      console.log(`      gave up after ${Math.round(performance.now() - started)} ms (deadline 300 ms)`);
    } finally {
      client.close();
    }
  });

  it('verifies a signature only with the right secret, body and a recent timestamp', () => {
    const body = '{"a":1}';
    const headers = signWebhook(secret, 'evt_4', body);
    assert.equal(verifyWebhook(secret, headers, body), true);
    assert.equal(verifyWebhook(newWebhookSecret(), headers, body), false, 'another secret');
    assert.equal(verifyWebhook(secret, headers, '{"a":2}'), false, 'another body');
    assert.equal(verifyWebhook(secret, { ...headers, 'webhook-id': 'evt_5' }, body), false, 'another id');
    assert.equal(verifyWebhook(secret, signWebhook(secret, 'evt_4', body, Date.now() - 600_000), body), false, 'ten minutes old');
    assert.equal(verifyWebhook(secret, { ...headers, 'webhook-signature': `v1,bogus ${headers['webhook-signature']}` }, body), true, 'one of several signatures (a rotation) is enough');
  });
});
