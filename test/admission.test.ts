import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { FAILURE_MEMORY_MS } from '../core/Admission.ts';
import { signStreamToken } from '../core/tokens.ts';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { adminClient, publishTestRtmp } from '../kit/testPublish.ts';
import { startWebhookReceiver, type ReceivedCall, type WebhookReceiver } from '../kit/webhookReceiver.ts';

/**
 * Admission webhooks end to end: a real receiver process (kit/webhookReceiver.ts, which checks
 * every call's signature) answers as told per stream; two `relaycast all` nodes ask it before each
 * publish and play, one refusing and one allowing when it fails. What a user sees is asserted
 * (statuses, problem bodies, ffmpeg refused, a stream live or not) with what the receiver got.
 * Timings are printed, never asserted beyond "within the timeout and a generous margin".
 */

const CLUSTER_SECRET = 'admission-test-secret-0123456789';
const ADMIN = 'admission-test-admin-token-0123456789';
const WEBHOOK_SECRET = newWebhookSecret();
const WHIP_OFFER = readFileSync(new URL('./fixtures/sdp/chromium-whip-offer.sdp', import.meta.url), 'utf8');
const WHEP_OFFER = readFileSync(new URL('./fixtures/sdp/chrome-whep-offer.sdp', import.meta.url), 'utf8');
/** Short, so the slow endpoint's test is quick; the margin its answer must come within is generous. */
const TIMEOUT_MS = 500;
const MARGIN_MS = 5000;
const USER_AGENT = 'admission-test/1.0';

async function problem(res: Response, status: number, name: string): Promise<{ type: string; detail: string }> {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  const body = JSON.parse(text) as { type: string; detail: string };
  assert.equal(body.type, `https://relaycast.dev/problems/${name}`);
  return body;
}

describe('admission webhooks', function () {
  this.timeout(90_000);
  let receiver: WebhookReceiver;
  /** Refuses when the endpoint fails; believes X-Forwarded-For from 127.0.0.1 (to be many clients). */
  let strict: RelaycastProcess;
  /** Allows when the endpoint fails. */
  let lenient: RelaycastProcess;

  const whip = async (node: RelaycastProcess, stream: string) =>
    fetch(`${node.url}/whip/${stream}`, {
      method: 'POST',
      body: WHIP_OFFER,
      headers: { 'content-type': 'application/sdp', 'user-agent': USER_AGENT, authorization: `Bearer ${await signStreamToken(CLUSTER_SECRET, { stream, action: 'publish' })}` },
    });
  const whep = (stream: string, client?: string) =>
    fetch(`${strict.url}/whep/${stream}`, {
      method: 'POST',
      body: WHEP_OFFER,
      headers: { 'content-type': 'application/sdp', 'user-agent': USER_AGENT, ...(client ? { 'x-forwarded-for': client } : {}) },
    });
  const admissions = (stream: string, action?: string): Promise<ReceivedCall[]> =>
    receiver.calls({ path: '/admit', stream }).then((calls) => calls.filter((c) => action === undefined || c.body.action === action));
  const refuse = (stream: string, reason: string) => receiver.rule({ path: '/admit', stream, body: { allow: false, reason } });

  before(async () => {
    receiver = await startWebhookReceiver(WEBHOOK_SECRET);
    const node = (onFailure: string, extra: string[] = []) =>
      startRelaycast({
        roles: ['all'],
        env: { RELAYCAST_CLUSTER_SECRET: CLUSTER_SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN, RELAYCAST_ADMISSION_SECRET: WEBHOOK_SECRET },
        args: ['--rtc-listen-ip', '127.0.0.1', '--admission-url', `${receiver.url}/admit`, '--admission-timeout-ms', String(TIMEOUT_MS), '--admission-on-failure', onFailure, ...extra],
      });
    [strict, lenient] = await Promise.all([node('refuse', ['--trusted-proxies', '127.0.0.1']), node('allow')]);
  });
  after(async () => {
    await Promise.all([strict?.stop(), lenient?.stop(), receiver?.stop()]);
  });

  it('refuses a WHIP publish the endpoint refuses (403 admission-refused with its reason), and lets an allowed one in with what it needs to decide', async () => {
    await refuse('whip-refused', 'this account is suspended');
    const refused = await problem(await whip(strict, 'whip-refused'), 403, 'admission-refused');
    assert.equal(refused.detail, 'this account is suspended');

    const allowed = await whip(strict, 'live');
    assert.equal(allowed.status, 201, await allowed.text());
    const [call, ...more] = await admissions('live');
    assert.equal(more.length, 0);
    assert.equal(call!.verified, true, 'signed with the admission secret');
    assert.ok(call!.headers['webhook-id'] === call!.body.id);
    assert.equal(call!.body.action, 'publish');
    assert.equal(call!.body.protocol, 'whip');
    assert.equal(call!.body.stream, 'live');
    assert.deepEqual(call!.body.client, { ip: '127.0.0.1', userAgent: USER_AGENT });
    assert.equal(call!.body.token.sub, 'live');
    assert.equal(call!.body.token.act, 'publish');
    assert.ok(call!.body.token.exp > call!.body.token.iat);
    assert.equal(typeof call!.body.node.id, 'string');
    assert.equal(call!.body.node.region, 'default');
  });

  it('refuses and allows WHEP plays (a public stream: no token), and refuses an HLS playlist', async () => {
    await refuse('play-refused', 'subscribers only');
    assert.equal((await problem(await whep('play-refused'), 403, 'admission-refused')).detail, 'subscribers only');

    const allowed = await whep('live');
    assert.equal(allowed.status, 201, await allowed.text());
    const play = await admissions('live', 'play');
    assert.equal(play.length, 1);
    assert.equal(play[0]!.body.protocol, 'whep');
    assert.equal(play[0]!.body.token, null);

    await refuse('hls-refused', 'geo-blocked');
    const hls = await fetch(`${strict.url}/hls/hls-refused/index.m3u8`);
    assert.equal((await problem(hls, 403, 'admission-refused')).detail, 'geo-blocked');
    assert.equal((await admissions('hls-refused'))[0]!.body.protocol, 'hls');
  });

  it('asks once for two joins of one client within the TTL, and once for every client with scope: stream', async () => {
    for (let i = 0; i < 2; i++) assert.equal((await whep('live', '198.51.100.7')).status, 201);
    assert.equal((await admissions('live', 'play')).filter((c) => c.body.client.ip === '198.51.100.7').length, 1);

    assert.equal((await whip(strict, 'storm')).status, 201);
    await receiver.rule({ path: '/admit', stream: 'storm', body: { allow: true, ttl: 60, scope: 'stream' } });
    for (const client of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) assert.equal((await whep('storm', client)).status, 201);
    assert.equal((await admissions('storm', 'play')).length, 1, 'one call for three viewers');
  });

  it('refuses an RTMP publish to a refused stream (ffmpeg is cut off, the stream never goes live) and lets an allowed one go live', async () => {
    const api = adminClient(strict.url, ADMIN);
    const keyOf = async (name: string) => {
      const created = await api('POST', '/streams', { name });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return `rtmp://127.0.0.1:${strict.rtmpPort}/live/${created.body.streamKey as string}`;
    };
    await refuse('rtmp-refused', 'no publishing tonight');
    const refused = publishTestRtmp(await keyOf('rtmp-refused'), { seconds: 30, bframes: false });
    const timer = setTimeout(() => refused.kill('SIGKILL'), 25_000);
    const [code] = (await once(refused, 'exit')) as [number | null];
    clearTimeout(timer);
    assert.notEqual(code, 0, 'ffmpeg\'s publish was refused');
    assert.equal((await api('GET', '/streams/rtmp-refused')).body.state, 'idle');
    const [call] = await admissions('rtmp-refused');
    assert.equal(call!.body.protocol, 'rtmp');
    assert.equal(call!.body.client.ip, '127.0.0.1');
    assert.match(call!.body.client.userAgent, /FMLE|Lavf/, 'the encoder\'s flashVer');

    const allowed = publishTestRtmp(await keyOf('rtmp-live'), { seconds: 30, bframes: false });
    try {
      await waitFor('the allowed RTMP stream live', async () => (await api('GET', '/streams/rtmp-live')).body.state === 'live', 25_000);
    } finally {
      allowed.kill('SIGKILL');
    }
  });

  it('counts decisions in /metrics', async () => {
    const lines = (await (await fetch(`${strict.url}/metrics`)).text()).split('\n');
    const counted = (metric: string, labels: string[]) =>
      lines.some((line) => line.startsWith(`${metric}{`) && labels.every((l) => line.includes(l)) && Number(line.split(' ').pop()) > 0);
    assert.ok(counted('relaycast_admission_decisions_total', ['action="play"', 'outcome="allowed"', 'source="cache"']));
    assert.ok(counted('relaycast_admission_decisions_total', ['action="publish"', 'outcome="refused"', 'source="endpoint"']));
    assert.ok(counted('relaycast_admission_seconds_count', ['action="publish"', 'outcome="allowed"']));
  });

  it('answers as configured when the endpoint is slow, then when it is down: 503 admission-unavailable, or allowed', async () => {
    await receiver.rule({ path: '/admit', delayMs: TIMEOUT_MS * 4 });
    for (const [what, close, detail] of [['slow', false, /\(timeout\)/], ['down', true, /is down/]] as const) {
      // Each case its own failure, not the last one remembered.
      await new Promise((resolve) => setTimeout(resolve, FAILURE_MEMORY_MS + 100));
      if (close) await receiver.close();
      try {
        let started = performance.now();
        const answer = await whip(strict, `${what}-strict`);
        const refusedMs = performance.now() - started;
        const refused = await problem(answer, 503, 'admission-unavailable');
        assert.match(answer.headers.get('retry-after') ?? '', /^\d+$/);
        assert.match(refused.detail, detail);
        started = performance.now();
        const allowed = await whip(lenient, `${what}-lenient`);
        const allowedMs = performance.now() - started;
        assert.equal(allowed.status, 201, await allowed.text());
        console.log(`      ${what} endpoint (timeout ${TIMEOUT_MS} ms): refused in ${Math.round(refusedMs)} ms, allowed in ${Math.round(allowedMs)} ms`);
        assert.ok(refusedMs < TIMEOUT_MS + MARGIN_MS && allowedMs < TIMEOUT_MS + MARGIN_MS, 'an answer within the timeout and a margin');
      } finally {
        if (close) await receiver.listen();
      }
    }
  });
});
