import assert from 'node:assert/strict';
import { startRelaycast, type RelaycastProcess } from './helpers/processes.ts';

/** The admin API's first endpoints (stream keys), on a balancer process with the embedded database. */

const ADMIN = 'admin-test-token-0123456789';

describe('admin API: streams and their keys', () => {
  let node: RelaycastProcess;
  const api = (path: string, init: RequestInit & { token?: string | null } = {}) =>
    fetch(`${node.url}/api/v1${path}`, {
      ...init,
      headers: {
        'content-type': 'application/json',
        ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? ADMIN}` }),
      },
    });

  before(async () => {
    node = await startRelaycast({ roles: ['balancer'], env: { RELAYCAST_ADMIN_TOKEN: ADMIN } });
  });
  after(async () => {
    await node?.stop();
  });

  it('creates a stream with a key, URLs and a publish token', async () => {
    const res = await api('/streams', { method: 'POST', body: JSON.stringify({ name: 'show' }) });
    assert.equal(res.status, 201);
    const body = (await res.json()) as Record<string, string>;
    assert.match(body.streamKey!, /^sk_[A-Za-z0-9_-]{40,}$/);
    assert.equal(body.rtmpUrl, `rtmp://127.0.0.1:${node.rtmpPort}/live/${body.streamKey}`);
    assert.equal(body.whipUrl, `${node.url}/whip/show`);
    assert.equal(body.whepUrl, `${node.url}/whep/show`);
    assert.equal(body.publishToken!.split('.').length, 3, 'a JWT');

    const rotated = await api('/streams/show/key', { method: 'POST' });
    assert.equal(rotated.status, 201);
    assert.notEqual(((await rotated.json()) as { streamKey: string }).streamKey, body.streamKey);
    assert.equal((await api('/streams/show/key', { method: 'DELETE' })).status, 204);
  });

  it('refuses a missing or wrong admin token with 401, bad input with 400, unknown streams with 404', async () => {
    for (const token of [null, 'wrong-token-0123456789']) {
      const res = await api('/streams', { method: 'POST', body: JSON.stringify({ name: 'x' }), token });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('content-type') ?? '', /problem\+json/);
    }
    assert.equal((await api('/streams', { method: 'POST', body: JSON.stringify({ name: 'bad name' }) })).status, 400);
    assert.equal((await api('/streams', { method: 'POST', body: JSON.stringify({ name: 'ok', extra: 1 }) })).status, 400);
    assert.equal((await api('/streams', { method: 'POST', body: '{"name":' })).status, 400);
    assert.equal((await api('/streams/nobody/key', { method: 'POST' })).status, 404);
    assert.equal((await fetch(`${node.url}/healthz`)).status, 200);
  });
});
