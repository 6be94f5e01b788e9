/**
 * A load generator of simulated Low-Latency HLS viewers (bench/hls.ts), run as a process of its
 * own: plain HTTP clients that follow the LL-HLS protocol (RFC 8216bis) against one stream on one
 * node, without decoding anything. Each client, as a player would:
 *
 *   1. GET index.m3u8, then media.m3u8 and the init segment (EXT-X-MAP);
 *   2. takes the parts from the last independent one listed (where a player starts), then loops:
 *      a blocking reload `media.m3u8?_HLS_msn=M&_HLS_part=P&_HLS_skip=YES` for the part after the
 *      last one listed (a delta update, as hls.js asks once it has the playlist), and, at the same
 *      time, the part the playlist's EXT-X-PRELOAD-HINT names (as Apple's players do; hls.js
 *      instead asks for each part once a reload lists it: the same two requests per part);
 *      a part listed that it has not got yet (a hint missed) is fetched after the reload.
 *
 * Each client has its own keep-alive connections (an http.Agent, at most 6 sockets, a browser's
 * limit per host), so the node sees one set of connections per viewer.
 *
 *   node --import tsx bench/hls/llhls.ts --base http://127.0.0.1:PORT/hls/STREAM/ [--seconds 3600]
 *
 * stdin, one command a line (kit/clients/lines.ts): `add <n>` → `added` once the n new clients
 * have their first part (or ADD_WAIT_MS passed); `snapshot` → `snapshot` (counters summed over the
 * clients so far); `stop` → `stopped`, and the process exits. It exits by itself after --seconds.
 */
import { Agent, get } from 'node:http';
import { parseArgs } from 'node:util';
import { commands, emit } from '../../kit/clients/lines.ts';

/** A request may be held by the server: a blocking reload up to 3 target durations (12 s) and the edge's hop; past this it counts as failed. */
const REQUEST_TIMEOUT_MS = 20_000;
/** After a failed request a client waits this long, then starts again from a plain playlist (as a player recovers). */
const RETRY_MS = 500;
/** How long `add` waits for its new clients' first parts before it reports anyway (a wait, not a figure). */
const ADD_WAIT_MS = 45_000;
/** Browsers open at most six connections per host. */
const SOCKETS_PER_CLIENT = 6;

interface Counters {
  requests: { playlist: number; init: number; part: number };
  /** Response bodies received, bytes. */
  bytes: number;
  parts: number;
  /** Non-200 answers and network failures or timeouts. */
  errors: number;
  lastError: string | undefined;
}

const counters: Counters = { requests: { playlist: 0, init: 0, part: 0 }, bytes: 0, parts: 0, errors: 0, lastError: undefined };

interface Playlist {
  /** The part after the last one listed: where the next blocking reload waits. */
  next: { msn: number; part: number };
  initUri: string | undefined;
  /** Parts listed, oldest first: URI and whether it starts with a key frame. */
  parts: Array<{ uri: string; independent: boolean }>;
  hint: string | undefined;
  ended: boolean;
}

/** Reads the lines of a media playlist (a delta update too) that a client needs. */
function parsePlaylist(text: string): Playlist {
  let msn = 0;
  let open = 0;
  let initUri: string | undefined;
  let hint: string | undefined;
  let ended = false;
  const parts: Playlist['parts'] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) msn = Number(line.slice('#EXT-X-MEDIA-SEQUENCE:'.length));
    else if (line.startsWith('#EXT-X-SKIP:')) msn += Number(/SKIPPED-SEGMENTS=(\d+)/.exec(line)?.[1] ?? 0);
    else if (line.startsWith('#EXT-X-MAP:')) initUri = /URI="([^"]+)"/.exec(line)?.[1];
    else if (line.startsWith('#EXT-X-PART:')) {
      const uri = /URI="([^"]+)"/.exec(line)?.[1];
      if (uri) parts.push({ uri, independent: line.includes('INDEPENDENT=YES') });
      open++;
    } else if (line.startsWith('#EXT-X-PRELOAD-HINT:')) hint = /URI="([^"]+)"/.exec(line)?.[1];
    else if (line.startsWith('#EXT-X-ENDLIST')) ended = true;
    else if (line !== '' && !line.startsWith('#')) {
      // A segment's URI: that segment is complete, the next one opens.
      msn++;
      open = 0;
    }
  }
  return { next: { msn, part: open }, initUri, parts, hint, ended };
}

interface Answer {
  status: number;
  body: Buffer;
}

function request(agent: Agent, url: string, kind: keyof Counters['requests']): Promise<Answer> {
  counters.requests[kind]++;
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        counters.bytes += body.length;
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

class Client {
  readonly #base: string;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: SOCKETS_PER_CLIENT });
  /** Parts fetched (or being fetched), by URI. */
  readonly #got = new Set<string>();
  #stopped = false;
  #firstPart!: () => void;
  readonly firstPart = new Promise<void>((resolve) => (this.#firstPart = resolve));

  constructor(base: string) {
    this.#base = base;
  }

  stop(): void {
    this.#stopped = true;
    this.#agent.destroy();
  }

  async run(): Promise<void> {
    while (!this.#stopped) {
      try {
        await this.#play();
      } catch (error) {
        if (this.#stopped) return;
        counters.errors++;
        counters.lastError = (error as Error).message;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  async #get(file: string, kind: keyof Counters['requests']): Promise<Buffer> {
    const answer = await request(this.#agent, new URL(file, this.#base).toString(), kind);
    if (answer.status !== 200) throw new Error(`${file.split('?')[0]}: ${answer.status} ${answer.body.toString().slice(0, 200)}`);
    return answer.body;
  }

  async #part(uri: string): Promise<void> {
    if (this.#got.has(uri)) return;
    this.#got.add(uri);
    try {
      await this.#get(uri, 'part');
    } catch (error) {
      this.#got.delete(uri);
      throw error;
    }
    counters.parts++;
    this.#firstPart();
  }

  async #play(): Promise<void> {
    await this.#get('index.m3u8', 'playlist');
    let playlist = parsePlaylist((await this.#get('media.m3u8', 'playlist')).toString());
    if (playlist.initUri) await this.#get(playlist.initUri, 'init');
    let start = playlist.parts.length - 1;
    while (start > 0 && !playlist.parts[start]!.independent) start--;
    for (const part of playlist.parts.slice(Math.max(0, start))) await this.#part(part.uri);
    while (!this.#stopped && !playlist.ended) {
      const { msn, part } = playlist.next;
      const hinted = playlist.hint ? this.#part(playlist.hint) : Promise.resolve();
      const reload = this.#get(`media.m3u8?_HLS_msn=${msn}&_HLS_part=${part}&_HLS_skip=YES`, 'playlist');
      const [text] = await Promise.all([reload, hinted]);
      playlist = parsePlaylist(text.toString());
      for (const p of playlist.parts.slice(-3)) await this.#part(p.uri);
      // Forget parts long gone from the playlist (a part's number never comes back: each carries the run and its sequence).
      if (this.#got.size > 64) for (const uri of [...this.#got].slice(0, this.#got.size - 32)) this.#got.delete(uri);
    }
  }
}

const { values } = parseArgs({ options: { base: { type: 'string' }, seconds: { type: 'string', default: '3600' } } });
if (!values.base) throw new Error('usage: llhls.ts --base http://HOST:PORT/hls/STREAM/');
const base = values.base.endsWith('/') ? values.base : `${values.base}/`;
const clients: Client[] = [];
let finished!: () => void;
const done = new Promise<void>((resolve) => (finished = resolve));

async function add(n: number): Promise<void> {
  const started = Date.now();
  const added = Array.from({ length: n }, () => new Client(base));
  clients.push(...added);
  for (const c of added) void c.run();
  let playing = 0;
  await Promise.race([Promise.all(added.map((c) => c.firstPart.then(() => playing++))), new Promise((r) => setTimeout(r, ADD_WAIT_MS))]);
  emit('added', { requested: n, playing, total: clients.length, ms: Date.now() - started });
}

function stop(): void {
  for (const c of clients.splice(0)) c.stop();
  emit('stopped');
  finished();
}

commands(async ([command, arg]) => {
  if (command === 'add') await add(Number(arg ?? 1));
  else if (command === 'snapshot') emit('snapshot', { at: Date.now(), clients: clients.length, ...counters, requests: { ...counters.requests } });
  else if (command === 'stop') stop();
}, async () => stop());
emit('ready');
const limit = setTimeout(stop, Number(values.seconds) * 1000);
await done;
clearTimeout(limit);
process.exit(0);
