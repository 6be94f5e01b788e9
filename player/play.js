// @ts-check
/**
 * The /play/{stream} page: a RelaycastPlayer on the page's <video>, the status and stats overlays,
 * and the embed snippet. Query: ?token=… (private streams), ?embed=1 (video only, for iframes),
 * &stats=1 (stats overlay shown in embed mode), ?mode=webrtc|hls (default: auto, WebRTC and HLS
 * when it cannot play). The player is window.relaycastPlayer.
 */
import { RelaycastPlayer } from './relaycast-player.js';

const params = new URLSearchParams(location.search);
const stream = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() ?? '');
const embed = params.get('embed') === '1';
const token = params.get('token') ?? undefined;
const modeParam = params.get('mode');
/** @type {import('./relaycast-player.js').PlayerMode} */
const mode = modeParam === 'webrtc' || modeParam === 'hls' ? modeParam : 'auto';

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const video = /** @type {HTMLVideoElement} */ ($('video'));
const statsBox = $('stats');

document.title = `${stream} · Relaycast`;
$('title').textContent = stream;
document.body.classList.toggle('embed', embed);
statsBox.hidden = embed ? params.get('stats') !== '1' : localStorage.getItem('relaycast-stats') === 'hidden';
$('embed-code').textContent =
  `<div data-relaycast-stream="${stream}" data-relaycast-server="${location.origin}"></div>\n` +
  `<script src="${location.origin}/player/embed.js"></script>`;

const player = new RelaycastPlayer(video, { server: location.origin, stream, token, mode });
/** @type {any} */ (window).relaycastPlayer = player;

/**
 * The status line, re-made only when it changed (so that a viewer can select and copy it). A flag
 * it names (--announced-ip) stays on one line, as it is typed.
 * @param {string} text
 */
function showStatus(text) {
  const line = $('status-text');
  if (line.textContent === text) return;
  line.replaceChildren(...text.split(/(--[a-z][a-z-]*)/).map((part, i) => (i % 2 ? Object.assign(document.createElement('code'), { textContent: part }) : part)));
}

/** @param {ReturnType<RelaycastPlayer['stats']>} s */
function render(s) {
  const playing = s.state === 'playing';
  $('status').hidden = playing;
  $('status').dataset.state = s.state;
  showStatus(s.stateText);
  $('live').hidden = !playing;
  // How it plays, and over HLS how far behind live: "HLS · 1.3 s", "WebRTC".
  const modeName = s.mode === 'hls' ? 'HLS' : s.mode === 'webrtc' ? 'WebRTC' : '';
  const latency = s.latencyMs === null ? '' : `${(s.latencyMs / 1000).toFixed(1)} s`;
  $('mode').hidden = !modeName;
  $('mode').dataset.mode = s.mode ?? '';
  $('mode').textContent = latency ? `${modeName} · ${latency}` : modeName;
  $('mode').title = s.mode === 'hls' && player.failure ? `HLS, because WebRTC could not play: ${player.failure.reason}` : '';
  // Media could not connect: the reason is the status text; the Retry button and, for support,
  // what the edge offered and what this browser tried.
  $('retry').hidden = s.state !== 'failed';
  $('failure').hidden = player.failure === null;
  const details = player.failure ? JSON.stringify(player.failure, null, 2) : '';
  if ($('failure-details').textContent !== details) $('failure-details').textContent = details; // a selection survives the next render
  /** @type {Record<string, string>} */
  const shown = {
    stateText: s.state === 'failed' ? 'failed' : s.stateText, // the reason is in the status below
    resolution: s.width ? `${s.width}×${s.height}` : '–',
    fps: playing ? String(s.fps) : '–',
    bitrate: playing ? `${s.bitrateKbps.toLocaleString('en')} kbit/s` : '–',
    rtt: s.rttMs === null ? '–' : `${s.rttMs} ms`,
    framesDropped: String(s.framesDropped),
    videoCodec: s.videoCodec?.replace(/^video\//, '') ?? '–',
    layer: s.layer === null ? '–' : `${player.layers().find((l) => l.id === s.layer)?.label ?? s.layer} (${s.layerMode})`,
    downlink: s.downlinkKbps === null ? '–' : `${s.downlinkKbps.toLocaleString('en')} kbit/s`,
    edge: s.edge ?? '–',
    mode: s.mode === 'hls' ? 'HLS' : s.mode === 'webrtc' ? 'WebRTC' : '–',
    latency: s.latencyMs === null ? '–' : `${s.latencyMs.toLocaleString('en')} ms`,
  };
  for (const dd of statsBox.querySelectorAll('dd')) {
    const key = /** @type {HTMLElement} */ (dd).dataset.stat ?? '';
    dd.textContent = shown[key] ?? '–';
  }
}
player.addEventListener('stats', () => render(player.stats()));

// The quality menu: Auto and each layer of a simulcast stream (hidden for a single-layer stream).
const quality = /** @type {HTMLSelectElement} */ ($('quality'));
player.addEventListener('layers', () => {
  const layers = player.layers();
  $('quality-box').hidden = layers.length < 2;
  quality.replaceChildren(new Option('Auto', 'auto'), ...layers.map((l) => new Option(l.bitrateKbps ? `${l.label} · ${l.bitrateKbps.toLocaleString('en')} kbit/s` : l.label, l.id)));
  quality.value = player.quality;
});
quality.addEventListener('change', () => {
  player.selectQuality(quality.value).catch((/** @type {Error} */ error) => console.warn('quality not changed:', error.message));
});

$('retry').addEventListener('click', () => player.retry());

// Autoplay is only allowed muted; sound needs a click.
const unmute = $('unmute');
unmute.addEventListener('click', () => {
  video.muted = !video.muted;
  void video.play().catch(() => undefined);
  unmute.textContent = video.muted ? 'Unmute' : 'Mute';
});
$('toggle-stats').addEventListener('click', () => {
  statsBox.hidden = !statsBox.hidden;
  if (!embed) localStorage.setItem('relaycast-stats', statsBox.hidden ? 'hidden' : 'shown');
});
$('fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) void document.exitFullscreen();
  else void $('stage').requestFullscreen().catch(() => undefined);
});
// Leaving the page ends the session on the edge at once instead of after its ICE timeout.
addEventListener('pagehide', () => player.stop());
addEventListener('pageshow', (event) => {
  if (event.persisted) player.start(); // back/forward cache restored the page
});

player.start();
