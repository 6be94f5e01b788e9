// Kubernetes preStop hook for origins and edges. The kubelet sends SIGTERM when it returns.
//
// 1. Drain: POST /internal/v1/drain on this node (docker/local-node.mjs) with the cluster
//    secret (RELAYCAST_CLUSTER_SECRET). The node marks itself draining in the registry (balancers
//    stop choosing it, HAProxy's agent-check says `up drain`) and keeps what it carries. It undoes
//    that drain itself once it has shut down, so the next start of the same node id (a StatefulSet
//    pod) is not drained; an operator's `relaycast drain` is left alone. A few tries, each bounded;
//    if they all fail the hook logs it and goes on: it never blocks a shutdown.
// 2. Wait, at most RELAYCAST_PRESTOP_WAIT_S seconds, by RELAYCAST_PRESTOP_ROLE (unset: origin):
//    origin  until no streams are left (shows end; publishers cannot be moved, SIGTERM ends their
//            publishes). Default wait 3540 s.
//    edge    the whole wait, default 10 s: long enough for the balancers, HAProxy and the
//            Service endpoints to stop sending new viewers here. SIGTERM then moves the viewers to
//            other edges (RELAYCAST_DRAIN_TIMEOUT_MS); waiting for them to leave on their own
//            would only hold the rollout.
//    When the node does not answer at all there is nothing to wait for.
// The wait counts from the hook's start; the drain's tries take at most 3 x 3 s + 2 x 1 s
// (RELAYCAST_PRESTOP_REQUEST_TIMEOUT_MS bounds each request, RELAYCAST_PRESTOP_POLL_MS is the
// origin's poll interval). terminationGracePeriodSeconds must cover the wait plus the node's own
// shutdown; the Helm chart sets RELAYCAST_PRESTOP_ROLE and RELAYCAST_PRESTOP_WAIT_S and checks that.
import { localNode } from './local-node.mjs';

const role = process.env.RELAYCAST_PRESTOP_ROLE || 'origin';
const secret = process.env.RELAYCAST_CLUSTER_SECRET;
const pollMs = Math.max(50, nonNegative(process.env.RELAYCAST_PRESTOP_POLL_MS, 2000));
const requestTimeoutMs = Math.max(100, nonNegative(process.env.RELAYCAST_PRESTOP_REQUEST_TIMEOUT_MS, 3000));
const waitS = nonNegative(process.env.RELAYCAST_PRESTOP_WAIT_S, role === 'edge' ? 10 : 3540);
const DRAIN_ATTEMPTS = 3;
const RETRY_MS = 1000;
const started = Date.now();
const deadline = started + waitS * 1000;
const log = (message) => console.log(`prestop (${role}): ${message}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** A non-negative number from the environment, else the default. */
function nonNegative(value, fallback) {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n >= 0 ? n : fallback;
}

/**
 * One HTTP request to the node, given up after requestTimeoutMs (node:http rather than fetch:
 * nothing to load first, so the time limit is the node's, and no keep-alive to wait for).
 */
function request(path, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = localNode.request({ path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, ok: res.statusCode >= 200 && res.statusCode < 300, body });
      });
      res.on('error', fail);
      res.on('close', () => res.complete || fail(new Error('connection closed mid-answer')));
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${requestTimeoutMs} ms`)), requestTimeoutMs);
    function fail(error) {
      clearTimeout(timer);
      reject(error);
    }
    req.on('error', fail);
    req.end();
  });
}

/** 'drained', 'failed' (the node answered, but not 200) or 'unreachable' (no answer at all). */
async function drain() {
  if (!secret) {
    log('RELAYCAST_CLUSTER_SECRET is not set; cannot drain');
    return 'failed';
  }
  let answered = false;
  for (let attempt = 1; attempt <= DRAIN_ATTEMPTS; attempt++) {
    if (attempt > 1) await sleep(RETRY_MS);
    try {
      const res = await request('/internal/v1/drain', { method: 'POST', headers: { authorization: `Bearer ${secret}` } });
      answered = true;
      if (res.ok) {
        log(`drained (${res.body.trim()})`);
        return 'drained';
      }
      log(`drain attempt ${attempt}: HTTP ${res.status} ${res.body.trim().slice(0, 200)}`);
      // Only a server-side failure (the database unreachable) may pass; 401/404 will not.
      if (res.status < 500) break;
    } catch (error) {
      log(`drain attempt ${attempt}: ${error.code ?? error.message}`);
    }
  }
  log('could not drain the node; going on');
  return answered ? 'failed' : 'unreachable';
}

/** The sum of a metric on this node's /metrics; undefined when the node does not answer. */
async function metric(name) {
  try {
    const res = await request('/metrics');
    if (!res.ok) return undefined;
    let total;
    for (const line of res.body.split('\n')) {
      const match = /^(\w+)(?:\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
      if (match?.[1] === name) total = (total ?? 0) + Number(match[2]);
    }
    return total;
  } catch {
    return undefined;
  }
}

if (role !== 'origin' && role !== 'edge') log(`RELAYCAST_PRESTOP_ROLE is "${role}", not origin or edge: waiting as for an origin`);
const drained = await drain();
if (drained === 'unreachable') {
  log('the node does not answer; not waiting');
} else if (role === 'edge') {
  await sleep(deadline - Date.now());
  const waited = ((Date.now() - started) / 1000).toFixed(1);
  const viewers = await metric('relaycast_viewers');
  log(`waited ${waited} s; SIGTERM moves the ${viewers ?? 'unknown number of'} viewers left to other edges`);
} else {
  for (;;) {
    const streams = await metric('relaycast_streams');
    if (streams === 0) {
      log('no streams left');
      break;
    }
    if (streams === undefined) {
      log('the node does not report its streams on /metrics; not waiting');
      break;
    }
    if (Date.now() >= deadline) {
      log(`wait over (${waitS} s) with ${streams} streams left; SIGTERM ends them`);
      break;
    }
    await sleep(Math.min(pollMs, deadline - Date.now()));
  }
}
