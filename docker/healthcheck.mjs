// The image's HEALTHCHECK (and compose's): GET /healthz (or the path given, e.g. /readyz) on this
// node's HTTP port, with Node's own fetch: the runtime image has no curl. Exit 0 on a 2xx answer.
// The port comes from RELAYCAST_HTTP_PORT (default 8080): set ports through the environment, not
// flags, in containers, so that this check finds them.
const path = process.argv[2] ?? '/healthz';
const port = process.env.RELAYCAST_HTTP_PORT || '8080';
const listen = process.env.RELAYCAST_HTTP_HOST || '0.0.0.0';
const host = listen === '0.0.0.0' || listen === '::' ? '127.0.0.1' : listen.includes(':') ? `[${listen}]` : listen;

try {
  const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(4000) });
  if (!res.ok) console.error(`${path}: ${res.status} ${await res.text()}`);
  process.exit(res.ok ? 0 : 1);
} catch (error) {
  console.error(`${path}: ${error.message}`);
  process.exit(1);
}
