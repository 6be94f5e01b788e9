/**
 * STUN/TURN servers offered to WHIP/WHEP clients (the `iceServers` setting), as RFC 9725's
 * `Link: <url>; rel="ice-server"` headers. `turn:user:pass@host:port` carries the credentials.
 */

export interface IceServer {
  /** The URL without credentials: `stun:host:port`, `turns:host:port?transport=tcp`. */
  url: string;
  username?: string;
  credential?: string;
}

const URL_FORM = /^(stuns?|turns?):(\S+)$/;
const WITH_CREDENTIALS = /^(turns?):([^:@]+):([^@]+)@(.+)$/;

/** Comma-separated stun:/turn: URLs; throws TypeError. */
export function parseIceServers(text: string): IceServer[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const credentials = WITH_CREDENTIALS.exec(entry);
      if (credentials) {
        const [, scheme, username, credential, rest] = credentials;
        return { url: `${scheme}:${rest}`, username, credential };
      }
      if (!URL_FORM.test(entry) || entry.includes('@')) throw new TypeError(`${entry} is not a stun:, stuns:, turn: or turns: URL`);
      return { url: entry };
    });
}

/** The server as a Link header value. */
export function iceServerLink(server: IceServer): string {
  const link = `<${server.url}>; rel="ice-server"`;
  if (server.username === undefined) return link;
  return `${link}; username="${server.username}"; credential="${server.credential}"; credential-type="password"`;
}
