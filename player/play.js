// @ts-check
/**
 * The /play/{stream} page: a RelaycastPlayer on the page's <video>, the status and stats overlays,
 * and the embed snippet. Query: ?token=… (private streams), ?embed=1 (video only, for iframes),
 * &stats=1 (stats overlay shown in embed mode), ?mode=webrtc|hls (default: auto, WebRTC and HLS
 * when it cannot play), ?playbackToken=… (a private stream's DVR window). A stream that is being
 * recorded gets a DVR button: its recording from up to two hours back, with the video's own
 * controls as the seek bar, and a Live button back. The player is window.relaycastPlayer.
 */
import { RelaycastPlayer } from './relaycast-player.js';

const params = new URLSearchParams(location.search);
const stream = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() ?? '');
const embed = params.get('embed') === '1';
const token = params.get('token') ?? undefined;
const playbackToken = params.get('playbackToken') ?? undefined;
const modeParam = params.get('mode');
const counterOffer = params.get('counterOffer') === '1';
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

const player = new RelaycastPlayer(video, { server: location.origin, stream, token, playbackToken, mode, counterOffer });
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

/**
 * How far behind live, as a viewer of a DVR window reads it: "12 s", "4:05", "1:02:09".
 * @param {number} ms
 */
function behind(ms) {
  const total = Math.round(ms / 1000);
  if (total < 60) return `${total} s`;
  const [h, m, sec] = [Math.floor(total / 3600), Math.floor(total / 60) % 60, total % 60];
  const mmss = `${String(m).padStart(h ? 2 : 1, '0')}:${String(sec).padStart(2, '0')}`;
  return h ? `${h}:${mmss}` : mmss;
}

const MODE_NAMES = { webrtc: 'WebRTC', hls: 'HLS', dvr: 'DVR' };

/** @param {ReturnType<RelaycastPlayer['stats']>} s */
function render(s) {
  const playing = s.state === 'playing';
  const dvr = s.mode === 'dvr';
  $('status').hidden = playing;
  $('status').dataset.state = s.state;
  showStatus(s.stateText);
  $('live').hidden = !playing || dvr;
  // The DVR window: its button while live, when the stream is being recorded; in it, the video's
  // own controls (their seek bar spans the window) and the Live button.
  $('dvr').hidden = dvr || player.dvr === null || s.mode === null;
  $('go-live').hidden = !dvr;
  $('stage').classList.toggle('dvr', dvr);
  if (video.controls !== dvr) video.controls = dvr;
  // How it plays, and how far behind live: "HLS · 1.3 s", "WebRTC", "DVR · 4:05 behind".
  const modeName = s.mode ? MODE_NAMES[s.mode] : '';
  const latency = s.latencyMs === null ? '' : dvr ? `${behind(s.latencyMs)} behind` : `${(s.latencyMs / 1000).toFixed(1)} s`;
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
    mode: modeName || '–',
    latency: s.latencyMs === null ? '–' : `${s.latencyMs.toLocaleString('en')} ms`,
    playingDate: s.playingDate === null ? '–' : new Date(s.playingDate).toLocaleTimeString('en-GB'),
  };
  for (const dd of statsBox.querySelectorAll('dd')) {
    const key = /** @type {HTMLElement} */ (dd).dataset.stat ?? '';
    dd.textContent = shown[key] ?? '–';
  }
}
player.addEventListener('stats', () => render(player.stats()));
player.addEventListener('dvr', () => render(player.stats()));

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
$('dvr').addEventListener('click', () => {
  player.enterDvr().catch((/** @type {Error} */ error) => console.warn('no DVR:', error.message));
});
$('go-live').addEventListener('click', () => player.leaveDvr());

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
