import { lookup } from 'node:dns/promises';
import { createConnection, isIP } from 'node:net';
import { serverArguments, serverKey, type HaproxyServer } from './HaproxyConfig.ts';
import { MapFile } from './MapFile.ts';

/**
 * One of HAProxy's CLI sockets: the runtime API of the workers (the `stats socket` at level admin)
 * or the master CLI (`reload`, `show proc`). One command per connection, half-closed after it: the
 * reply is everything HAProxy writes before it closes. HAProxy 2.6 answers most successful changes
 * with an empty line and a failed one with a sentence, so a change whose reply is not the expected
 * one throws HaproxyCommandError (its caller falls back to a checked reload).
 *
 * What HAProxy 2.6.12 was seen to do here (and what this class relies on):
 * - `add server` works in our backends (`balance uri` + `hash-type consistent` +
 *   `hash-balance-factor`), with `backup`, `check` and `agent-check`. The server starts in
 *   maintenance with its checks off: `enable health`, `enable agent`, `enable server`.
 * - Without an explicit `id`, 2.6 places the new server on the hash ring before giving it an id
 *   (fixed upstream in 2026: "BUG/MINOR: server: fix add server with consistent hash balancing"),
 *   so every such server lands on the same ring points. With `id N` the ring is right, and equal to
 *   what a config file with the same ids gives after a reload (checked: 100 streams, same edges).
 * - An agent answering `ready` takes a server out of maintenance: `disable agent` first, or `set
 *   server … state maint` does not hold and `del server` refuses ("Only servers in maintenance").
 * - With agent-check on, an enabled server stays DOWN until its first health check (up to `inter`
 *   later); `set server … health up` after `enable server` makes it UP at once, as a server of a
 *   freshly loaded config file is. Its checks take it down within `fall` checks if it is not.
 * - `del server` refuses while the server has connections ("Server still has connections
 *   attached to it"): requests in flight, and idle keep-alive connections that went back to
 *   HAProxy's pool after the server entered maintenance (those it had before are closed then).
 *   HAProxy 2.6 does not purge the idle pool of a server in maintenance: such a connection holds
 *   the server until the edge closes it (Node's keep-alive timeout, 5 s; seen here).
 * - Map payloads (`add map @<ver> <map> <<` + lines + an empty line) larger than the CLI buffer
 *   (tune.bufsize, 16 KiB) are dropped without a word: an empty reply, nothing added. A bad entry
 *   ends its payload with an error sentence and drops the lines after it.
 */

/** How long one command may take: a map chunk takes milliseconds; this is for a stuck HAProxy. */
const COMMAND_TIMEOUT_MS = 10_000;
/** `reload` attempts while the master CLI refuses connections (it is re-executing): 2 s in all. */
const RELOAD_ATTEMPTS = 10;
const RELOAD_RETRY_MS = 200;
/**
 * Map payload bytes per `add map` command: half of HAProxy's default CLI buffer (16 KiB), which
 * silently drops a bigger payload (above). 100,000 entries are ~300 commands, ~0.3 s (bench).
 */
const MAP_PAYLOAD_BYTES = 8192;
/** What ends a payload: its last line's newline and an empty line. */
const PAYLOAD_END = Buffer.from('\n\n');

export class HaproxyCommandError extends Error {
  readonly command: string;
  readonly reply: string;

  constructor(command: string, reply: string) {
    super(`HAProxy refused "${command.split('\n')[0]}": ${reply.trim() || '(empty reply)'}`);
    this.name = 'HaproxyCommandError';
    this.command = command;
    this.reply = reply;
  }
}

/** A server as `show servers state` lists it (format version 1). */
export interface ServerState {
  backend: string;
  name: string;
  id: number;
  address: string;
  port: number;
  /** 0 stopped, 1 starting, 2 running, 3 stopping. */
  opState: number;
  /** Bit flags; 0 ready, 1 forced maintenance, 8 forced drain, … */
  adminState: number;
  weight: number;
  agentPort: number;
}

/** What `del server` did: gone, still busy with connections (try again later), or not there. */
export type DeleteOutcome = 'deleted' | 'busy' | 'absent';

/**
 * Map changes up to this many entries are edited in place, one command each; more replace the
 * whole map as one atomic version. 2.6 finds the entry a `set map` or `del map` names by walking
 * the whole map: 15–50 ms a command at 100,000 entries, ~1 ms at 1,000 (bench), while a replace
 * costs ~7 µs an entry (650 ms at 100,000, 7 ms at 1,000): past ~10 changes the replace is as
 * fast at any size, and lookups never see a half-edited map.
 */
export const MAP_EDIT_LIMIT = 10;

/** One map entry: the key (first word of a map line) and its value (the rest). */
export type MapEntry = readonly [key: string, value: string];

/** A word HAProxy's CLI reads as one argument: no spaces, no command separator, no escape. */
function word(text: string, what: string): string {
  if (typeof text !== 'string' || !/^[^\s;\\]+$/.test(text)) throw new TypeError(`${what} must be one word without ; or \\, got ${JSON.stringify(text)}`);
  return text;
}

export class HaproxyRuntime {
  readonly #socket: string;

  constructor(socket: string) {
    if (typeof socket !== 'string' || socket.length === 0) throw new TypeError('socket must be the path of an HAProxy CLI socket');
    this.#socket = socket;
  }

  get socket(): string {
    return this.#socket;
  }

  /**
   * Sends one command (with its payload: lines, or their bytes joined by newlines) and returns
   * HAProxy's whole reply.
   */
  command(command: string, payload?: readonly string[] | Buffer): Promise<string> {
    const socket = createConnection(this.#socket);
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (reply += d));
    socket.setTimeout(COMMAND_TIMEOUT_MS, () => socket.destroy(new Error(`HAProxy did not answer "${command}" within ${COMMAND_TIMEOUT_MS} ms`)));
    return new Promise<string>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('close', () => resolve(reply));
      socket.once('connect', () => {
        if (Buffer.isBuffer(payload)) {
          // Written as it is, in one writev (a map file's payloads are views of its block, untouched
          // until this command is answered): no copy of 8 KiB per command.
          socket.cork();
          socket.write(`${command} <<\n`);
          socket.write(payload);
          socket.end(PAYLOAD_END);
        } else socket.end(payload ? `${command} <<\n${payload.join('\n')}\n\n` : `${command}\n`);
      });
    });
  }

  /** On the master CLI: asks for a reload (2.6's master answers with nothing). */
  async reload(): Promise<void> {
    await this.#masterCommand('reload');
  }

  /**
   * A master CLI command. The master re-executes itself to reload, and its CLI refuses connections
   * meanwhile (a few hundred ms, seen here): a refused connection is tried again, RELOAD_ATTEMPTS
   * times RELOAD_RETRY_MS apart.
   */
  async #masterCommand(command: string): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.command(command);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (attempt >= RELOAD_ATTEMPTS || (code !== 'ECONNREFUSED' && code !== 'ENOENT')) throw error;
        await new Promise((r) => setTimeout(r, RELOAD_RETRY_MS));
      }
    }
  }

  /**
   * A change HAProxy answers with an empty line when it is done. No reply at all is a failure too:
   * it is how 2.6 answers a payload too large for its buffer.
   */
  async #change(command: string, payload?: readonly string[] | Buffer): Promise<void> {
    const reply = await this.command(command, payload);
    if (reply === '' || reply.trim() !== '') throw new HaproxyCommandError(command, reply);
  }

  /**
   * Adds a server and brings it into service: checks on, out of maintenance, UP until its checks
   * say otherwise. `address` is where HAProxy connects (an IP: `add server` resolves no names).
   */
  async addServer(server: HaproxyServer, address: string): Promise<void> {
    const name = serverKey(word(server.backend, 'backend'), word(server.name, 'server name'));
    const add = `add server ${name} ${word(address, 'address')} ${serverArguments(server)}`;
    const reply = await this.command(add);
    if (!reply.includes('New server registered.')) throw new HaproxyCommandError(add, reply);
    await this.#change(`enable health ${name}`);
    if (server.agentPort) await this.#change(`enable agent ${name}`);
    await this.#change(`enable server ${name}`);
    await this.#change(`set server ${name} health up`);
  }

  /** Takes a server out of service (it gets no new requests) and its agent out of play. */
  async stopServer(backend: string, name: string, agent: boolean): Promise<void> {
    const key = serverKey(word(backend, 'backend'), word(name, 'server name'));
    if (agent) await this.#change(`disable agent ${key}`);
    await this.#change(`disable health ${key}`);
    await this.#change(`set server ${key} state maint`);
  }

  /** Undoes stopServer: the server was about to be deleted and is wanted again. */
  async reviveServer(backend: string, name: string, agent: boolean): Promise<void> {
    const key = serverKey(word(backend, 'backend'), word(name, 'server name'));
    await this.#change(`enable health ${key}`);
    if (agent) await this.#change(`enable agent ${key}`);
    await this.#change(`set server ${key} state ready`);
  }

  /**
   * Deletes a stopped server; 'busy' while it still has connections (try again later). Each try
   * puts it in maintenance again first: an agent check already under way when the agent was
   * disabled still applies its `ready`, which ends the maintenance (seen here).
   */
  async deleteServer(backend: string, name: string): Promise<DeleteOutcome> {
    const key = serverKey(word(backend, 'backend'), word(name, 'server name'));
    const maint = await this.command(`set server ${key} state maint`);
    if (maint.includes('No such server.')) return 'absent';
    const command = `del server ${key}`;
    const reply = await this.command(command);
    if (reply.includes('Server deleted.')) return 'deleted';
    if (reply.includes('No such server.')) return 'absent';
    if (reply.includes('still has connections') || reply.includes('Only servers in maintenance mode')) return 'busy';
    throw new HaproxyCommandError(command, reply);
  }

  /** Points a server at another address and port (its health check follows). */
  async setServerAddress(backend: string, name: string, host: string, port: number): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`port must be 1-65535, got ${port}`);
    const command = `set server ${serverKey(word(backend, 'backend'), word(name, 'server name'))} addr ${word(host, 'address')} port ${port}`;
    const reply = await this.command(command);
    if (!/changed from|no need to change/.test(reply) || /error|invalid|unable|cannot/i.test(reply)) throw new HaproxyCommandError(command, reply);
  }

  /** A server's weight (0: no new connections, those it has go on); HAProxy answers with nothing. */
  async setWeight(backend: string, name: string, weight: number): Promise<void> {
    if (!Number.isInteger(weight) || weight < 0 || weight > 256) throw new TypeError(`weight must be 0-256, got ${weight}`);
    await this.#change(`set server ${serverKey(word(backend, 'backend'), word(name, 'server name'))} weight ${weight}`);
  }

  async setAgentPort(backend: string, name: string, port: number): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`port must be 1-65535, got ${port}`);
    await this.#change(`set server ${serverKey(word(backend, 'backend'), word(name, 'server name'))} agent-port ${port}`);
  }

  /**
   * Edits a few entries of the map in place (each entry at once; for many, replaceMap is atomic):
   * removes keys, sets values of existing keys, adds entries. Keys must be unique in the map.
   */
  async editMap(map: string, edits: { remove: readonly string[]; set: readonly MapEntry[]; add: readonly MapEntry[] }): Promise<void> {
    word(map, 'map');
    for (const key of edits.remove) {
      const command = `del map ${map} ${word(key, 'map key')}`;
      const reply = await this.command(command);
      // Already gone is what was asked for.
      if (reply.trim() !== '' && !reply.includes('Key not found.')) throw new HaproxyCommandError(command, reply);
    }
    for (const [key, value] of edits.set) await this.#change(`set map ${map} ${word(key, 'map key')} ${word(value, 'map value')}`);
    if (edits.add.length > 0) await this.#addMapEntries(`add map ${map}`, edits.add);
  }

  /**
   * Turns the map's entries `from` (what HAProxy has) into `to`: a few edits in place (editMap), or
   * the whole map replaced atomically (replaceMap) when the change is large or not a plain edit.
   */
  async updateMap(map: string, from: readonly MapEntry[], to: readonly MapEntry[]): Promise<{ kind: 'map-edit' | 'map-replace'; entries: number }> {
    const edits = diffMap(from, to);
    if (edits && edits.size <= MAP_EDIT_LIMIT) {
      await this.editMap(map, edits);
      return { kind: 'map-edit', entries: edits.size };
    }
    await this.replaceMap(map, to);
    return { kind: 'map-replace', entries: to.length };
  }

  /**
   * Replaces the whole map atomically: a new version filled in chunks, then committed in one step
   * (HAProxy 2.4+ versioned maps). Until the commit, lookups see the old entries; on any error the
   * new version is cleared and the old one stays. Returns the number of `add map` commands sent.
   * A MapFile is sent from its file, a block at a time, as the bytes of its lines (the geo map:
   * never held whole, nor as a million entries).
   */
  async replaceMap(map: string, entries: Iterable<MapEntry> | MapFile): Promise<number> {
    word(map, 'map');
    const prepared = await this.command(`prepare map ${map}`);
    const version = /New version created: (\d+)/.exec(prepared)?.[1];
    if (!version) throw new HaproxyCommandError(`prepare map ${map}`, prepared);
    try {
      const command = `add map @${version} ${map}`;
      const chunks = entries instanceof MapFile ? await this.#addMapPayloads(command, entries) : await this.#addMapEntries(command, entries);
      await this.#change(`commit map @${version} ${map}`);
      return chunks;
    } catch (error) {
      await this.command(`clear map @${version} ${map}`).catch(() => undefined);
      throw error;
    }
  }

  /** Sends entries as payloads of at most MAP_PAYLOAD_BYTES; returns how many commands it took. */
  async #addMapEntries(command: string, entries: Iterable<MapEntry>): Promise<number> {
    let chunk: string[] = [];
    let bytes = 0;
    let sent = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      await this.#change(command, chunk);
      sent++;
      chunk = [];
      bytes = 0;
    };
    for (const [key, value] of entries) {
      const line = `${word(key, 'map key')} ${value}`;
      if (/[\r\n]/.test(value) || value.trim() === '') throw new TypeError(`map value of ${key} must be one non-empty line`);
      if (bytes + line.length + 1 > MAP_PAYLOAD_BYTES) await flush();
      chunk.push(line);
      bytes += line.length + 1;
    }
    await flush();
    return sent;
  }

  /** Sends a map file's lines, as MapFile.payloads cuts them; returns how many commands it took. */
  async #addMapPayloads(command: string, file: MapFile): Promise<number> {
    let sent = 0;
    for (const payload of file.payloads(MAP_PAYLOAD_BYTES)) {
      await this.#change(command, payload);
      sent++;
    }
    return sent;
  }

  /** Every server of the running configuration (or of one backend), from `show servers state`. */
  async serversState(backend?: string): Promise<ServerState[]> {
    const reply = await this.command(backend ? `show servers state ${word(backend, 'backend')}` : 'show servers state');
    return HaproxyRuntime.parseServersState(reply);
  }

  /** Parses `show servers state` (format 1): be_id be_name srv_id srv_name srv_addr srv_op_state … */
  static parseServersState(text: string): ServerState[] {
    const lines = text.split('\n');
    const header = lines.find((l) => l.startsWith('# be_id'))?.slice(2).split(' ');
    if (!header) throw new TypeError(`not a "show servers state" answer: ${text.slice(0, 200)}`);
    const column = (name: string) => header.indexOf(name);
    const at = { be: column('be_name'), id: column('srv_id'), name: column('srv_name'), addr: column('srv_addr'), op: column('srv_op_state'), admin: column('srv_admin_state'), weight: column('srv_uweight'), port: column('srv_port'), agent: column('srv_agent_port') };
    return lines
      .filter((l) => /^\d+ /.test(l))
      .map((l) => l.split(' '))
      .filter((f) => f.length >= header.length)
      .map((f) => ({
        backend: f[at.be]!,
        name: f[at.name]!,
        id: Number(f[at.id]),
        address: f[at.addr]!,
        port: Number(f[at.port]),
        opState: Number(f[at.op]),
        adminState: Number(f[at.admin]),
        weight: Number(f[at.weight]),
        agentPort: Number(f[at.agent]),
      }));
  }

  /** On the master CLI: the pids of the current workers (`show proc`, "# workers" section). */
  async workers(): Promise<number[]> {
    const text = await this.#masterCommand('show proc');
    const section = text.split('# workers')[1]?.split('#')[0] ?? '';
    return [...section.matchAll(/^(\d+)\s+worker/gm)].map((m) => Number(m[1]));
  }
}

/** The entries of a map file's text: one per line, the key its first word, the value the rest; # comments. */
export function parseMap(text: string): MapEntry[] {
  return [...mapEntries(text)];
}

/**
 * parseMap's entries one at a time, from the text or its UTF-8 bytes: a map of a million lines
 * (the geo map) is read line by line, never as one string (two bytes a character once it holds
 * one non-Latin-1 character) nor as a million entries at once.
 */
export function* mapEntries(map: string | Buffer): Generator<MapEntry> {
  const bytes = typeof map !== 'string';
  for (let start = 0; start < map.length; ) {
    let end = bytes ? map.indexOf(0x0a, start) : map.indexOf('\n', start);
    if (end < 0) end = map.length;
    const line = (bytes ? map.toString('utf8', start, end) : map.slice(start, end)).trim();
    start = end + 1;
    if (line === '' || line.startsWith('#')) continue;
    const space = line.search(/\s/);
    if (space < 0) throw new TypeError(`map line without a value: ${line}`);
    yield [line.slice(0, space), line.slice(space).trim()];
  }
}

/**
 * What editMap must do to turn map `from` into map `to`, and how many entries that touches; undefined
 * when it cannot say (a key twice in a map, or a value that is not one word): replace the map then.
 */
export function diffMap(from: readonly MapEntry[], to: readonly MapEntry[]): { remove: string[]; set: MapEntry[]; add: MapEntry[]; size: number } | undefined {
  const before = new Map(from);
  const after = new Map(to);
  if (before.size !== from.length || after.size !== to.length) return undefined;
  if (to.some(([, value]) => /\s/.test(value))) return undefined;
  const remove = [...before.keys()].filter((key) => !after.has(key));
  const set = to.filter(([key, value]) => before.has(key) && before.get(key) !== value);
  const add = to.filter(([key]) => !before.has(key));
  return { remove, set, add, size: remove.length + set.length + add.length };
}

/** host:port → host and port; `[v6]:port` too. */
export function splitAddress(address: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  if (!match) throw new TypeError(`${address} is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

/**
 * The address HAProxy's runtime API can take: `add server` resolves no names (its servers start
 * with init-addr none), so a host name is looked up here, once, as HAProxy does at start-up.
 */
export async function resolveAddress(address: string): Promise<string> {
  const { host, port } = splitAddress(address);
  if (isIP(host)) return address;
  const found = await lookup(host);
  return found.family === 6 ? `[${found.address}]:${port}` : `${found.address}:${port}`;
}
