import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { once } from 'node:events';
import { copyFileSync, writeFileSync } from 'node:fs';
import { CertificateWatcher } from '../core/CertificateWatcher.ts';
import { Database } from '../db/Database.ts';
import { play, publish, TestBrowser } from '../kit/browser.ts';
import { createTestDatabase, freePort, type TestDatabase } from '../kit/postgres.ts';
import { spawnTracked, waitFor } from '../kit/processes.ts';
import { runRelaycast, startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { httpsFetch, issueCertificate, makeTestCa, servedSerial, type TestCa } from '../kit/tls.ts';
import { playing, playerStats } from './helpers/player.ts';

/**
 * HTTPS on every node (--tls-cert / --tls-key): certificates from a CA made with openssl at run
 * time, Chromium trusting that CA (--ignore-certificate-errors-spki-list with its key's hash), the
 * nodes trusting it for each other (NODE_EXTRA_CA_CERTS). A Chromium page publishes over WHIP to
 * the origin's https:// URL; the player page, served over HTTPS by the balancer, plays from the
 * edge's https:// URL; the edge's certificate is replaced on disk and served without a restart;
 * plain HTTP sent to an HTTPS port gets a clear error at once.
 */

const SECRET = 'tls-test-cluster-secret';
const ADMIN = 'tls-test-admin-token-0123456789';

describe('HTTPS on every node (--tls-cert, --tls-key)', function () {
  let dir: string;
  let ca: TestCa;
  let testDb: TestDatabase;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let browser: TestBrowser;
  let publisher: Page;
  let viewer: Page;
  let edgeCert: ReturnType<typeof issueCertificate>;
  const stream = 'secure';

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'relaycast-tls-'));
    ca = makeTestCa(dir);
    const originCert = issueCertificate(ca, 'origin');
    edgeCert = issueCertificate(ca, 'edge');
    testDb = await createTestDatabase();
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000'];
    [origin, edge] = await Promise.all([
      startRelaycast({ roles: ['origin', 'balancer'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', ...common], tls: { ...originCert, ca, plainPort: true } }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-1', ...common], tls: { ...edgeCert, ca } }),
    ]);
    browser = await TestBrowser.launch({ args: [`--ignore-certificate-errors-spki-list=${ca.spki}`] });
  });

  after(async () => {
    await browser?.close();
    await Promise.all([origin?.stop(), edge?.stop()]);
    await testDb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers plain HTTP sent to an HTTPS port at once with a 400 naming the https:// URL; --http-plain-port serves plain HTTP', async () => {
    const started = Date.now();
    const res = await fetch(`http://127.0.0.1:${edge.port}/healthz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const body = (await res.json()) as { type: string; detail: string };
    assert.match(body.type, /\/https-required$/);
    assert.match(body.detail, new RegExp(`https://127\\.0\\.0\\.1:${edge.port}/`));
    console.log(`      plain HTTP to the HTTPS port: ${res.status} after ${Date.now() - started} ms`);
    // The image's HEALTHCHECK script finds the node over HTTPS, or on its plain port.
    const healthcheck = async (env: Record<string, string>) => {
      const child = spawnTracked(process.execPath, [fileURLToPath(new URL('../docker/healthcheck.mjs', import.meta.url)), '/readyz'], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const [code] = await once(child, 'exit');
      return { code: code as number, stderr };
    };
    assert.equal((await healthcheck({ RELAYCAST_HTTP_PORT: String(edge.port), RELAYCAST_TLS_CERT: edgeCert.certFile })).code, 0, 'over HTTPS');
    assert.equal((await healthcheck({ RELAYCAST_HTTP_PORT: String(origin.port), RELAYCAST_TLS_CERT: 'x', RELAYCAST_HTTP_PLAIN_PORT: String(origin.plainPort) })).code, 0, 'on the plain port');
    const wrong = await healthcheck({ RELAYCAST_HTTP_PORT: String(edge.port) });
    assert.equal(wrong.code, 1, 'plain HTTP to the HTTPS port is unhealthy');
    assert.match(wrong.stderr, /400 .*https-required/);
    const plain = await fetch(`http://127.0.0.1:${origin.plainPort}/healthz`);
    assert.equal(plain.status, 200, 'the origin\'s plain port');
    // The nodes registered their https:// URLs.
    const db = Database.open({ url: testDb.url });
    try {
      const nodes = (await db.knex('nodes').select('id', 'public_url').orderBy('id')) as Array<{ id: string; public_url: string }>;
      assert.deepEqual(nodes.map((n) => n.public_url), [`https://127.0.0.1:${edge.port}`, `https://127.0.0.1:${origin.port}`]);
    } finally {
      await db.close();
    }
  });

  it('a Chromium page publishes over WHIP to the origin\'s https:// URL; the player page over HTTPS plays from the edge over HTTPS', async () => {
    const created = await httpsFetch(`${origin.url}/api/v1/streams`, ca, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: stream }),
    });
    assert.equal(created.status, 201, created.text);
    const { publishToken, whipUrl, playerUrl } = JSON.parse(created.text) as { publishToken: string; whipUrl: string; playerUrl: string };
    assert.equal(whipUrl, `${origin.url}/whip/${stream}`);
    publisher = await browser.page(origin.url);
    const published = await publish(publisher, whipUrl, publishToken, 'video/VP8');
    assert.equal(published.status, 201, published.body);
    viewer = await browser.page(origin.url);
    await viewer.goto(playerUrl);
    assert.ok(await viewer.evaluate(() => window.isSecureContext), 'the player page is a secure context');
    const stats = await playing(viewer, 'the player over HTTPS', { timeoutMs: 60_000 });
    assert.equal(stats.edge, 'edge-1');
    assert.ok((await playerStats(viewer)).framesDecoded > 10);
    const session = await viewer.evaluate(() => (window as any).relaycastPlayer.stats().session as string);
    assert.ok(session.startsWith(`${edge.url}/whep/${stream}/`), `the WHEP session is on the edge's https:// URL: ${session}`);
    // The balancer's WHEP redirect names the edge's https:// URL too.
    const redirect = await httpsFetch(`${origin.url}/whep/${stream}`, ca, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0' });
    assert.equal(redirect.status, 307);
    assert.equal(redirect.headers.location, `${edge.url}/whep/${stream}`);
  });

  it('serves a certificate replaced on disk to new connections without a restart; the playing viewer keeps playing', async () => {
    const before = await servedSerial(edge.port, ca);
    assert.equal(before, edgeCert.serial);
    const sessionsBefore = (await playerStats(viewer)).sessions;
    const renewed = issueCertificate(ca, 'edge', 'edge renewed');
    assert.notEqual(renewed.serial, before);
    const started = Date.now();
    await waitFor('the edge to serve the new certificate', async () => (await servedSerial(edge.port, ca)) === renewed.serial, 15_000, 100);
    console.log(`      renewed certificate served ${Date.now() - started} ms after the files were replaced`);
    assert.match(edge.output(), /tls certificate reloaded/);
    const after = await playing(viewer, 'the same player after the renewal');
    assert.equal(after.sessions, sessionsBefore, 'no reconnect');
    // A new viewer gets the new certificate, and plays.
    const second = await browser.page(origin.url);
    await second.goto(`${origin.url}/play/${stream}`);
    await playing(second, 'a new player after the renewal', { timeoutMs: 60_000 });
    const metrics = await httpsFetch(`${edge.url}/metrics`, ca);
    assert.match(metrics.text, /relaycast_tls_certificate_reloads_total\{[^}]*result="loaded"[^}]*\} 1/);
    assert.match(metrics.text, /relaycast_tls_certificate_expiry_timestamp_seconds\{[^}]*\} \d{10}/);
  });
});

describe('TLS certificate files (core/CertificateWatcher.ts)', function () {
  let dir: string;
  let ca: TestCa;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'relaycast-tls-'));
    ca = makeTestCa(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses to start with a key that is not the certificate\'s: exit 2 naming the files', async () => {
    const a = issueCertificate(ca, 'a');
    const b = issueCertificate(ca, 'b');
    const child = runRelaycast(['edge', '--tls-cert', a.certFile, '--tls-key', b.keyFile, '--http-port', String(await freePort()), '--workers', '1'], { RELAYCAST_DATA_DIR: join(dir, 'data') });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 2, output);
    assert.match(output, /b\.key is not the key of the certificate in .*a\.pem/);
  });

  it('keeps the last good pair when the files change to a pair that does not match, and takes the next good one', async () => {
    const cert = issueCertificate(ca, 'w');
    const watcher = new CertificateWatcher(cert.certFile, cert.keyFile, { mismatchGraceMs: 300 });
    const rejected: Error[] = [];
    const reloaded: string[] = [];
    watcher.on('rejected', (e) => rejected.push(e));
    watcher.on('reloaded', (pair) => reloaded.push(pair.leaf.serialNumber));
    // A renewal half done: the new certificate, the old key.
    const other = issueCertificate(ca, 'other');
    copyFileSync(other.certFile, cert.certFile);
    watcher.check();
    assert.deepEqual([rejected.length, reloaded.length], [0, 0], 'not rejected at once: the key may be on its way');
    await waitFor('the mismatch to be rejected after the grace', () => (watcher.check(), rejected.length === 1), 5000, 50);
    assert.match(rejected[0]!.message, /is not the key of the certificate/);
    assert.equal(watcher.current.leaf.serialNumber, cert.serial, 'the last good pair is kept');
    // The key arrives: the pair is whole again.
    copyFileSync(other.keyFile, cert.keyFile);
    watcher.check();
    assert.deepEqual(reloaded, [other.serial]);
    writeFileSync(cert.keyFile, 'garbage');
    await waitFor('garbage to be rejected', () => (watcher.check(), rejected.length === 2), 5000, 50);
    assert.match(rejected[1]!.message, /holds no PEM private key/);
    assert.equal(watcher.current.leaf.serialNumber, other.serial);
  });
});

describe('one certificate at the balancer: HAProxy terminates TLS, /n/{node} paths pin nodes (--node-urls balancer)', function () {
  let dir: string;
  let ca: TestCa;
  let testDb: TestDatabase;
  let balancer: RelaycastProcess;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let browser: TestBrowser;
  let front: string;
  let haproxyPort: number;
  const stream = 'fronted';

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'relaycast-tls-'));
    ca = makeTestCa(dir);
    const cert = issueCertificate(ca, 'balancer');
    testDb = await createTestDatabase();
    haproxyPort = await freePort();
    front = `https://127.0.0.1:${haproxyPort}`;
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000'];
    // The origin and the edge speak plain HTTP, as on a private network: only HAProxy faces browsers.
    [balancer, origin, edge] = await Promise.all([
      startRelaycast({
        roles: ['balancer'],
        databaseUrl: testDb.url,
        env,
        tls: { ...cert, ca },
        args: ['--node-id', 'balancer-1', '--haproxy-bin', 'haproxy', '--haproxy-bind', `127.0.0.1:${haproxyPort}`, '--haproxy-geo-map', 'pins', '--node-urls', 'balancer', '--public-url', front, ...common],
      }),
      startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-1', ...common] }),
    ]);
    await waitFor('HAProxy to reach both nodes by their /n/ paths', async () => {
      const [a, b] = await Promise.all(['origin-1', 'edge-1'].map((id) => httpsFetch(`${front}/n/${id}/healthz`, ca).catch(() => undefined)));
      return a?.status === 200 && b?.status === 200;
    }, 30_000, 250);
    browser = await TestBrowser.launch({ args: [`--ignore-certificate-errors-spki-list=${ca.spki}`] });
  });

  after(async () => {
    await browser?.close();
    await Promise.all([balancer?.stop(), origin?.stop(), edge?.stop()]);
    await testDb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('speaks HTTP/2 to browsers; /n/{node} reaches that node (the header says which), an unknown node is a 404 problem', async () => {
    const alpn = await new Promise<string | false | null>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: haproxyPort, ca: ca.pem, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve(socket.alpnProtocol);
        socket.end();
      });
      socket.on('error', reject);
    });
    assert.equal(alpn, 'h2');
    for (const id of ['origin-1', 'edge-1']) {
      const res = await httpsFetch(`${front}/n/${id}/healthz`, ca);
      assert.equal(res.headers['x-relaycast-node'], id);
    }
    const unknown = await httpsFetch(`${front}/n/nobody/healthz`, ca);
    assert.equal(unknown.status, 404);
    assert.match(JSON.parse(unknown.text).type, /node-not-found$/);
  });

  it('the route API and the balancer\'s 307 name /n/{node} URLs; Chromium publishes and plays through them with the balancer\'s certificate only', async () => {
    const created = await httpsFetch(`${front}/api/v1/streams`, ca, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: stream }),
    });
    assert.equal(created.status, 201, created.text);
    const { publishToken } = JSON.parse(created.text) as { publishToken: string };
    const route = JSON.parse((await httpsFetch(`${front}/v1/route?stream=${stream}&role=origin`, ca)).text) as { choices: Array<{ url: string }> };
    assert.equal(route.choices[0]!.url, `${front}/n/origin-1`);
    const publisher = await browser.page(front);
    const published = await publish(publisher, `${route.choices[0]!.url}/whip/${stream}`, publishToken, 'video/VP8');
    assert.equal(published.status, 201, published.body);
    assert.ok(published.location?.startsWith(`/n/origin-1/whip/${stream}/`), `the WHIP session is named under the pinned path: ${published.location}`);
    const viewer = await browser.page(front);
    await viewer.goto(`${front}/play/${stream}`);
    const stats = await playing(viewer, 'the player through HAProxy', { timeoutMs: 60_000 });
    assert.equal(stats.edge, 'edge-1');
    const session = await viewer.evaluate(() => (window as any).relaycastPlayer.stats().session as string);
    assert.ok(session.startsWith(`${front}/n/edge-1/whep/${stream}/`), `the WHEP session goes through HAProxy: ${session}`);
    const redirect = await httpsFetch(`${balancer.url}/whep/${stream}`, ca, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0' });
    assert.equal(redirect.status, 307);
    assert.equal(redirect.headers.location, `${front}/n/edge-1/whep/${stream}`);
    // A WHEP client posting to the balancer's plain /whep/ URL (the admin API's whepUrl) lands on an
    // edge by HAProxy's region routing; its session is named under that edge's /n/ path too.
    const direct = await browser.page(front);
    const answered = await play(direct, `${front}/whep/${stream}`);
    assert.equal(answered.status, 201, answered.body);
    assert.match(answered.location ?? '', new RegExp(`^/n/edge-1/whep/${stream}/[^/]+$`));
  });

  it('serves the balancer\'s renewed certificate at HAProxy without a reload', async () => {
    const reloads = () => httpsFetch(`${balancer.url}/metrics`, ca).then((r) => Number(/relaycast_haproxy_reloads_total(?:\{[^}]*\})? (\d+)/.exec(r.text)?.[1] ?? 0));
    const before = await reloads();
    const renewed = issueCertificate(ca, 'balancer', 'balancer renewed');
    const started = Date.now();
    await waitFor('HAProxy to serve the renewed certificate', async () => (await servedSerial(haproxyPort, ca)) === renewed.serial, 15_000, 100);
    console.log(`      renewed certificate served by HAProxy ${Date.now() - started} ms after the files were replaced`);
    assert.equal(await reloads(), before, 'no HAProxy reload');
  });
});
