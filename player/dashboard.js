// @ts-check
/**
 * The /dashboard page: nodes by region with their load, and the live streams, read from the admin
 * API every POLL_MS with the admin token (Authorization: Bearer). The token comes from the form
 * or from `#token=…` in the URL (for links and tests; taken out of the address bar at once) and
 * stays in sessionStorage: this tab only, gone when it closes. Never in a query string, where it
 * would land in server and proxy logs.
 */

/** The registry heartbeats every 2 s; polling faster would only redraw the same numbers. */
const POLL_MS = 2000;
/** A request that takes longer than this is abandoned; the next poll tries again. */
const REQUEST_TIMEOUT_MS = 5000;
/** Load history kept per node for its sparkline: 60 polls, two minutes. */
const HISTORY = 60;
/** Items per list request: the API's largest page, so a cluster of hundreds of nodes is one request. */
const PAGE_SIZE = 500;
/** Pages of a list followed at most (`next` cursors), so that a broken cursor cannot loop forever. */
const MAX_PAGES = 50;
const TOKEN_KEY = 'relaycast-admin-token';

/**
 * @typedef {{ id: string, roles: string[], region: string, publicUrl: string, state: 'up' | 'dead' | 'gone',
 *   draining: boolean, capacity: number, viewers: number, streams: number, cpu: number, load: number,
 *   heartbeatAt: string }} NodeView
 * @typedef {{ name: string, state: 'live' | 'idle', private: boolean, origin: { id: string, region: string } | null,
 *   ingestProtocol: 'whip' | 'rtmp' | null, edges: { id: string, region: string, viewers: number, parent: string }[],
 *   hlsEdges: { id: string, region: string, viewers: number }[], hlsViewers: number,
 *   recorded: { recordings: number, bytes: number }, viewers: number, createdAt: string, startedAt: string | null }} StreamView
 */

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * A DOM element; text children are text nodes (never parsed as HTML: node ids and stream names
 * come from the network).
 * @param {string} tag
 * @param {Record<string, string | undefined>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 */
function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Green at 0, amber at 0.5, red at 1. @param {number} load */
function loadColor(load) {
  return `hsl(${Math.round(120 * (1 - Math.min(Math.max(load, 0), 1)))} 70% 45%)`;
}

/** @param {number} ms */
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

// --- token ---

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname + location.search);
  }
}

/** @param {string} [error] */
function showLogin(error) {
  sessionStorage.removeItem(TOKEN_KEY);
  polling++;
  clearTimeout(pollTimer);
  $('content').hidden = true;
  $('sign-out').hidden = true;
  $('login').hidden = false;
  $('login-error').hidden = !error;
  $('login-error').textContent = error ?? '';
  $('status').textContent = '';
  /** @type {HTMLInputElement} */ ($('token')).focus();
}

// --- API ---

class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Every item of a list endpoint: pages of PAGE_SIZE, the next one asked for with `cursor` = the
 * `next` of the page before, for at most MAX_PAGES pages.
 * @param {string} path
 * @param {string} token
 */
async function list(path, token) {
  const items = [];
  /** @type {string | null} */
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const url = new URL(path, location.origin);
    url.searchParams.set('limit', String(PAGE_SIZE));
    if (cursor) url.searchParams.set('cursor', cursor);
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new ApiError(res.status, `${url.pathname}: ${res.status} ${body.detail ?? body.title ?? res.statusText}`);
    }
    const body = await res.json();
    items.push(...(Array.isArray(body.items) ? body.items : []));
    cursor = typeof body.next === 'string' && body.next !== '' ? body.next : null;
    if (!cursor) break;
  }
  return items;
}

// --- polling ---

/** Bumped whenever polling (re)starts or stops: a stale loop sees it and ends. */
let polling = 0;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let pollTimer;
/** @type {Map<string, number[]>} */
const history_ = new Map();

function startPolling() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showLogin();
  $('login').hidden = true;
  $('sign-out').hidden = false;
  const generation = ++polling;
  clearTimeout(pollTimer);
  const poll = async () => {
    try {
      /** @type {[NodeView[], StreamView[]]} */
      const [nodes, streams] = await Promise.all([list('/api/v1/nodes', token), list('/api/v1/streams?state=live', token)]);
      if (generation !== polling) return;
      render(nodes, streams);
      $('status').textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      $('status').dataset.ok = 'true';
    } catch (error) {
      if (generation !== polling) return;
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return showLogin('Token refused: enter a valid admin token.');
      $('status').textContent = `cannot read the API (${/** @type {Error} */ (error).message}); retrying`;
      $('status').dataset.ok = 'false';
    }
    // The next poll is scheduled after this one ends: a slow API never piles requests up.
    if (generation === polling) pollTimer = setTimeout(poll, POLL_MS);
  };
  void poll();
}

// --- rendering ---

/**
 * @param {NodeView[]} nodes
 * @param {StreamView[]} streams
 */
function render(nodes, streams) {
  $('content').hidden = false;
  const now = Date.now();
  const up = nodes.filter((n) => n.state === 'up');
  const live = streams.filter((s) => s.state === 'live');
  $('tiles').replaceChildren(
    tile('nodes up', `${up.length}`, `of ${nodes.length}`),
    tile('regions', `${new Set(up.map((n) => n.region)).size}`),
    tile('live streams', `${live.length}`),
    tile('viewers', `${up.reduce((sum, n) => sum + n.viewers, 0)}`),
  );

  for (const n of nodes) {
    const points = history_.get(n.id) ?? [];
    points.push(n.state === 'up' ? n.load : 0);
    if (points.length > HISTORY) points.shift();
    history_.set(n.id, points);
  }
  /** @type {Map<string, NodeView[]>} */
  const regions = new Map();
  for (const n of nodes) regions.set(n.region, [...(regions.get(n.region) ?? []), n]);
  const order = { up: 0, dead: 1, gone: 2 };
  $('regions').replaceChildren(
    ...[...regions.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([region, members]) =>
        h(
          'div',
          { class: 'region' },
          h('h3', {}, region, h('small', {}, ` ${members.filter((n) => n.state === 'up').length} up`)),
          ...members.sort((a, b) => order[a.state] - order[b.state] || a.id.localeCompare(b.id)).map((n) => nodeRow(n, now)),
        ),
      ),
  );
  if (nodes.length === 0) $('regions').replaceChildren(h('p', { class: 'empty' }, 'No nodes registered.'));

  $('streams').replaceChildren(...live.sort((a, b) => b.viewers - a.viewers || a.name.localeCompare(b.name)).map((s) => streamRow(s, now)));
  if (live.length === 0) $('streams').replaceChildren(h('tr', {}, h('td', { colspan: '7', class: 'empty' }, 'No live streams.')));
}

/** @param {string} label @param {string} value @param {string} [sub] */
function tile(label, value, sub) {
  return h('div', { class: 'tile' }, h('div', { class: 'value' }, value, sub ? h('small', {}, ` ${sub}`) : null), h('div', { class: 'label' }, label));
}

/** @param {NodeView} n @param {number} now */
function nodeRow(n, now) {
  const load = Math.min(Math.max(n.load, 0), 1);
  const fill = h('div', { class: 'fill' });
  fill.style.width = `${(load * 100).toFixed(1)}%`;
  fill.style.background = loadColor(load);
  const badges = [
    n.state !== 'up' ? h('span', { class: `badge ${n.state}` }, n.state) : null,
    n.draining ? h('span', { class: 'badge draining' }, 'draining') : null,
  ];
  return h(
    'div',
    { class: `node ${n.state}`, 'data-node': n.id },
    h('div', { class: 'who' }, h('span', { class: 'id', title: n.publicUrl }, n.id), ...n.roles.map((r) => h('span', { class: `role ${r}` }, r)), ...badges),
    h('div', { class: 'load', title: `load ${(load * 100).toFixed(0)}%` }, h('div', { class: 'track' }, fill), h('span', { class: 'pct' }, `${Math.round(load * 100)}%`)),
    sparkline(history_.get(n.id) ?? []),
    h(
      'div',
      { class: 'nums' },
      h('span', { title: 'viewers / capacity' }, `${n.viewers} / ${n.capacity} viewers`),
      h('span', {}, `${n.streams} ${n.streams === 1 ? 'stream' : 'streams'}`),
      h('span', {}, `cpu ${Math.round(n.cpu * 100)}%`),
      h('span', { class: 'beat', title: `last heartbeat ${n.heartbeatAt}` }, `heartbeat ${ago(now - Date.parse(n.heartbeatAt))} ago`),
    ),
  );
}

/** The node's load over the last HISTORY polls. @param {number[]} points */
function sparkline(points) {
  const w = 120;
  const hgt = 28;
  const s = svg('svg', { class: 'spark', viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: 'img', 'aria-label': 'load history' });
  s.append(svg('rect', { x: 0, y: 0, width: w, height: hgt, rx: 3, class: 'spark-bg' }));
  s.append(svg('line', { x1: 0, x2: w, y1: hgt / 2, y2: hgt / 2, class: 'spark-mid' })); // 50% load
  if (points.length > 1) {
    const step = w / (HISTORY - 1);
    const x0 = w - (points.length - 1) * step;
    const xy = points.map((p, i) => `${(x0 + i * step).toFixed(1)},${(hgt - 2 - Math.min(Math.max(p, 0), 1) * (hgt - 4)).toFixed(1)}`);
    s.append(svg('polygon', { points: `${x0.toFixed(1)},${hgt} ${xy.join(' ')} ${w},${hgt}`, fill: loadColor(points.at(-1) ?? 0), 'fill-opacity': 0.25 }));
    s.append(svg('polyline', { points: xy.join(' '), fill: 'none', stroke: loadColor(points.at(-1) ?? 0), 'stroke-width': 1.5 }));
  }
  return s;
}

/** @param {StreamView} s @param {number} now */
function streamRow(s, now) {
  return h(
    'tr',
    { 'data-stream': s.name },
    h('td', {}, h('span', { class: 'stream-name' }, s.name), s.private ? h('span', { class: 'badge private', title: 'private: a play token is needed' }, 'private') : null),
    h('td', {}, s.origin ? `${s.origin.id} ` : '–', s.origin ? h('small', {}, s.origin.region) : null),
    h('td', {}, s.ingestProtocol ?? '–'),
    h('td', {}, s.edges.length ? relayTree(s) : '–'),
    h('td', { class: 'num viewers', title: `${s.viewers - s.hlsViewers} over WebRTC, ${s.hlsViewers} over HLS` }, String(s.viewers), s.hlsViewers > 0 ? h('small', { class: 'hls-viewers' }, ` (${s.hlsViewers} HLS)`) : null),
    h('td', {}, s.startedAt ? ago(now - Date.parse(s.startedAt)) : '–'),
    h('td', { class: 'num recorded', title: `${s.recorded.recordings} recordings kept` }, s.recorded.recordings ? size(s.recorded.bytes) : '–'),
  );
}

/** Bytes as people read them: 812 KB, 3.4 GB. @param {number} bytes */
function size(bytes) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/**
 * The stream's relay tree: the edges the origin feeds, each with the edges it feeds in turn
 * (relay tiers). An edge whose parent is not in the list (a row between two heartbeats) is shown
 * at the top, so that every edge appears once.
 * @param {StreamView} s
 */
function relayTree(s) {
  const ids = new Set(s.edges.map((e) => e.id));
  /** @param {string | null} parent @param {number} depth @returns {HTMLElement | null} */
  const level = (parent, depth) => {
    const below = s.edges.filter((e) => (parent === null ? !ids.has(e.parent) : e.parent === parent));
    if (below.length === 0 || depth > s.edges.length) return null;
    return h(
      'ul',
      { class: 'tree' },
      ...below.map((e) => h('li', { 'data-edge': e.id, 'data-parent': e.parent }, h('span', { class: 'chip', title: `${e.region}, pulls from ${e.parent}` }, `${e.id} · ${e.viewers}`), level(e.id, depth + 1))),
    );
  };
  return level(null, 0);
}

// --- wiring ---

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('token'));
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = '';
  startPolling();
});
$('sign-out').addEventListener('click', () => showLogin());
addEventListener('hashchange', () => {
  takeTokenFromFragment();
  if (sessionStorage.getItem(TOKEN_KEY)) startPolling();
});

takeTokenFromFragment();
startPolling();
