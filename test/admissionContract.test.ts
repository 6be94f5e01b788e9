import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Admission } from '../core/Admission.ts';
import { Problem } from '../core/errors.ts';
import { createLogger } from '../core/logger.ts';
import { Metrics } from '../core/metrics.ts';
import { TrustedProxies } from '../core/TrustedProxies.ts';
import { WebhookClient } from '../core/webhookHttp.ts';
import { newWebhookSecret, verifyWebhook } from '../core/webhookSignature.ts';

/**
 * The admission answer contract, corner by corner (core/Admission.ts), against an HTTP endpoint
 * in this process that answers each stream as the case says: what allows, what refuses (with
 * which reason), and what is a failure that --admission-on-failure decides. The end-to-end paths
 * (WHIP, WHEP, HLS, RTMP, a slow and a dead endpoint) are test/admission.test.ts's.
 */

/** Stream name → [status, body] the endpoint answers. */
const ANSWERS: Record<string, [number, string]> = {
  allow: [200, '{"allow":true}'],
  empty: [204, ''],
  refuse: [200, '{"allow":false,"reason":"no ticket"}'],
  forbidden: [403, '{"detail":"banned in this region"}'],
  unauthorized: [401, 'not json'],
  redirect: [302, ''],
  teapot: [418, '{"allow":true}'],
  'not-json': [200, 'yes'],
  'no-allow': [200, '{"ok":true}'],
  'string-allow': [200, '{"allow":"true"}'],
};

async function read(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

describe('admission answer contract (core/Admission.ts)', () => {
  const secret = newWebhookSecret();
  let calls = 0;
  let unsigned = 0;
  const server = createServer((req, res) => {
    void read(req).then((body) => {
      calls++;
      if (!verifyWebhook(secret, req.headers, body)) unsigned++;
      const [status, answer] = ANSWERS[(JSON.parse(body) as { stream: string }).stream] ?? [500, ''];
      res.writeHead(status, answer ? { 'content-type': 'application/json' } : {}).end(answer);
    });
  });
  const client = new WebhookClient();
  let url: string;
  const admission = (onFailure: 'refuse' | 'allow') =>
    new Admission({
      url,
      secret,
      timeoutMs: 2000,
      onFailure,
      cacheMs: 0,
      node: { id: 'contract', region: 'default' },
      client,
      metrics: new Metrics(),
      logger: createLogger('silent'),
      proxies: new TrustedProxies([]),
    });
  /** What admitting a play of `stream` comes to: allowed, or the problem's name and detail. */
  const outcome = async (gate: Admission, stream: string) => {
    try {
      await gate.admit({ action: 'play', protocol: 'whep', stream, clientIp: '127.0.0.1', token: null });
      return 'allowed';
    } catch (error) {
      if (!(error instanceof Problem)) throw error;
      return `${error.status} ${error.problem}: ${error.message}`;
    }
  };

  before(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admit`;
  });
  after(() => {
    client.close();
    server.close();
  });

  it('allows a 2xx with allow: true or an empty body; refuses allow: false and a 401/403, with the reason', async () => {
    const gate = admission('refuse');
    assert.equal(await outcome(gate, 'allow'), 'allowed');
    assert.equal(await outcome(gate, 'empty'), 'allowed');
    assert.equal(await outcome(gate, 'refuse'), '403 admission-refused: no ticket');
    assert.equal(await outcome(gate, 'forbidden'), '403 admission-refused: banned in this region');
    assert.equal(await outcome(gate, 'unauthorized'), '403 admission-refused: refused by the admission endpoint');
  });

  it('takes anything else as a failure: refused with 503 by default, let in with --admission-on-failure allow', async () => {
    // The failure memory (1 s) answers a failure's followers without a call: one gate per case.
    for (const stream of ['redirect', 'teapot', 'not-json', 'no-allow', 'string-allow']) {
      const refused = await outcome(admission('refuse'), stream);
      assert.match(refused, /^503 admission-unavailable: the admission endpoint answered/, `${stream}: ${refused}`);
      assert.equal(await outcome(admission('allow'), stream), 'allowed', stream);
    }
    assert.equal(unsigned, 0, `every one of ${calls} calls was signed`);
  });
});
