import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { TestBrowser, publish, screenshot, stopPublishing } from '../kit/browser.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playerStats, playing, type PageStats } from './helpers/player.ts';

/**
 * The web player and the dashboard in real Chromium, against an origin, an edge and a balancer
 * (three processes on a real Postgres). The player page is the balancer's: it asks the route API
 * for the edge (another origin: CORS) and plays over WHEP from it, and reconnects by itself when
 * the publisher leaves and comes back. Screenshots go to test/artifacts/.
 */

const SECRET = 'player-test-secret-0123456789';
const ADMIN = 'player-test-admin-0123456789';
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

describe('web player and dashboard (Chromium, origin + edge + balancer)', function () {
  this.timeout(180_000);
  let testDb: TestDatabase;
  let db: Database;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let balancer: RelaycastProcess;
  let browser: TestBrowser;
  const pages: Page[] = [];
  const newPage = async (url: string) => {
    const page = await browser.page(url);
    pages.push(page);
    return page;
  };

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const start = (role: string, id: string) => startRelaycast({ roles: [role], databaseUrl: testDb.url, env, args: ['--node-id', id, ...common] });
    [origin, edge, balancer] = await Promise.all([start('origin', 'origin-1'), start('edge', 'edge-1'), start('balancer', 'balancer-1')]);
    await waitFor('the edge in the route API', async () => {
      const res = await fetch(`${balancer.url}/v1/route?stream=any&role=edge`);
      return res.ok && ((await res.json()) as { choices: unknown[] }).choices.length > 0;
    }, 15_000);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    for (const page of pages) await page.close().catch(() => undefined);
    await browser?.close();
    for (const node of [balancer, edge, origin]) await node?.stop();
    await db?.close();
    await testDb?.drop();
  });

  it('serves the pages and the player files, and refuses a bad stream name', async () => {
    const bad = await fetch(`${balancer.url}/play/not%20a%20name`);
    assert.equal(bad.status, 400);
    assert.match(bad.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const page = await fetch(`${balancer.url}/play/show`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const module = await fetch(`${balancer.url}/player/relaycast-player.js`);
    assert.equal(module.status, 200);
    assert.match(module.headers.get('content-type') ?? '', /javascript/);
    assert.match(module.headers.get('cache-control') ?? '', /max-age=300/);
    assert.equal(module.headers.get('access-control-allow-origin'), '*', 'sites may import the module');
    assert.match(await module.text(), /export class RelaycastPlayer/);
    assert.equal((await fetch(`${balancer.url}/dashboard`)).status, 200);
    assert.equal((await fetch(`${balancer.url}/player/README.md`)).status, 404);
  });

  it('turns an embed <div> into an iframe of the player', async () => {
    const page = await newPage(origin.url); // another origin than the balancer's, like a customer site
    await page.setContent(
      `<div id="tv" data-relaycast-stream="show" data-relaycast-server="${balancer.url}" data-relaycast-stats="1"></div>` +
        `<script src="${balancer.url}/player/embed.js"></script>`,
    );
    await waitFor('the embed iframe', async () => (await page.locator('iframe#tv').count()) === 1, 10_000);
    assert.equal(await page.locator('iframe#tv').getAttribute('src'), `${balancer.url}/play/show?embed=1&stats=1`);
    assert.equal(await page.locator('div[data-relaycast-stream]').count(), 0, 'the div was replaced');
  });

  it('plays a WHIP stream, waits while the publisher is gone, and plays again without a reload', async () => {
    const stream = 'player-show';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await newPage(origin.url);
    const viewer = await newPage(balancer.url);

    // Opened before the stream is live: the player waits, then plays once it starts.
    await viewer.goto(`${balancer.url}/play/${stream}`);
    await viewer.evaluate(() => ((window as any).sameDocument = true));
    await waitFor('the player to wait for the stream', async () => (await playerStats(viewer)).state === 'waiting', 15_000);

    const first = await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/H264');
    assert.equal(first.status, 201, first.body);
    const before = await playing(viewer, 'the player to play the stream');
    assert.equal(before.edge, 'edge-1', 'the route API sent the player to the edge');
    assert.equal(before.videoWidth, 640);
    await waitFor('a bitrate and a frame rate in the stats', async () => {
      const s = await playerStats(viewer);
      return s.bitrateKbps > 0 && s.fps > 0;
    }, 10_000);
    await screenshot(viewer, 'player');

    // The publisher leaves: the edge ends its viewers, the page notices and keeps trying.
    const stoppedAt = Date.now();
    assert.equal(await stopPublishing(publisher, token), 200);
    let noticed: PageStats | undefined;
    await waitFor('the player to notice the publisher left', async () => ['waiting', 'reconnecting'].includes((noticed = await playerStats(viewer)).state), 30_000, 100);
    const noticedAt = Date.now();
    await screenshot(viewer, 'player-waiting');

    // The publisher comes back under the same name: the same page plays again.
    const republishedAt = Date.now();
    const second = await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/H264');
    assert.equal(second.status, 201, second.body);
    const after = await playing(viewer, 'the player to play the stream again');
    const playingAgainAt = Date.now();
    assert.ok(after.sessions > before.sessions, `a new WHEP session: ${JSON.stringify(after)}`);
    assert.ok(after.reconnects >= 1, 'counted as a reconnect');
    assert.equal(await viewer.evaluate(() => (window as any).sameDocument), true, 'the page was not reloaded');
    console.log(`      publisher left → player noticed (${noticed?.lastError}): ${noticedAt - stoppedAt} ms; republished → playing again: ${playingAgainAt - republishedAt} ms`);

    await stopPublishing(publisher, token);
  });

  it('asks for a token on a private stream and plays with ?token=', async () => {
    const stream = 'player-private';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await newPage(origin.url);
    assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/VP8')).status, 201);
    await db.knex('streams').where({ name: stream }).update({ private: true });

    const anonymous = await newPage(balancer.url);
    await anonymous.goto(`${balancer.url}/play/${stream}`);
    await waitFor('the player to say a token is needed', async () => (await playerStats(anonymous)).state === 'unauthorized', 15_000);
    assert.match(await anonymous.locator('#status-text').innerText(), /token required/);

    const playToken = await signStreamToken(SECRET, { stream, action: 'play' });
    const viewer = await newPage(balancer.url);
    await viewer.goto(`${balancer.url}/play/${stream}?token=${encodeURIComponent(playToken)}`);
    await playing(viewer, 'the private stream to play with its token');
    await stopPublishing(publisher, token);
  });

  it('shows the nodes and the live stream with its viewers on the dashboard', async () => {
    const stream = 'dashboard-show';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await newPage(origin.url);
    const viewer = await newPage(balancer.url);
    assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/VP8')).status, 201);
    await viewer.goto(`${balancer.url}/play/${stream}`);
    await playing(viewer, 'the dashboard stream to play');

    const refused = await newPage(balancer.url);
    await refused.goto(`${balancer.url}/dashboard#token=not-the-admin-token`);
    await waitFor('"token refused" and the form', async () => (await refused.locator('#login-error').isVisible()) && (await refused.locator('#login').isVisible()), 15_000);
    assert.match((await refused.locator('#login-error').textContent()) ?? '', /refused/i);

    const dashboard = await newPage(balancer.url);
    await dashboard.goto(`${balancer.url}/dashboard#token=${ADMIN}`);
    assert.equal(new URL(dashboard.url()).hash, '', 'the token is taken out of the address bar');
    let text = '';
    try {
      await waitFor('the dashboard to list the nodes and the stream with 1 viewer', async () => {
        text = (await dashboard.locator('body').innerText()).replace(/\s+/g, ' ');
        const nodes = await dashboard.locator('[data-node]').evaluateAll((els) => els.map((e) => e.getAttribute('data-node')));
        const viewers = await dashboard.locator(`tr[data-stream="${stream}"] td.viewers`).textContent({ timeout: 100 }).catch(() => null);
        return ['origin-1', 'edge-1', 'balancer-1'].every((id) => nodes.includes(id)) && viewers === '1';
      }, 30_000, 250);
    } catch (error) {
      await screenshot(dashboard, 'dashboard-failed');
      throw new Error(`${(error as Error).message}; the page shows: ${text.slice(0, 1500)}`, { cause: error });
    }
    // A few polls more, so that the screenshot shows the load sparklines.
    await waitFor('load sparklines', async () => (await dashboard.locator('svg.spark polyline').count()) >= 3, 10_000);
    await screenshot(dashboard, 'dashboard');
    await stopPublishing(publisher, token);
  });
});
