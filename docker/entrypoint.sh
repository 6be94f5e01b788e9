#!/bin/sh
# The image's entrypoint (under tini, which reaps ffmpeg and HAProxy children and forwards signals).
#
#   docker run IMAGE origin edge --region eu   runs `relaycast origin edge --region eu`
#   docker run IMAGE drain <node id>           any relaycast command: origin, edge, balancer, all,
#                                              token, drain, undrain, or a flag (--help)
#   docker run IMAGE sh                        anything else runs as given
#
# Per-pod port blocks (the Helm chart's portRange mode, a StatefulSet): when
# RELAYCAST_PORT_BLOCK_SIZE is set, pod N (from RELAYCAST_POD_INDEX, else the number at the end of
# the host name, which is the pod name) takes the WebRTC ports
#   RELAYCAST_PORT_BLOCK_BASE + N*SIZE ... RELAYCAST_PORT_BLOCK_BASE + (N+1)*SIZE - 1
# and, when RELAYCAST_ANNOUNCED_IPS lists addresses (comma-separated), the N-th of them as its
# announced IP, with http://<that address>:<http port> as its public URL unless
# RELAYCAST_PUBLIC_URL is set.
set -eu

if [ -n "${RELAYCAST_PORT_BLOCK_SIZE:-}" ]; then
  host=${HOSTNAME:-}
  index=${RELAYCAST_POD_INDEX:-${host##*-}}
  case "$index" in
    '' | *[!0-9]*)
      echo "entrypoint: RELAYCAST_PORT_BLOCK_SIZE is set but the pod index is unknown (set RELAYCAST_POD_INDEX, or run in a StatefulSet)" >&2
      exit 2
      ;;
  esac
  base=${RELAYCAST_PORT_BLOCK_BASE:-40000}
  RELAYCAST_RTC_MIN_PORT=$((base + index * RELAYCAST_PORT_BLOCK_SIZE))
  RELAYCAST_RTC_MAX_PORT=$((RELAYCAST_RTC_MIN_PORT + RELAYCAST_PORT_BLOCK_SIZE - 1))
  export RELAYCAST_RTC_MIN_PORT RELAYCAST_RTC_MAX_PORT
  if [ -n "${RELAYCAST_ANNOUNCED_IPS:-}" ]; then
    ip=$(printf '%s\n' "$RELAYCAST_ANNOUNCED_IPS" | tr ',' '\n' | sed -n "$((index + 1))p" | tr -d ' ')
    if [ -z "$ip" ]; then
      echo "entrypoint: RELAYCAST_ANNOUNCED_IPS has no address for pod index $index: list one per replica" >&2
      exit 2
    fi
    RELAYCAST_ANNOUNCED_IP=$ip
    RELAYCAST_PUBLIC_URL=${RELAYCAST_PUBLIC_URL:-http://$ip:${RELAYCAST_HTTP_PORT:-8080}}
    export RELAYCAST_ANNOUNCED_IP RELAYCAST_PUBLIC_URL
  fi
fi

case "${1:-}" in
  '' | origin | edge | balancer | all | token | drain | undrain | -* | origin,* | edge,* | balancer,*)
    exec node /app/bin/relaycast.js "$@"
    ;;
esac
exec "$@"
