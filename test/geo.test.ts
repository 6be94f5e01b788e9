import assert from 'node:assert/strict';
import maxmind, { type CityResponse } from 'maxmind';
import { ConfigError } from '../core/errors.ts';
import { bundledDatabases, GeoLocator } from '../balancer/GeoLocator.ts';
import { parseGeoPins } from '../core/geoPins.ts';
import { TrustedProxies } from '../core/TrustedProxies.ts';

/** Geo lookup: pins, the bundled DB-IP City Lite database (read locally), trusted proxies. */

describe('geo lookup', () => {
  let geo: GeoLocator;
  before(async () => {
    geo = await GeoLocator.open({
      pins: parseGeoPins('127.0.0.2=eu-west, 127.0.0.3/32=us-east, 10.1.0.0/16=35.68:139.69'),
      trustedProxies: TrustedProxies.parse('127.0.0.1, 10.9.0.0/16'),
      defaultRegion: 'fallback',
    });
  });

  it('places pinned CIDRs in their region or at their coordinates', () => {
    assert.deepEqual(geo.locate('127.0.0.2'), { region: 'eu-west', lat: undefined, lon: undefined, source: 'pin' });
    assert.equal(geo.locate('::ffff:127.0.0.3').region, 'us-east', 'IPv4-mapped IPv6 is IPv4');
    const tokyo = geo.locate('10.1.2.3');
    assert.equal(tokyo.lat, 35.68);
    assert.equal(tokyo.lon, 139.69);
  });

  it('looks public addresses up in the bundled database', () => {
    const google = geo.locate('8.8.8.8');
    assert.equal(google.source, 'database');
    assert.equal(google.country, 'US');
    assert.ok(google.lat! > 20 && google.lat! < 50 && google.lon! < -60, `8.8.8.8 in North America: ${google.lat},${google.lon}`);
    const v6 = geo.locate('2001:4860:4860::8888');
    assert.equal(v6.source, 'database');
  });

  it('asks the IPv6 database about IPv6 addresses, not the IPv4 one', async () => {
    // mmdb-lib looks an IPv6 address up in an IPv4-only tree by its first 32 bits: 2001:4860:: as
    // 32.1.72.96, a different network in a different place.
    const v6 = await maxmind.open<CityResponse & { latitude: number; longitude: number }>(bundledDatabases()[1]!);
    for (const ip of ['2001:4860:4860::8888', '2a00:1450:4001::1', '2400:cb00::1']) {
      const record = v6.get(ip)!;
      const found = geo.locate(ip);
      assert.deepEqual([found.lat, found.lon], [record.latitude, record.longitude], ip);
    }
  });

  it('falls back to the default region for private and unparsable addresses', () => {
    assert.deepEqual(geo.locate('192.168.1.1'), { region: 'fallback', source: 'default' });
    assert.deepEqual(geo.locate('not-an-ip'), { region: 'fallback', source: 'default' });
  });

  it('believes X-Forwarded-For only from trusted proxies', () => {
    assert.equal(geo.clientAddress('127.0.0.1', '8.8.8.8'), '8.8.8.8', 'from a trusted proxy');
    assert.equal(geo.clientAddress('203.0.113.9', '8.8.8.8'), '203.0.113.9', 'from anyone else: ignored');
    assert.equal(geo.clientAddress('127.0.0.1', '1.1.1.1, 8.8.8.8, 10.9.1.1'), '8.8.8.8', 'right-most untrusted hop');
    assert.equal(geo.clientAddress('::ffff:127.0.0.1', '8.8.8.8'), '8.8.8.8');
    assert.equal(geo.clientAddress('127.0.0.1', 'garbage'), '127.0.0.1');
    assert.equal(geo.clientAddress('127.0.0.1'), '127.0.0.1');
  });

  it('names the setting of a database it cannot open', async () => {
    await assert.rejects(GeoLocator.open({ databases: [import.meta.filename], defaultRegion: 'x' }), (e) => e instanceof ConfigError && e.field === 'geoDatabase');
  });
});
