#!/usr/bin/env bash
# Sets up Relaycast on a fresh Debian 12 / Ubuntu machine; safe to run again (it skips what is done).
#
#   bash scripts/setup.sh          what `npm start` needs: ffmpeg, haproxy, the mediasoup worker, npm ci
#   bash scripts/setup.sh --test   also what `npm test` needs: chromium, firefox-esr, prometheus (promtool),
#                                  docker.io, and a running PostgreSQL server on 127.0.0.1:5432
#
# mediasoup's own install downloads a prebuilt worker from GitHub. Machines without that access
# build it here from the npm tarball and Debian's libraries (scripts/mediasoup-offline/, a few
# minutes, cached in ~/.cache/mediasoup-worker); npm ci then skips the download. Relaycast finds
# that binary by itself at run time (or set MEDIASOUP_WORKER_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
case "${1:-}" in
  --test) want_test=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,11s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *)
    echo "setup: unknown option $1 (--test, or --help)" >&2
    exit 2
    ;;
esac

MEDIASOUP_VERSION=$(node -p "require('./package.json').dependencies.mediasoup")

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(ffmpeg haproxy)
[ $want_test = 1 ] && packages+=(chromium prometheus postgresql procps docker-compose)
# test/interop-gstreamer.test.ts: GStreamer's WHIP client (binary whip-client) and the plugins its
# pipelines use (webrtcbin: bad, libnice: nice, vp8enc/opusenc: good/base, x264enc: ugly), `ip netns`
# for its network namespace, and a C compiler for its LD_PRELOAD shim.
[ $want_test = 1 ] && packages+=(simple-whip-client gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice iproute2 gcc libc6-dev)
# test/hls.test.ts: GStreamer's gst-launch-1.0 reads the HLS stream (hlsdemux, qtdemux) and decodes it (avdec_h264: libav).
[ $want_test = 1 ] && packages+=(gstreamer1.0-tools gstreamer1.0-libav)
# test/layers.test.ts shapes a viewer's link: tc (iproute2) for rate and delay, nftables for random
# loss (these machines' kernel has no netem; nft's numgen is built in).
[ $want_test = 1 ] && packages+=(nftables)
# test/firefox.test.ts: Debian's Firefox ESR, driven over WebDriver BiDi (puppeteer-core, no geckodriver).
[ $want_test = 1 ] && packages+=(firefox-esr)
# test/container.test.ts (scripts/container-test.sh): a Docker engine and mmdebstrap to make the
# base images from Debian's archive (no container registry is reachable from these machines).
[ $want_test = 1 ] && packages+=(docker.io mmdebstrap)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt-get)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -z "${MEDIASOUP_WORKER_BIN:-}" ]; then
  log "mediasoup worker $MEDIASOUP_VERSION (built offline once, then cached)"
  MEDIASOUP_WORKER_BIN=$(sh scripts/mediasoup-offline/build-worker.sh "$MEDIASOUP_VERSION" | tail -n 1)
  export MEDIASOUP_WORKER_BIN
fi
log "worker: $MEDIASOUP_WORKER_BIN"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-fund --no-audit --loglevel=error
fi

# The compiled JavaScript bin/relaycast.js runs (npm start and npm test build it again when the
# sources changed; this makes a set-up clone runnable straight away).
log "npm run build"
npm run --silent build

if [ $want_test = 1 ]; then
  # Debian's postgresql package creates cluster "main"; start it if it is not running.
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    version=$(ls /etc/postgresql | sort -n | tail -n 1)
    log "starting PostgreSQL $version"
    sudo_if_needed pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  # The tests connect as postgres over TCP without a password; a stock Debian cluster asks for
  # one, so allow trust from the loopback address only.
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    version=$(ls /etc/postgresql | sort -n | tail -n 1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    log "allowing trust auth from 127.0.0.1 in $hba"
    sudo_if_needed sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    sudo_if_needed pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null
  log "PostgreSQL ready on 127.0.0.1:5432"
fi
log "done"
