import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseGeoPins } from '../core/geoPins.ts';
import { parseServerIds, renderHaproxy, serverKey } from '../balancer/HaproxyConfig.ts';
import type { NodeSnapshot } from '../balancer/policies.ts';

/** HAProxy config rendering, checked by HAProxy itself (`haproxy -c`). */

function edge(id: string, region: string, lat: number, lon: number, port: number): NodeSnapshot {
  return { id, roles: ['edge'], region, lat, lon, publicUrl: `http://127.0.0.1:${port}`, capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set(), agentPort: port + 1 };
}

function origin(id: string, rtmpPort: number | null, draining = false): NodeSnapshot {
  return { id, roles: ['origin'], region: 'eu-west', lat: 48.8, lon: 2.3, publicUrl: `http://127.0.0.1:${8000 + (rtmpPort ?? 0)}`, capacity: 100, viewers: 0, cpu: 0, draining, streams: new Set(), rtmpUrl: rtmpPort ? `rtmp://127.0.0.1:${rtmpPort}/live` : null };
}

describe('HAProxy config rendering', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-haproxy-'));
  const layout = { nodeId: 'b1', bind: '127.0.0.1:18080', mapPath: join(dir, 'geo.map'), runtimeSocket: join(dir, 'runtime.sock'), serverStateFile: join(dir, 'state'), balancer: '127.0.0.1:8080', defaultRegion: 'eu-west' };
  const nodes = [edge('e1', 'eu-west', 48.8, 2.3, 9001), edge('e2', 'eu-west', 48.9, 2.4, 9003), edge('u1', 'us-east', 38.9, -77, 9005), edge('j1', 'ap-east', 35.7, 139.7, 9007)];

  it('renders a backend per region with the next-nearest region as backup, and a geo map', () => {
    const { cfg, map: rendered, regions } = renderHaproxy(nodes, parseGeoPins('10.0.0.0/8=us-east,192.0.2.0/24=35.6:139.6,198.51.100.0/24=nowhere'), layout);
    const map = rendered.toString();
    assert.deepEqual(regions, ['ap-east', 'eu-west', 'us-east']);
    assert.match(cfg, /backend be_eu-west[\s\S]*server e1 127\.0\.0\.1:9001 id 1 check inter 1s fall 2 rise 2 weight 100 agent-check agent-port 9002 agent-inter 1s\n/);
    assert.match(cfg, /backend be_eu-west[\s\S]*server u1\.backup 127\.0\.0\.1:9005 id 3 check inter 1s fall 2 rise 2 weight 100 agent-check agent-port 9006 agent-inter 1s backup/, 'us-east backs up eu-west');
    assert.match(cfg, /map_ip\([^,]+geo\.map,eu-west\)/);
    assert.match(map, /^10\.0\.0\.0\/8 us-east$/m);
    assert.match(map, /^192\.0\.2\.0\/24 ap-east$/m, 'coordinates go to the nearest region');
    assert.doesNotMatch(map, /198\.51\.100/, 'a region without edges is left out');
    assert.equal(renderHaproxy(nodes, [], layout).cfg, renderHaproxy([...nodes].reverse(), [], layout).cfg, 'the same snapshot renders the same text');
  });

  it('keeps each server\'s id (its place on the hash ring) and gives a newcomer the lowest free one', () => {
    const first = renderHaproxy(nodes, [], layout);
    const held = new Map(first.servers.map((s) => [serverKey(s.backend, s.name), s.id]));
    assert.deepEqual(parseServerIds(first.cfg), held, 'the ids can be read back from the config on disk');
    // e1 leaves, e0 and e3 join: e2 keeps its id, e0 takes e1's freed id, e3 the next free one.
    const next = renderHaproxy([...nodes.filter((n) => n.id !== 'e1'), edge('e0', 'eu-west', 48.7, 2.2, 9011), edge('e3', 'eu-west', 48.7, 2.2, 9013)], [], layout, new Map([...held].filter(([key]) => key !== 'be_eu-west/e1')));
    const ids = (cfg: string) => Object.fromEntries([...parseServerIds(cfg)].filter(([key]) => key.startsWith('be_eu-west/')));
    assert.deepEqual(ids(first.cfg), { 'be_eu-west/e1': 1, 'be_eu-west/e2': 2, 'be_eu-west/u1.backup': 3 });
    assert.deepEqual(ids(next.cfg), { 'be_eu-west/e0': 1, 'be_eu-west/e2': 2, 'be_eu-west/e3': 4, 'be_eu-west/u1.backup': 3 });
    // A server still held (being deleted) keeps its id taken.
    const third = renderHaproxy(nodes, [], layout, new Map([['be_eu-west/gone', 1]]));
    assert.equal(third.servers.find((s) => s.name === 'e1')?.id, 2);
  });

  it('renders a shape that changes with the regions, not with the servers', () => {
    const base = renderHaproxy(nodes, [], layout);
    assert.doesNotMatch(base.shape, /^\s+server (?!balancer )/m, 'no region servers in the shape');
    assert.match(base.shape, /backend be_ap-east/);
    const moreEdges = renderHaproxy([...nodes, edge('e9', 'eu-west', 48, 2, 9021)], [], layout);
    assert.notEqual(moreEdges.cfg, base.cfg);
    assert.equal(moreEdges.shape, base.shape, 'an edge joining a region is a server change');
    const newRegion = renderHaproxy([...nodes, edge('s1', 'sa-east', -23.5, -46.6, 9023)], [], layout);
    assert.notEqual(newRegion.shape, base.shape, 'a new region is a new backend');
    assert.notEqual(renderHaproxy(nodes, [], { ...layout, defaultRegion: 'us-east' }).shape, base.shape, 'another default region');
    assert.notEqual(renderHaproxy(nodes, [], { ...layout, bind: '127.0.0.1:18081' }).shape, base.shape, 'another bind');
  });

  it('keeps a region whose last edge left (same shape), served by the nearest region\'s edges as backups', () => {
    const base = renderHaproxy(nodes, parseGeoPins('192.0.2.0/24=ap-east'), layout);
    const withoutAp = nodes.filter((n) => n.id !== 'j1');
    const dropped = renderHaproxy(withoutAp, parseGeoPins('192.0.2.0/24=ap-east'), layout);
    assert.notEqual(dropped.shape, base.shape, 'without kept regions, the region goes (a reload)');
    const kept = renderHaproxy(withoutAp, parseGeoPins('192.0.2.0/24=ap-east'), layout, undefined, undefined, base.sites);
    assert.equal(kept.shape, base.shape, 'kept: the same shape, so no reload');
    assert.deepEqual(kept.regions, ['ap-east', 'eu-west', 'us-east']);
    const apServers = kept.servers.filter((s) => s.backend === 'be_ap-east').map((s) => `${s.name}${s.backup ? ' (backup)' : ''}`);
    // Tokyo's nearest of Paris and Washington is Paris (9,700 km against 10,900).
    assert.deepEqual(apServers, ['e1.backup (backup)', 'e2.backup (backup)'], 'the nearest region\'s edges serve it');
    assert.doesNotMatch(kept.map.toString(), /ap-east/, 'the map sends no one to a region without edges');
    assert.deepEqual([...kept.sites.keys()].sort(), ['ap-east', 'eu-west', 'us-east'], 'it stays kept at the next render');
    // No edge left anywhere: the backends stay, with no servers (HAProxy answers their 503 as a problem).
    const none = renderHaproxy([], [], layout, undefined, undefined, base.sites);
    assert.equal(none.shape, base.shape);
    assert.equal(none.servers.length, 0);
    assert.match(none.cfg, /backend be_eu-west[\s\S]*http-error status 503 content-type application\/problem\+json/);
  });

  it('sends RTMP (TCP) to the origins that take it, a draining one at weight 0, when it has an RTMP bind', () => {
    const origins = [origin('o2', 19352, true), origin('o1', 19351), origin('o3', null)];
    assert.doesNotMatch(renderHaproxy([...nodes, ...origins], [], layout).cfg, /rtmp/, 'no RTMP bind, no RTMP section');
    const rtmpLayout = { ...layout, rtmpBind: '127.0.0.1:11935' };
    const { cfg, shape, servers } = renderHaproxy([...nodes, ...origins], [], rtmpLayout);
    assert.match(cfg, /defaults\n\s+mode tcp[\s\S]*frontend rtmp_in\n\s+bind 127\.0\.0\.1:11935\n\s+default_backend rtmp_origins\n\nbackend rtmp_origins\n\s+[\s\S]*balance leastconn/);
    assert.match(cfg, /\n {4}server o1 127\.0\.0\.1:19351 id 1 check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions weight 100\n {4}server o2 127\.0\.0\.1:19352 id 2 check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions weight 0\n/);
    assert.doesNotMatch(cfg, /server o3 /, 'an origin without RTMP is left out');
    assert.deepEqual(servers.filter((s) => s.rtmp).map((s) => [s.backend, s.name, s.drain]), [['rtmp_origins', 'o1', false], ['rtmp_origins', 'o2', true]]);
    assert.equal(renderHaproxy([...nodes, origin('o1', 19351)], [], rtmpLayout).shape, shape, 'origins coming and going are server changes');
    assert.notEqual(renderHaproxy(nodes, [], layout).shape, shape, 'the RTMP frontend is part of the shape');
    assert.equal(parseServerIds(cfg).get('rtmp_origins/o2'), 2);
  });

  it('renders the node map for /n/{node} paths, and TLS to edges with https:// public URLs (checked, with SNI for a name)', () => {
    const https = (id: string, url: string, announcedIp = '192.0.2.10'): NodeSnapshot => ({ ...edge(id, 'eu-west', 48.8, 2.3, 0), publicUrl: url, agentPort: null, announcedIp });
    const set = [https('a', 'https://edge-a.example.com:8443'), https('b', 'https://127.0.0.1:9443'), https('c', 'http://localhost:9080'), origin('o1', null), https('d', 'https://[::1]')];
    const { cfg, nodeMap } = renderHaproxy(set, [], { ...layout, nodeMapPath: join(dir, 'nodes.map'), caFile: '/etc/ssl/ca.pem' });
    assert.deepEqual(nodeMap.trim().split('\n'), [
      'a https|192.0.2.10|8443|edge-a.example.com',
      'b https|127.0.0.1|9443|',
      'c http|127.0.0.1|9080|localhost',
      'd https|::1|443|',
      'o1 http|127.0.0.1|8000|',
    ]);
    assert.match(cfg, /server a edge-a\.example\.com:8443 id \d+ check .* ssl verify required ca-file \/etc\/ssl\/ca\.pem sni str\(edge-a\.example\.com\) check-sni edge-a\.example\.com/);
    assert.match(cfg, /server b 127\.0\.0\.1:9443 id \d+ check .* ssl verify required ca-file \/etc\/ssl\/ca\.pem( backup)?\n/, 'no SNI for an address');
    assert.match(cfg, /server c localhost:9080 id \d+ check inter 1s fall 2 rise 2 weight 100( backup)?\n/, 'plain HTTP to a plain edge');
  });

  it('passes haproxy -c, with edges and with none, with origins and RTMP', () => {
    const pem = join(dir, 'tls.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pem, '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=test'], { stdio: 'pipe' });
    writeFileSync(pem, readFileSync(join(dir, 'cert.pem'), 'utf8') + readFileSync(pem, 'utf8'));
    const tls = { nodeMapPath: join(dir, 'nodes.map'), tlsCrt: pem, balancerTls: true, pinSessions: true };
    for (const [set, extra] of [[nodes, {}], [[], {}], [[...nodes, origin('o1', 19351), origin('o2', 19352, true)], { rtmpBind: '127.0.0.1:11935' }], [[], { rtmpBind: '127.0.0.1:11935' }], [[...nodes, origin('o1', 19351)], tls], [[], tls]] as const) {
      // Also with every region kept (their edges gone: backends with backups only, or no servers).
      for (const kept of [new Map(), renderHaproxy(nodes, [], layout).sites]) {
        const { cfg, map, nodeMap } = renderHaproxy(set, parseGeoPins('10.0.0.0/8=us-east'), { ...layout, ...extra }, undefined, undefined, kept);
        writeFileSync(layout.mapPath, map);
        writeFileSync(join(dir, 'nodes.map'), nodeMap);
        writeFileSync(join(dir, 'haproxy.cfg'), cfg);
        execFileSync('haproxy', ['-c', '-q', '-f', join(dir, 'haproxy.cfg')], { stdio: 'pipe' });
      }
    }
  });
});
