// How the container's own scripts (healthcheck.mjs, prestop.mjs) reach the node beside them on
// loopback, from the node's environment:
//   RELAYCAST_HTTP_PLAIN_PORT set      plain HTTP on that port
//   RELAYCAST_TLS_CERT set             HTTPS on RELAYCAST_HTTP_PORT (the port speaks nothing else);
//                                      the certificate is not checked: this is the process next
//                                      door on 127.0.0.1, and its name is not 127.0.0.1
//   otherwise                          plain HTTP on RELAYCAST_HTTP_PORT (default 8080)
// A listen address other than 0.0.0.0/:: (RELAYCAST_HTTP_HOST) is used as given.
import http from 'node:http';
import https from 'node:https';

const env = process.env;
const listen = env.RELAYCAST_HTTP_HOST || '0.0.0.0';
const host = listen === '0.0.0.0' || listen === '::' ? '127.0.0.1' : listen.replace(/^\[|\]$/g, '');
const plainPort = Number(env.RELAYCAST_HTTP_PLAIN_PORT || 0);
const tls = !plainPort && Boolean(env.RELAYCAST_TLS_CERT);

export const localNode = {
  host,
  port: plainPort || env.RELAYCAST_HTTP_PORT || '8080',
  tls,
  /** http.request / https.request with the options that reach the node. */
  request(options, onResponse) {
    const base = { host, port: this.port, agent: false, ...(tls ? { rejectUnauthorized: false } : {}) };
    return (tls ? https : http).request({ ...base, ...options }, onResponse);
  },
  describe(path) {
    return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${this.port}${path}`;
  },
};
