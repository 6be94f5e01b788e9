import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { TestBrowser, publish, screenshot, stopPublishing } from '../kit/browser.ts';
import { createNetns, netnsUnavailable, type NetNs } from '../kit/netns.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playerStats, playing, playingOverHls, type PageStats } from './helpers/player.ts';

/**
 * The web player and the dashboard in real Chromium, against an origin, an edge and a balancer
 * (three processes on a real Postgres). The player page is the balancer's: it asks the route API
 * for the edge (another origin: CORS) and plays over WHEP from it, and reconnects by itself when
 * the publisher leaves and comes back; when the edge's media ports are blocked, it says why and
 * plays again on Retry. Screenshots go to test/artifacts/.
 */

const SECRET = 'player-test-secret-0123456789';
const ADMIN = 'player-test-admin-0123456789';
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000'];

/**
 * The edge's media ports, which the failure test blocks: this file's own. Above the 20000–29999
 * every other test node's media uses (kit/relaycast.ts) and below Linux's ephemeral range
 * (32768–60999, where freePort() finds the HTTP ports), so no other process has a port in them; a
 * 50-port slot picked by the pid, so that two runs of this file at once (two worktrees) most
 * likely block different ones.
 */
const EDGE_MEDIA_MIN_PORT = 30_000 + (process.pid % 54) * 50;
const EDGE_MEDIA_MAX_PORT = EDGE_MEDIA_MIN_PORT + 49;

/** The nftables table that blocks them; one per run. */
const BLOCK_TABLE = `relaycast_player_${process.pid}`;

/** Why the edge's ports cannot be blocked here (needs root and nft), or undefined when they can. */
function blockUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'blocking ports with nftables needs root (run the suite as root, as CI does)';
  const nft = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8', timeout: 10_000 });
  if (nft.error || nft.status !== 0) return `\`nft\` is unavailable (${nft.error?.message ?? nft.stderr.trim()}; install nftables)`;
  return undefined;
}

const unblockEdgeMedia = () => void spawnSync('nft', ['delete', 'table', 'inet', BLOCK_TABLE], { stdio: 'ignore', timeout: 10_000 });

/**
 * Drops everything, UDP and TCP, that arrives on loopback for the edge's media ports: a firewall
 * in the way. Dropped on arrival (input hook), after the sender's sendto() succeeded: the browser
 * sees silence, as behind a real firewall, not the EPERM an output-hook drop would give it.
 * Signalling (the edge's HTTP port) is not touched. unblockEdgeMedia() removes it; so does the
 * runner's exit, if the test never got to.
 */
function blockEdgeMedia(): void {
  unblockEdgeMedia();
  const ruleset =
    `table inet ${BLOCK_TABLE} {\n  chain input {\n    type filter hook input priority filter; policy accept;\n` +
    `    iifname "lo" meta l4proto { tcp, udp } th dport ${EDGE_MEDIA_MIN_PORT}-${EDGE_MEDIA_MAX_PORT} counter drop\n  }\n}\n`;
  execFileSync('nft', ['-f', '-'], { input: ruleset, timeout: 10_000, stdio: ['pipe', 'pipe', 'pipe'] });
  process.once('exit', unblockEdgeMedia);
}

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
    const start = (role: string, id: string, args: string[] = []) => startRelaycast({ roles: [role], databaseUrl: testDb.url, env, args: ['--node-id', id, ...common, ...args] });
    const edgePorts = ['--rtc-min-port', String(EDGE_MEDIA_MIN_PORT), '--rtc-max-port', String(EDGE_MEDIA_MAX_PORT)];
    [origin, edge, balancer] = await Promise.all([start('origin', 'origin-1'), start('edge', 'edge-1', edgePorts), start('balancer', 'balancer-1')]);
    await waitFor('the edge in the route API', async () => {
      const res = await fetch(`${balancer.url}/v1/route?stream=any&role=edge`);
      return res.ok && ((await res.json()) as { choices: unknown[] }).choices.length > 0;
    }, 15_000);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    unblockEdgeMedia();
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
    // hls.js, which the player imports when it plays HLS: a module from the same place.
    const hlsJs = await fetch(`${balancer.url}/player/vendor/hls.mjs`);
    assert.equal(hlsJs.status, 200);
    assert.match(hlsJs.headers.get('content-type') ?? '', /javascript/);
    assert.match(hlsJs.headers.get('cache-control') ?? '', /max-age=300/);
    assert.equal(hlsJs.headers.get('access-control-allow-origin'), '*');
    assert.match(await hlsJs.text(), /export \{[^}]*\bHls as default\b/);
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

  it('falls back to HLS by itself when media cannot connect (the edge\'s ports blocked); ?mode=webrtc says why instead, and plays again on Retry', async function () {
    const unavailable = blockUnavailable();
    if (unavailable) {
      console.log(`      SKIPPED: ${unavailable}`);
      this.skip();
    }
    const stream = 'player-blocked';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await newPage(origin.url);
    // H.264, which the origin packages for HLS as it comes: its packager for a VP8 WHIP publish
    // (which encodes) got no media within its 15 s on this branch ("no media from the stream in time").
    assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/H264')).status, 201);
    blockEdgeMedia();
    try {
      // The default page, the page with ?mode=webrtc, and the latter as the embed's iframe shows it;
      // all three at once, since WebRTC's failure takes the same half minute for each.
      const viewer = await newPage(balancer.url);
      const webrtcOnly = await newPage(balancer.url);
      const embedded = await newPage(balancer.url);
      let posts = 0; // the ?mode=webrtc page's WHEP POSTs, as the browser sent them
      webrtcOnly.on('request', (request) => {
        if (request.method() === 'POST' && new URL(request.url()).pathname === `/whep/${stream}`) posts++;
      });
      const openedAt = Date.now();
      await viewer.goto(`${balancer.url}/play/${stream}`);
      await webrtcOnly.goto(`${balancer.url}/play/${stream}?mode=webrtc`);
      await embedded.goto(`${balancer.url}/play/${stream}?mode=webrtc&embed=1`);
      await viewer.evaluate(() => {
        const player = (window as any).relaycastPlayer;
        (window as any).modes = [player.mode];
        player.addEventListener('statechange', () => (window as any).modes.push(player.mode));
      });

      // Default mode: WebRTC's first session gets no media, then the page plays HLS by itself. A
      // bound, not a figure: one session of at most 10 s without media (CONNECT_TIMEOUT_MS), then
      // HLS's start.
      const hls = await playingOverHls(viewer, 'the default page to fall back to HLS and play', 120_000);
      const fellBackAfterMs = Date.now() - openedAt;
      const modes = await viewer.evaluate(() => (window as any).modes as (string | null)[]);
      assert.deepEqual([...new Set(modes)], ['webrtc', 'hls'], 'WebRTC first, then HLS, each announced by a statechange');
      const kept = await viewer.evaluate(() => (window as any).relaycastPlayer.failure);
      assert.equal(kept?.kind, 'ice', `why WebRTC did not play is kept: ${JSON.stringify(kept)}`);
      assert.equal(hls.edge, 'edge-1', 'HLS from the edge the route API named');
      await screenshot(viewer, 'player-hls-fallback');
      console.log(`      default page: opened → playing over HLS: ${fellBackAfterMs} ms; ${hls.width}×${hls.height}, ${hls.fps} fps, latency ${hls.latencyMs} ms (hls.js)`);

      // ?mode=webrtc: never HLS; 'failed', with the reason.
      let last: PageStats | undefined;
      for (const [page, what] of [[webrtcOnly, 'the ?mode=webrtc page'], [embedded, 'the embedded ?mode=webrtc page']] as const) {
        await waitFor(`${what} in state failed`, async () => (last = await playerStats(page)).state === 'failed', 90_000, 250).catch((error) => {
          throw new Error(`${(error as Error).message}; last player stats: ${JSON.stringify(last)}`, { cause: error });
        });
        assert.equal(last?.mode, 'webrtc', `${what} did not play HLS`);
      }
      const failedAfterMs = Date.now() - openedAt;
      await screenshot(embedded, 'player-failed-embed');
      await webrtcOnly.locator('#failure summary').click(); // the details for support, in the screenshot
      await screenshot(webrtcOnly, 'player-failed');

      // What the player knows: the edge offered its blocked ports on UDP and TCP, and this
      // browser's checks of them went unanswered.
      const failure = await webrtcOnly.evaluate(() => (window as any).relaycastPlayer.failure);
      assert.equal(failure.kind, 'ice', JSON.stringify(failure));
      assert.equal(failure.edge, 'edge-1');
      const offered = failure.offered as { address: string; port: number; protocol: string }[];
      assert.deepEqual([...new Set(offered.map((c) => c.protocol))].sort(), ['tcp', 'udp'], JSON.stringify(offered));
      for (const c of offered) {
        assert.equal(c.address, '127.0.0.1');
        assert.ok(c.port >= EDGE_MEDIA_MIN_PORT && c.port <= EDGE_MEDIA_MAX_PORT, `an offered port of the edge's: ${c.port}`);
      }
      const tried = failure.tried as { state: string; responsesReceived: number }[];
      assert.ok(tried.length > 0, `this browser checked some address pairs: ${JSON.stringify(failure)}`);
      assert.ok(tried.every((p) => p.state !== 'succeeded' && p.responsesReceived === 0), JSON.stringify(tried));

      // What the viewer sees: the addresses, the advice, the Retry button; in the embed too.
      for (const page of [webrtcOnly, embedded]) {
        const text = await page.locator('#status-text').innerText();
        const shown = (await page.evaluate(() => (window as any).relaycastPlayer.failure)) as typeof failure;
        for (const c of shown.offered as typeof offered) assert.ok(text.includes(`127.0.0.1:${c.port} (${c.protocol})`), `the status names ${c.port}/${c.protocol}: ${text}`);
        assert.match(text, /--announced-ip/);
        assert.ok(await page.locator('#retry').isVisible(), 'the Retry button is shown');
        if (page === webrtcOnly) console.log(`      ?mode=webrtc: opened → failed: ${failedAfterMs} ms (both pages); the page says: ${text}`);
      }

      // The way is open again, yet a failed page does not try by itself: one POST per attempt,
      // none since. Retry starts a new session, which plays.
      unblockEdgeMedia();
      assert.equal(posts, failure.attempts, 'no WHEP POST after the page failed');
      const { sessions } = await playerStats(webrtcOnly);
      await webrtcOnly.locator('#retry').click();
      await waitFor('a new WHEP POST after Retry', () => posts > failure.attempts, 15_000);
      const again = await playing(webrtcOnly, 'the page to play after Retry', { afterSession: sessions });
      assert.equal(again.mode, 'webrtc');
      assert.equal(await webrtcOnly.locator('#retry').isVisible(), false, 'no Retry button while playing');
      // The fallen-back page stays on HLS by itself.
      assert.equal((await playerStats(viewer)).mode, 'hls', 'no return to WebRTC without retry()');
    } finally {
      unblockEdgeMedia();
      await stopPublishing(publisher, token);
    }
  });

  it('plays over HLS with ?mode=hls, and shows it', async () => {
    const stream = 'player-hls';
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await newPage(origin.url);
    assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/H264')).status, 201);
    const viewer = await newPage(balancer.url);
    let whep = 0;
    viewer.on('request', (request) => {
      if (new URL(request.url()).pathname.startsWith('/whep/')) whep++;
    });
    const openedAt = Date.now();
    await viewer.goto(`${balancer.url}/play/${stream}?mode=hls`);
    const stats = await playingOverHls(viewer, 'the ?mode=hls page to play');
    const playingAfterMs = Date.now() - openedAt;
    assert.equal(whep, 0, 'no WHEP request in mode hls');
    assert.equal(stats.edge, 'edge-1');
    // A few seconds more, for the live catch-up (maxLiveSyncPlaybackRate) to settle, then the figure.
    await new Promise((r) => setTimeout(r, 5000));
    const settled = await playerStats(viewer);
    const badge = await viewer.locator('#mode').innerText();
    await screenshot(viewer, 'player-hls');
    console.log(`      ?mode=hls: opened → playing ${playingAfterMs} ms; ${settled.width}×${settled.height}, ${settled.fps} fps, ${settled.bitrateKbps} kbit/s, codec ${settled.videoCodec}; latency ${stats.latencyMs} ms at start, ${settled.latencyMs} ms 5 s later (hls.js); the page shows "${badge}"`);
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

/**
 * A viewer on a network that lets web traffic through and nothing else: Chromium in a network
 * namespace (kit/netns.ts) whose UDP is dropped, and TCP to the edge's media ports too (UDP alone
 * is not enough: the edge also offers ICE-TCP, over which WebRTC plays, test/iceTcp.test.ts). The
 * cluster listens on the namespace link's host address. The page falls back to HLS by itself.
 */
describe('web player on a network without UDP (Chromium in a network namespace)', function () {
  this.timeout(240_000);
  const stream = 'player-netns';
  let netns: NetNs | undefined;
  let testDb: TestDatabase | undefined;
  let nodes: RelaycastProcess[] = [];
  let publisherBrowser: TestBrowser | undefined;
  let viewerBrowser: TestBrowser | undefined;

  before(async function () {
    const reason = netnsUnavailable({ firewall: true });
    if (reason) {
      console.log(`      SKIPPED: ${reason}`);
      this.skip();
    }
    netns = await createNetns();
    testDb = await createTestDatabase();
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const start = (role: string, id: string, args: string[] = []) =>
      startRelaycast({ roles: [role], host: netns!.hostIp, databaseUrl: testDb!.url, env, args: ['--node-id', id, '--heartbeat-ms', '500', '--node-ttl-ms', '3000', ...args] });
    const edgePorts = ['--rtc-min-port', String(EDGE_MEDIA_MIN_PORT), '--rtc-max-port', String(EDGE_MEDIA_MAX_PORT)];
    nodes = await Promise.all([start('origin', 'origin-ns'), start('edge', 'edge-ns', edgePorts), start('balancer', 'balancer-ns')]);
    const balancer = nodes[2];
    await waitFor('the edge in the route API', async () => {
      const res = await fetch(`${balancer.url}/v1/route?stream=any&role=edge`);
      return res.ok && ((await res.json()) as { choices: unknown[] }).choices.length > 0;
    }, 15_000);
    [publisherBrowser, viewerBrowser] = await Promise.all([TestBrowser.launch({ secureOrigins: [nodes[0].url] }), TestBrowser.launch({ netns: netns.name })]);
    netns.blockUdp(true);
    // TCP to the edge's media ports, dropped on the wire like the UDP (netdev egress, inside the namespace).
    const ruleset =
      `table netdev relaycast_player_block_tcp {\n  chain out {\n    type filter hook egress device "${netns.nsIf}" priority -500; policy accept;\n` +
      `    tcp dport ${EDGE_MEDIA_MIN_PORT}-${EDGE_MEDIA_MAX_PORT} counter drop\n  }\n}\n`;
    execFileSync('ip', ['netns', 'exec', netns.name, 'nft', '-f', '-'], { input: ruleset, timeout: 10_000, stdio: ['pipe', 'pipe', 'pipe'] });
  });
  after(async () => {
    await viewerBrowser?.close();
    await publisherBrowser?.close();
    for (const node of nodes.reverse()) await node.stop();
    await testDb?.drop();
    await netns?.remove();
  });

  it('falls back to HLS by itself and plays', async () => {
    const [origin, , balancer] = nodes;
    const token = await signStreamToken(SECRET, { stream, action: 'publish' });
    const publisher = await publisherBrowser!.page(origin.url);
    assert.equal((await publish(publisher, `${origin.url}/whip/${stream}`, token, 'video/H264')).status, 201);
    try {
      const viewer = await viewerBrowser!.page(balancer.url);
      const openedAt = Date.now();
      await viewer.goto(`${balancer.url}/play/${stream}`);
      const stats = await playingOverHls(viewer, 'the page in the namespace to fall back to HLS and play', 120_000);
      const failure = await viewer.evaluate(() => (window as any).relaycastPlayer.failure);
      assert.equal(failure?.kind, 'ice', `why WebRTC did not play is kept: ${JSON.stringify(failure)}`);
      assert.ok((failure.offered as { address: string }[]).every((c) => c.address === netns!.hostIp), JSON.stringify(failure.offered));
      await screenshot(viewer, 'player-netns-hls');
      console.log(`      no UDP, no media TCP: opened → playing over HLS ${Date.now() - openedAt} ms; ${stats.width}×${stats.height}, latency ${stats.latencyMs} ms (hls.js); WebRTC said: ${failure.reason}`);
    } finally {
      await stopPublishing(publisher, token);
    }
  });
});
