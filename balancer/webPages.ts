import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../core/paths.ts';
import express, { type Response, type Router } from 'express';
import { streamName } from '../core/tokens.ts';

/**
 * The browser pages the balancer serves (issue 6):
 * - `GET /play/{stream}`: the web player (`?token=` for a private stream, `?embed=1` for iframes,
 *   `&stats=1` to show the stats there, `?playbackToken=` for a private stream's DVR window). It
 *   asks this balancer's route API for an edge and plays over WHEP from it, reconnecting by itself;
 *   a stream being recorded gets a DVR window (`/v1/dvr`, Balancer.ts).
 * - `GET /dashboard`: nodes and live streams, read from the admin API with the admin token the
 *   page asks for. The page itself is public; its data is not.
 * - `GET /player/*`: the static files of `player/` (the `relaycast-player.js` module that sites
 *   may import, `embed.js`, the pages' scripts and styles).
 * - `GET /player/vendor/hls.mjs`: hls.js (its ES module build, from node_modules), which the player
 *   imports when it plays over HLS.
 */

const PLAYER_DIR = join(PACKAGE_ROOT, 'player');

/** hls.js's ES module build, served as the player's `vendor/hls.mjs` (a module beside it, for CSP's script-src 'self'). */
const HLS_JS = createRequire(import.meta.url).resolve('hls.js/dist/hls.mjs');

/**
 * Static files may be cached for 5 minutes: a deploy reaches every viewer within that, and a
 * page full of viewers does not refetch the player on every reconnect.
 */
const STATIC_MAX_AGE = '5m';

/** Pages are revalidated on every load (ETag), so a new version shows at once. */
const PAGE_CACHE = 'no-cache';

/** Hardening shared by both pages: scripts and styles from this origin only, no plugins. */
const BASE_CSP = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'";

function sendPage(res: Response, file: string, headers: Record<string, string>): void {
  res.set({ 'Cache-Control': PAGE_CACHE, 'X-Content-Type-Options': 'nosniff', ...headers });
  res.sendFile(join(PLAYER_DIR, file), { cacheControl: false });
}

export function webPagesRouter(): Router {
  const router = express.Router();

  router.get('/play/:stream', (req, res) => {
    streamName(req.params.stream); // a 400 for a name no stream can have
    sendPage(res, 'play.html', {
      // WHEP and HLS go to edges on other origins; any site may frame the player (that is what
      // embed is for). Media: hls.js plays through a MediaSource (a blob: URL), Safari's own HLS
      // from the edge.
      'Content-Security-Policy': `${BASE_CSP}; connect-src *; media-src * blob:; frame-ancestors *`,
      // The page URL may carry a play token: never send it on as a Referer.
      'Referrer-Policy': 'no-referrer',
    });
  });

  router.get('/dashboard', (_req, res) => {
    sendPage(res, 'dashboard.html', {
      'Content-Security-Policy': `${BASE_CSP}; connect-src 'self'; frame-ancestors 'none'`,
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
    });
  });

  router.get('/player/vendor/hls.mjs', (_req, res) => {
    res.set('Access-Control-Allow-Origin', '*');
    res.type('text/javascript').sendFile(HLS_JS, { maxAge: STATIC_MAX_AGE });
  });

  const assets = express.static(PLAYER_DIR, { maxAge: STATIC_MAX_AGE, index: false, redirect: false, dotfiles: 'ignore' });
  router.use('/player', (req, res, next) => {
    // The pages are served at /play and /dashboard only; this folder's docs are not served.
    if (/\.(html|md)$/i.test(req.path)) return next();
    // Sites import the player module from here, and module scripts are fetched with CORS.
    res.set('Access-Control-Allow-Origin', '*');
    assets(req, res, next);
  });

  return router;
}
