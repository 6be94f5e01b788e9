// The image's HEALTHCHECK (and compose's): GET /healthz (or the path given, e.g. /readyz) on this
// node (docker/local-node.mjs: its plain port, else its HTTP port, over HTTPS with --tls-cert), with
// Node's own http client: the runtime image has no curl. Exit 0 on a 2xx answer. Set ports through
// the environment, not flags, in containers, so that this check finds them.
import { localNode } from './local-node.mjs';

const path = process.argv[2] ?? '/healthz';
const TIMEOUT_MS = 4000;

const req = localNode.request({ path, timeout: TIMEOUT_MS }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => (body += chunk));
  res.on('end', () => {
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    if (!ok) console.error(`${localNode.describe(path)}: ${res.statusCode} ${body}`);
    process.exit(ok ? 0 : 1);
  });
});
req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
req.on('error', (error) => {
  console.error(`${localNode.describe(path)}: ${error.message}`);
  process.exit(1);
});
req.end();
