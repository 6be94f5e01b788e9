#!/usr/bin/env bash
# Builds Relaycast's image and runs the compose cluster (docker/compose.yml) for real.
#
#   bash scripts/container-test.sh          check, base images, image, then test/container.test.ts:
#                                           the cluster up, RTMP and WHIP publishes, Chromium
#                                           playing through the balancer, an edge killed, down
#   bash scripts/container-test.sh check    can this machine run it? exit 0, or 77 and why
#   bash scripts/container-test.sh base     the base images, when they are missing (docker/base/)
#   bash scripts/container-test.sh image    base, then relaycast:local (prints the build time)
#   bash scripts/container-test.sh up       the compose cluster, until every service is healthy
#                                           (with RELAYCAST_TLS_DIR: docker/compose.tls.yml too)
#   bash scripts/container-test.sh down     stops it and drops its volumes
#   bash scripts/container-test.sh config   the compose configuration `up` would run, resolved
#   bash scripts/container-test.sh engine-stop   stops the dockerd that `check` started, if any
#
# No container registry is needed: without one (these machines reach Debian's archive and the npm
# registry only), the base images are made locally. `mmdebstrap` writes a minimal Debian 12 root
# file system from the machine's apt sources, `docker import` turns it into an image, and
# docker/base/Dockerfile adds Node.js and npm (from the npm registry) and PostgreSQL (from
# Debian), standing in for node:20-bookworm(-slim) and postgres:16-bookworm. Set
# RELAYCAST_BASE=registry to build from the official images instead.
#
# The mediasoup worker: when scripts/setup.sh has built one (~/.cache/mediasoup-worker), it is
# copied into the build context and used (MEDIASOUP_WORKER=prebuilt); otherwise the image builds
# its own (about 6 minutes). RELAYCAST_WORKER=build forces the build.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${RELAYCAST_COMPOSE_PROJECT:-relaycast-test}
IMAGE=${RELAYCAST_IMAGE:-relaycast:local}
BASE=${RELAYCAST_BASE:-local}
DEBIAN_IMAGE=relaycast-base/debian:bookworm
NODE_SLIM=relaycast-base/node:20-bookworm-slim
NODE_BUILD=relaycast-base/node:20-bookworm
POSTGRES=relaycast-base/postgres:15-bookworm
MEDIASOUP_VERSION=$(node -p "require('./package.json').dependencies.mediasoup")
CACHED_WORKER=${MEDIASOUP_WORKER_BIN:-$HOME/.cache/mediasoup-worker/mediasoup-worker-$MEDIASOUP_VERSION-static-openssl}
# How long `up` waits for every service to be healthy: the nodes' health checks start after their
# start_period and run every 10 s, and a first start runs the database migrations.
UP_TIMEOUT_S=180

# Where `check` notes the dockerd it started, so that `engine-stop` stops that one and no other.
DOCKERD_PID=/tmp/relaycast-dockerd.pid

log() { printf '\033[1mcontainer:\033[0m %s\n' "$*" >&2; }
# Exit code 77: "skipped" (automake's convention); test/container.test.ts reports the reason.
# Seconds since a `date +%s%N` reading, to a tenth.
elapsed() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
skip() { printf 'container: cannot run here: %s\n' "$*" >&2; exit 77; }

# A Docker CLI that builds with BuildKit (docker/Dockerfile needs it): one with the buildx plugin,
# or one older than 23 with BuildKit built in (Debian's docker.io 20.10, with DOCKER_BUILDKIT=1).
# A newer CLI without buildx would fall back to the legacy builder, so it is passed over.
pick_docker() {
  local candidate major
  for candidate in docker /usr/bin/docker; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" buildx version >/dev/null 2>&1; then echo "$candidate"; return 0; fi
    major=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)
    if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then echo "$candidate"; return 0; fi
  done
  return 1
}

compose_cmd() {
  if "$DOCKER" compose version >/dev/null 2>&1; then echo "$DOCKER compose"
  elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose
  else return 1; fi
}

check() {
  DOCKER=$(pick_docker) || skip "no Docker CLI that builds with BuildKit (install docker.io, or Docker 23+ with buildx)"
  if ! "$DOCKER" info >/dev/null 2>&1; then
    # A root shell with Debian's docker.io but no init system (as here): start the engine.
    if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1 && [ -z "${RELAYCAST_NO_DOCKERD:-}" ]; then
      log "starting dockerd (log: /tmp/relaycast-dockerd.log; \`$0 engine-stop\` stops it)"
      nohup dockerd >/tmp/relaycast-dockerd.log 2>&1 &
      echo $! > "$DOCKERD_PID"
      for _ in $(seq 1 30); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
    fi
    "$DOCKER" info >/dev/null 2>&1 || skip "no Docker engine answers ($("$DOCKER" info 2>&1 | grep -m1 -i -E 'error|cannot' || echo 'docker info failed'))"
  fi
  COMPOSE=$(compose_cmd) || skip "neither 'docker compose' nor docker-compose is installed"
  if [ "$BASE" = local ] && ! "$DOCKER" image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 && ! command -v mmdebstrap >/dev/null 2>&1; then
    skip "no base image $DEBIAN_IMAGE and no mmdebstrap to make it (apt-get install mmdebstrap)"
  fi
  # A test run on this machine: the cluster's ports must be free.
  local busy
  busy=$(ss -Hltn '( sport = :8080 or sport = :1935 or sport = :8081 or sport = :8082 or sport = :8083 or sport = :8084 )' 2>/dev/null | awk '{print $4}' | tr '\n' ' ')
  # (Into a variable first: `ps -q | grep -q .` under pipefail fails when grep stops reading early.)
  local ours
  ours=$($COMPOSE -p "$PROJECT" -f docker/compose.yml ps -q 2>/dev/null || true)
  if [ -n "$busy" ] && [ -z "$ours" ]; then
    skip "ports the compose cluster publishes are taken: $busy"
  fi
  export DOCKER_BUILDKIT=1
}

# The host's CA bundle, passed to builds as the secret ca-certificates when this machine trusts
# extra CAs (a TLS-inspecting proxy in front of the npm registry, as here); never stored in a layer.
build_ca() {
  local file=${RELAYCAST_BUILD_CA:-${NODE_EXTRA_CA_CERTS:-${SSL_CERT_FILE:-}}}
  [ -n "$file" ] && [ -f "$file" ] && echo "--secret=id=ca-certificates,src=$file"
  return 0
}

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

base() {
  [ "$BASE" = local ] || return 0
  if ! have_image "$DEBIAN_IMAGE"; then
    local tar started
    tar=$(mktemp -d)/debian.tar
    started=$(date +%s)
    log "making $DEBIAN_IMAGE with mmdebstrap (Debian 12 minbase from this machine's apt sources)"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$tar" >&2
    "$DOCKER" import "$tar" "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$(dirname "$tar")"
    log "$DEBIAN_IMAGE: $(($(date +%s) - started)) s"
  fi
  local target name
  for target in node-slim:$NODE_SLIM node-build:$NODE_BUILD postgres:$POSTGRES; do
    name=${target#*:}
    have_image "$name" && continue
    log "building $name (docker/base/Dockerfile, target ${target%%:*})"
    "$DOCKER" build --quiet $(build_ca) --target "${target%%:*}" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$name" docker/base >/dev/null
  done
}

image() {
  base
  local args=() started seconds
  read -r -a args <<<"$(build_ca)"
  if [ "$BASE" = local ]; then
    args+=(--build-arg "BUILD_IMAGE=$NODE_BUILD" --build-arg "RUNTIME_IMAGE=$NODE_SLIM")
  fi
  if [ "${RELAYCAST_WORKER:-}" != build ] && [ -x "$CACHED_WORKER" ]; then
    cp "$CACHED_WORKER" docker/mediasoup-worker
    args+=(--build-arg MEDIASOUP_WORKER=prebuilt)
    log "mediasoup worker: $CACHED_WORKER (prebuilt)"
  else
    rm -f docker/mediasoup-worker
    log "mediasoup worker: built in the image"
  fi
  started=$(date +%s%N)
  "$DOCKER" build --progress=plain -f docker/Dockerfile -t "$IMAGE" "${args[@]}" . >/tmp/relaycast-image-build.log 2>&1 \
    || { tail -n 40 /tmp/relaycast-image-build.log >&2; echo "container: image build failed (log: /tmp/relaycast-image-build.log)" >&2; exit 1; }
  seconds=$(elapsed "$started")
  log "built $IMAGE in ${seconds} s; $("$DOCKER" image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
  echo "build_seconds=$seconds"
}

# An empty env file: a developer's docker/.env does not change what is tested.
EMPTY_ENV=$(mktemp)
trap 'rm -f "$EMPTY_ENV"' EXIT
# RELAYCAST_TLS_DIR (tls.crt, tls.key): the cluster with docker/compose.tls.yml, HTTPS at HAProxy.
compose() {
  local files=(-f docker/compose.yml)
  [ -n "${RELAYCAST_TLS_DIR:-}" ] && files+=(-f docker/compose.tls.yml)
  $COMPOSE -p "$PROJECT" --env-file "$EMPTY_ENV" "${files[@]}" "$@"
}

up() {
  export RELAYCAST_IMAGE=$IMAGE
  [ "$BASE" = local ] && export RELAYCAST_POSTGRES_IMAGE=$POSTGRES
  local started
  started=$(date +%s%N)
  compose up -d --no-build >&2
  local services deadline unhealthy
  services=$(compose ps -q)
  deadline=$(($(date +%s) + UP_TIMEOUT_S))
  while :; do
    unhealthy=$(for id in $services; do
      "$DOCKER" inspect --format '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}healthy{{end}}' "$id"
    done | awk '$2 != "running" || $3 != "healthy" {print $1 "=" $2 "/" $3}' | tr '\n' ' ')
    [ -z "$unhealthy" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      compose logs --tail 30 >&2 || true
      echo "container: not healthy after ${UP_TIMEOUT_S} s: $unhealthy" >&2
      exit 1
    fi
    sleep 1
  done
  log "cluster healthy in $(elapsed "$started") s"
}

down() {
  export RELAYCAST_IMAGE=$IMAGE
  [ "$BASE" = local ] && export RELAYCAST_POSTGRES_IMAGE=$POSTGRES
  compose down -v --timeout 10 >&2
}

# Stops the engine `check` started, if it did (test/container.test.ts, when done).
engine_stop() {
  [ -f "$DOCKERD_PID" ] || return 0
  local pid
  pid=$(cat "$DOCKERD_PID")
  rm -f "$DOCKERD_PID"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { log "stopped dockerd $pid"; return 0; }; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
}

command=${1:-all}
if [ "$command" = engine-stop ]; then engine_stop; exit 0; fi
check
case "$command" in
  check) log "can run: $DOCKER ($("$DOCKER" version --format '{{.Server.Version}}')), ${COMPOSE}" ;;
  base) base ;;
  image) image ;;
  up) up ;;
  down) down ;;
  config)
    export RELAYCAST_IMAGE=$IMAGE
    [ "$BASE" = local ] && export RELAYCAST_POSTGRES_IMAGE=$POSTGRES
    compose config
    ;;
  all)
    image
    # Only this file: with .mocharc.json, a file named here would run beside its whole spec list.
    npx mocha --no-config --node-option import=tsx --require test/helpers/build.ts --extension ts \
      --timeout 180000 test/container.test.ts
    ;;
  *) echo "usage: $0 [check|base|image|up|down|config]" >&2; exit 2 ;;
esac
