/**
 * Relaycast embed: turns every
 *   <div data-relaycast-stream="show" data-relaycast-server="https://host"></div>
 * on the page into (replaces it by) an iframe of https://host/play/show?embed=1. Optional attributes:
 * data-relaycast-token (play token of a private stream), data-relaycast-playback-token (its
 * playback token, for the DVR window of its recording), data-relaycast-stats="1" (stats overlay),
 * data-relaycast-mode="webrtc" or "hls" (default: WebRTC, and HLS when it cannot play).
 * Without data-relaycast-server, the server is the one this script was loaded from.
 * window.RelaycastEmbed.scan() converts divs added later.
 */
(() => {
  const script = document.currentScript;
  const defaultServer = script instanceof HTMLScriptElement && script.src ? new URL(script.src).origin : location.origin;

  function scan(root = document) {
    for (const div of root.querySelectorAll('div[data-relaycast-stream]')) {
      const stream = div.getAttribute('data-relaycast-stream') || '';
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(stream)) {
        console.warn(`relaycast embed: invalid stream name ${JSON.stringify(stream)}`);
        continue;
      }
      const server = (div.getAttribute('data-relaycast-server') || defaultServer).replace(/\/+$/, '');
      const query = new URLSearchParams({ embed: '1' });
      const token = div.getAttribute('data-relaycast-token');
      if (token) query.set('token', token);
      const playbackToken = div.getAttribute('data-relaycast-playback-token');
      if (playbackToken) query.set('playbackToken', playbackToken);
      if (div.getAttribute('data-relaycast-stats') === '1') query.set('stats', '1');
      const mode = div.getAttribute('data-relaycast-mode');
      if (mode === 'webrtc' || mode === 'hls') query.set('mode', mode);
      const iframe = document.createElement('iframe');
      iframe.src = `${server}/play/${stream}?${query}`;
      iframe.title = `${stream} (live)`;
      iframe.allow = 'autoplay; fullscreen; picture-in-picture';
      iframe.allowFullscreen = true;
      iframe.referrerPolicy = 'no-referrer';
      iframe.style.cssText = 'display:block;width:100%;aspect-ratio:16/9;border:0;background:#000';
      // The iframe takes the div's place, and its id and classes, so the site's CSS still applies.
      if (div.id) iframe.id = div.id;
      if (div.className) iframe.className = div.className;
      div.replaceWith(iframe);
    }
  }

  /** @type {any} */ (window).RelaycastEmbed = { scan };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => scan());
  else scan();
})();
