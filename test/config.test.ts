import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { runRelaycast } from './helpers/processes.ts';

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
});
