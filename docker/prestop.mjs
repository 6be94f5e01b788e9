// Kubernetes preStop hook for origins and edges: drain this node (no new viewers or streams; what
// it carries keeps playing), then wait until its viewers and streams are gone, at most
// RELAYCAST_PRESTOP_WAIT_S seconds (default 3540). The kubelet sends SIGTERM when this returns,
// and the node's own shutdown follows (moving the viewers left, RELAYCAST_DRAIN_TIMEOUT_MS, then
// leaving the cluster). Keep terminationGracePeriodSeconds above the wait plus that shutdown.
//
// Draining goes through the database (`relaycast drain <node id>`, DATABASE_URL), so it needs
// neither the admin token nor the balancer. If it fails, the wait still happens: viewers are not
// cut because of a database blip.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const timeoutS = Number(process.env.RELAYCAST_PRESTOP_WAIT_S ?? 3540);
const pollMs = Number(process.env.RELAYCAST_PRESTOP_POLL_MS ?? 2000);
const port = process.env.RELAYCAST_HTTP_PORT || '8080';
const nodeId = process.env.RELAYCAST_NODE_ID;
const deadline = Date.now() + timeoutS * 1000;
const log = (message) => console.log(`prestop: ${message}`);

async function drain() {
  if (!nodeId) return log('RELAYCAST_NODE_ID is not set; cannot drain, waiting anyway');
  const cli = fileURLToPath(new URL('../bin/relaycast.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'drain', nodeId], { stdio: 'inherit' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)).on('error', () => resolve(-1)));
  clearTimeout(timer);
  if (code !== 0) log(`drain exited with ${code}; waiting for viewers to leave anyway`);
}

/** Viewers plus streams on this node, from its /metrics; undefined when the node does not answer. */
async function load() {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return undefined;
    let total = 0;
    for (const line of (await res.text()).split('\n')) {
      const match = /^relaycast_(viewers|streams)(?:\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
      if (match) total += Number(match[2]);
    }
    return total;
  } catch {
    return undefined;
  }
}

await drain();
for (;;) {
  const left = await load();
  if (left === 0) {
    log('no viewers or streams left');
    break;
  }
  if (left === undefined) {
    log('node does not answer /metrics; not waiting');
    break;
  }
  if (Date.now() >= deadline) {
    log(`drain timeout (${timeoutS} s) with ${left} viewers and streams left`);
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
}
