import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { runRelaycast } from '../kit/relaycast.ts';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error;
  }
  assert.fail('expected a ConfigError');
}

describe('config', () => {
  it('has defaults that run `all` with nothing set', () => {
    const config = loadConfig({ roles: ['all'], env: {} });
    assert.deepEqual(config.roles, ['origin', 'edge', 'balancer']);
    assert.equal(config.httpPort, 8080);
    assert.equal(config.publicUrl, 'http://127.0.0.1:8080');
    assert.equal(config.region, 'default');
    assert.equal(config.databaseUrl, undefined);
    assert.match(config.dataDir, /\/data$/);
    assert.ok(config.workers >= 1);
  });

  it('takes flags over environment over config file over defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-config-'));
    const file = join(dir, 'relaycast.json');
    writeFileSync(file, JSON.stringify({ httpPort: 7000, region: 'eu-west', lat: 48.8 }));
    const config = loadConfig({
      roles: ['edge'],
      configFile: file,
      env: { RELAYCAST_REGION: 'us-east', RELAYCAST_LON: '2.3', DATABASE_URL: 'postgres://db/relaycast' },
      flags: { region: 'ap-south' },
    });
    assert.equal(config.httpPort, 7000);
    assert.equal(config.lat, 48.8);
    assert.equal(config.lon, 2.3);
    assert.equal(config.region, 'ap-south');
    assert.equal(config.databaseUrl, 'postgres://db/relaycast');
    assert.deepEqual(config.roles, ['edge']);
  });

  it('names the field of a bad value, wherever it came from', () => {
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: { RELAYCAST_HTTP_PORT: '70000' } })).field, 'httpPort');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: {}, flags: { lat: '91' } })).field, 'lat');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: { DATABASE_URL: 'mysql://x' } })).field, 'databaseUrl');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: { RELAYCAST_ANNOUNCED_IP: 'example.com' } })).field, 'announcedIp');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: { RELAYCAST_ADMIN_TOKEN: 'short' } })).field, 'adminToken');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: { RELAYCAST_HEARTBEAT_MS: '5000', RELAYCAST_NODE_TTL_MS: '6000' } })).field, 'nodeTtlMs');
    assert.equal(configError(() => loadConfig({ roles: ['cdn'], env: {} })).field, 'roles');
  });

  it('parses lists once: trusted proxies, geo pins, ICE servers, geo databases', () => {
    const config = loadConfig({
      roles: ['balancer'],
      env: {
        RELAYCAST_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.7',
        RELAYCAST_GEO_PINS: '127.0.0.2=eu-west,10.1.0.0/16=35.68:139.69,2001:db8::/32=us-east',
        RELAYCAST_ICE_SERVERS: 'stun:stun.example.net:3478,turn:alice:s3cret@turn.example.net:3478?transport=tcp',
        RELAYCAST_GEO_DATABASE: import.meta.filename,
      },
    });
    assert.equal(config.trustedProxies.toString(), '10.0.0.0/8,192.0.2.7/32');
    assert.equal(config.trustedProxies.clientAddress('192.0.2.7', '8.8.8.8'), '8.8.8.8', 'a single address is a /32');
    assert.deepEqual(
      config.geoPins.map(({ cidr, region, lat, lon }) => ({ cidr, region, lat, lon })),
      [
        { cidr: '127.0.0.2/32', region: 'eu-west', lat: undefined, lon: undefined },
        { cidr: '10.1.0.0/16', region: undefined, lat: 35.68, lon: 139.69 },
        { cidr: '2001:db8::/32', region: 'us-east', lat: undefined, lon: undefined },
      ],
    );
    assert.deepEqual(config.iceServers, [
      { url: 'stun:stun.example.net:3478' },
      { url: 'turn:turn.example.net:3478?transport=tcp', username: 'alice', credential: 's3cret' },
    ]);
    assert.deepEqual(config.geoDatabase, [import.meta.filename]);
    const behindHaproxy = loadConfig({ roles: ['balancer'], env: { RELAYCAST_HAPROXY_BIN: '/usr/sbin/haproxy' } });
    assert.equal(behindHaproxy.trustedProxies.toString(), '127.0.0.1/32,::1/128', 'the balancer believes its own HAProxy');
  });

  it('names the setting of a bad list entry and what is wrong with it', () => {
    const bad = (env: Record<string, string>) => configError(() => loadConfig({ roles: ['all'], env }));
    let error = bad({ RELAYCAST_TRUSTED_PROXIES: '10.0.0.0/8,nope' });
    assert.equal(error.field, 'trustedProxies');
    assert.match(error.message, /nope is not an address or CIDR/);
    error = bad({ RELAYCAST_GEO_PINS: '300.0.0.0/8=eu' });
    assert.equal(error.field, 'geoPins');
    assert.match(error.message, /300\.0\.0\.0\/8/);
    assert.equal(bad({ RELAYCAST_GEO_PINS: '10.0.0.0/8=Not A Region' }).field, 'geoPins');
    assert.equal(bad({ RELAYCAST_GEO_PINS: '10.0.0.0/8=95:10' }).field, 'geoPins', 'latitude out of range');
    assert.equal(bad({ RELAYCAST_ICE_SERVERS: 'http://stun.example.net' }).field, 'iceServers');
    error = bad({ RELAYCAST_GEO_DATABASE: '/nonexistent/city.mmdb' });
    assert.equal(error.field, 'geoDatabase');
    assert.match(error.message, /\/nonexistent\/city\.mmdb does not exist/);
    assert.equal(bad({ RELAYCAST_POLICY: 'fastest' }).field, 'policy');
  });

  it('takes the RTMP ladder as off (the default) or picture heights, and refuses anything else', () => {
    assert.deepEqual(loadConfig({ roles: ['origin'], env: {} }).rtmpLadder, [], 'off by default');
    assert.deepEqual(loadConfig({ roles: ['origin'], env: { RELAYCAST_RTMP_LADDER: 'off' } }).rtmpLadder, []);
    assert.deepEqual(loadConfig({ roles: ['origin'], env: { RELAYCAST_RTMP_LADDER: '180,720,360' } }).rtmpLadder, [720, 360, 180], 'highest first');
    assert.deepEqual(loadConfig({ roles: ['origin'], env: { RELAYCAST_RTMP_LADDER: '720,360,180' }, flags: { rtmpLadder: '1080,540' } }).rtmpLadder, [1080, 540], 'the flag wins');
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-config-'));
    writeFileSync(join(dir, 'ladder.json'), JSON.stringify({ rtmpLadder: '540,270' }));
    assert.deepEqual(loadConfig({ roles: ['origin'], env: {}, configFile: join(dir, 'ladder.json') }).rtmpLadder, [540, 270]);
    for (const bad of ['720', '720,360,180,90', '721,360', '720,640', '4320,2160', 'on', '720p,360p']) {
      const error = configError(() => loadConfig({ roles: ['origin'], env: { RELAYCAST_RTMP_LADDER: bad } }));
      assert.equal(error.field, 'rtmpLadder', bad);
    }
  });

  it('takes the egress capacity in bits/s with k, M or G, 1 Gbit/s by default, and refuses what looks like another unit', () => {
    assert.equal(loadConfig({ roles: ['edge'], env: {} }).egressCapacity, 1e9);
    assert.equal(loadConfig({ roles: ['edge'], env: { RELAYCAST_EGRESS_CAPACITY: '10G' } }).egressCapacity, 1e10);
    assert.equal(loadConfig({ roles: ['edge'], env: {}, flags: { egressCapacity: '2.5g' } }).egressCapacity, 2.5e9);
    assert.equal(loadConfig({ roles: ['edge'], env: { RELAYCAST_EGRESS_CAPACITY: '800M' } }).egressCapacity, 8e8);
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-config-'));
    writeFileSync(join(dir, 'egress.json'), JSON.stringify({ egressCapacity: 40_000_000 }));
    assert.equal(loadConfig({ roles: ['edge'], env: {}, configFile: join(dir, 'egress.json') }).egressCapacity, 4e7, 'a number in a config file');
    // 1000 would be 1 kbit/s (meant as Mbit/s?): below 1M is refused rather than taken.
    for (const bad of ['1000', '10 Gbps', 'fast', '-1G', '2000G']) {
      const error = configError(() => loadConfig({ roles: ['edge'], env: { RELAYCAST_EGRESS_CAPACITY: bad } }));
      assert.equal(error.field, 'egressCapacity', bad);
    }
  });

  it('takes HAProxy\'s RTMP port as off (the default) or a port apart from HTTP\'s and this origin\'s RTMP', () => {
    assert.equal(loadConfig({ roles: ['balancer'], env: {} }).haproxyRtmpPort, 0, 'off by default');
    assert.equal(loadConfig({ roles: ['balancer'], env: { RELAYCAST_HAPROXY_RTMP_PORT: '1935' } }).haproxyRtmpPort, 1935, 'a balancer alone may take 1935');
    assert.equal(loadConfig({ roles: ['all'], env: { RELAYCAST_HAPROXY_RTMP_PORT: '1936' } }).haproxyRtmpPort, 1936);
    for (const env of [{ RELAYCAST_HAPROXY_RTMP_PORT: '1935' }, { RELAYCAST_HAPROXY_RTMP_PORT: '8080', RELAYCAST_HAPROXY_BIND: '0.0.0.0:8080' }, { RELAYCAST_HAPROXY_RTMP_PORT: '70000' }]) {
      assert.equal(configError(() => loadConfig({ roles: ['all'], env })).field, 'haproxyRtmpPort', JSON.stringify(env));
    }
  });

  it('takes TLS as a certificate and key file together, makes the public URL https://, and allows a plain port only beside TLS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-config-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    writeFileSync(cert, 'not checked here: the node reads and matches the pair when it starts');
    writeFileSync(key, '');
    const tls = loadConfig({ roles: ['edge'], env: { RELAYCAST_TLS_CERT: cert, RELAYCAST_TLS_KEY: key, RELAYCAST_HTTP_PLAIN_PORT: '8081' } });
    assert.equal(tls.publicUrl, 'https://127.0.0.1:8080');
    assert.equal(tls.httpPlainPort, 8081);
    assert.equal(configError(() => loadConfig({ roles: ['edge'], env: { RELAYCAST_TLS_CERT: cert } })).field, 'tlsKey');
    assert.equal(configError(() => loadConfig({ roles: ['edge'], env: { RELAYCAST_TLS_KEY: key } })).field, 'tlsCert');
    assert.match(configError(() => loadConfig({ roles: ['edge'], env: { RELAYCAST_TLS_CERT: join(dir, 'missing.pem'), RELAYCAST_TLS_KEY: key } })).message, /missing\.pem does not exist/);
    assert.equal(configError(() => loadConfig({ roles: ['edge'], env: { RELAYCAST_HTTP_PLAIN_PORT: '8081' } })).field, 'httpPlainPort', 'a plain port without TLS');
    assert.equal(configError(() => loadConfig({ roles: ['edge'], env: { RELAYCAST_TLS_CERT: cert, RELAYCAST_TLS_KEY: key, RELAYCAST_HTTP_PLAIN_PORT: '8080' } })).field, 'httpPlainPort', 'the same port twice');
  });

  it('refuses unknown keys and broken JSON in the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-config-'));
    writeFileSync(join(dir, 'typo.json'), JSON.stringify({ htpPort: 80 }));
    writeFileSync(join(dir, 'broken.json'), '{ "httpPort": ');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: {}, configFile: join(dir, 'typo.json') })).field, 'htpPort');
    assert.equal(configError(() => loadConfig({ roles: ['all'], env: {}, configFile: join(dir, 'broken.json') })).field, 'config');
  });

  it('makes the CLI exit non-zero with a message naming the bad field', async () => {
    const child = runRelaycast(['all', '--http-port', 'eighty'], {});
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 2);
    assert.match(stderr, /invalid configuration: httpPort \(--http-port \/ RELAYCAST_HTTP_PORT\)/);

    const fromEnv = runRelaycast(['edge'], { RELAYCAST_REGION: 'Not A Region' });
    let envStderr = '';
    fromEnv.stderr!.on('data', (d) => (envStderr += d));
    const [envCode] = await once(fromEnv, 'exit');
    assert.equal(envCode, 2);
    assert.match(envStderr, /region \(--region \/ RELAYCAST_REGION\)/);
  });

  it('exits 2 naming flag and variable for every list setting it cannot parse, with no stack trace', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--trusted-proxies', '10.0.0.0/8,nope'], /trustedProxies \(--trusted-proxies \/ RELAYCAST_TRUSTED_PROXIES\): nope is not an address or CIDR/],
      [['--geo-pins', '10.0.0.0/8=Not A Region'], /geoPins \(--geo-pins \/ RELAYCAST_GEO_PINS\): "10\.0\.0\.0\/8=Not A Region"/],
      [['--ice-servers', 'stun.example.net'], /iceServers \(--ice-servers \/ RELAYCAST_ICE_SERVERS\)/],
      [['--geo-database', '/nonexistent/city.mmdb'], /geoDatabase \(--geo-database \/ RELAYCAST_GEO_DATABASE\)/],
      [['--rtmp-ladder', '720,700'], /rtmpLadder \(--rtmp-ladder \/ RELAYCAST_RTMP_LADDER\): 720 and 700 are too close/],
    ];
    for (const [flags, message] of cases) {
      const child = runRelaycast(['balancer', ...flags], {});
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const [code] = await once(child, 'exit');
      assert.equal(code, 2, `${flags.join(' ')}: ${stderr}`);
      assert.match(stderr, message);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    }
  });
});
