import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { stopProcess, track } from './processes.ts';

/**
 * Real Firefox (Debian's ESR), headless, with a fake camera and microphone, driven over WebDriver
 * BiDi by puppeteer-core (no geckodriver). Its pages run the same WHIP/WHEP scripts as Chromium's
 * (kit/browser.ts: publish, play, playbackStats, … take either browser's page).
 *
 * Firefox pairs no loopback ICE candidates: a node it talks to must announce an address of the
 * machine's interface, not 127.0.0.1 (see test/firefox.test.ts).
 */

/**
 * Preferences on top of puppeteer's own test profile (@puppeteer/browsers, firefox.ts: it already
 * turns off app and add-on updates, Normandy, safe browsing, health reports, remote settings and
 * the OpenH264/Widevine plugin download). What a test of media on an offline machine adds:
 */
const PREFS: Record<string, unknown> = {
  // A fake camera and microphone (a moving test picture and a tone), without a permission prompt.
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  // Let a <video> play without a user gesture (0 = allowed), sound or not.
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // No background networking: captive-portal and connectivity probes, region lookup, DNS over
  // HTTPS, system add-on updates, telemetry pings. Offline they only fail, slowly, in the log.
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'network.trr.mode': 5,
  'extensions.systemAddon.update.enabled': false,
  'toolkit.telemetry.server': '',
};

/**
 * How long Firefox may take to start and answer over BiDi. A wait, not a figure: a few seconds on
 * a quiet machine, more on two cores shared with the suite's other browsers and nodes.
 */
const LAUNCH_TIMEOUT_MS = 60_000;

/** How long close() waits for Firefox to quit by itself before it is killed. */
const CLOSE_GRACE_MS = 10_000;

export class TestFirefox {
  readonly #browser: Browser;
  readonly #profile: string;

  private constructor(browser: Browser, profile: string) {
    this.#browser = browser;
    this.#profile = profile;
  }

  /** Starts Firefox (FIREFOX_PATH, default Debian's firefox-esr) with a fresh profile of its own. */
  static async launch(): Promise<TestFirefox> {
    const profile = mkdtempSync(join(tmpdir(), 'relaycast-firefox-'));
    try {
      const browser = await puppeteer.launch({
        browser: 'firefox',
        executablePath: process.env.FIREFOX_PATH ?? '/usr/lib/firefox-esr/firefox-esr',
        headless: true,
        userDataDir: profile,
        extraPrefsFirefox: PREFS,
        timeout: LAUNCH_TIMEOUT_MS,
        // No crash reporter window or report submission if Firefox crashes.
        env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1' },
      });
      const child = browser.process();
      if (child) track(child);
      return new TestFirefox(browser, profile);
    } catch (error) {
      rmSync(profile, { recursive: true, force: true });
      throw error;
    }
  }

  /** A blank page on `baseUrl` (any page of the node; kit/browser.ts's scripts talk WHIP/WHEP from it). */
  async page(baseUrl: string): Promise<Page> {
    const page = await this.#browser.newPage();
    await page.goto(`${baseUrl}/healthz`);
    return page;
  }

  /** Firefox's version, e.g. "firefox/153.0.1". */
  version(): Promise<string> {
    return this.#browser.version();
  }

  /** Quits Firefox (killed if it does not quit within CLOSE_GRACE_MS) and removes its profile. */
  async close(): Promise<void> {
    const child = this.#browser.process();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#browser.close().catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    if (child) await stopProcess(child, CLOSE_GRACE_MS, 'SIGKILL');
    rmSync(this.#profile, { recursive: true, force: true });
  }
}
