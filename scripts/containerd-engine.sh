#!/usr/bin/env bash
# A second Docker engine beside the host's, whose images live in the containerd image store: there a
# docker-driver build keeps BuildKit's SLSA provenance, the image id is the index that carries it, and
# `docker push` pushes that index (the host's own engine, Debian bookworm's 20.10, cannot). Debian trixie's
# dockerd 26.1, containerd and docker CLI (bookworm's runc runs the containers: trixie's needs glibc 2.38),
# on their own sockets, state directories and bridge, so nothing of the host's engine is touched.
# Needs root. Idempotent; prints the engine's DOCKER_HOST. Stop it with: scripts/containerd-engine.sh stop
#   DOCKER_HOST=$(bash scripts/containerd-engine.sh) imagematrix build ...
set -euo pipefail
cd "$(dirname "$0")/.."
home=${IMAGEMATRIX_CD_ENGINE:-/var/lib/imagematrix-cd-engine}
bin="$home/bin"
sock="$home/docker.sock"
run=/run/imagematrix-cd-engine
log() { printf '[containerd-engine] %s\n' "$*" >&2; }

if [ "${1:-}" = stop ]; then
  for p in "$run/dockerd.pid" "$run/containerd.pid"; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  exit 0
fi

if [ ! -x "$bin/dockerd" ]; then
  log "fetching Debian trixie's dockerd, containerd and docker CLI"
  apt=$(mktemp -d)
  mkdir -p "$apt/lists/partial" "$apt/debs" "$apt/x" "$bin"
  echo "deb http://deb.debian.org/debian trixie main" > "$apt/sources.list"
  o=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$apt/lists" -o Dir::Cache::archives="$apt/debs" -o APT::Architecture=amd64)
  apt-get "${o[@]}" update -qq
  (cd "$apt/debs" && apt-get "${o[@]}" download docker.io docker-cli containerd >/dev/null 2>&1)
  for f in "$apt"/debs/*.deb; do dpkg -x "$f" "$apt/x"; done
  cp "$apt"/x/usr/sbin/dockerd "$apt"/x/usr/bin/docker "$apt"/x/usr/bin/containerd \
     "$apt"/x/usr/bin/containerd-shim-runc-v2 "$bin/"
  rm -rf "$apt"
fi
command -v runc >/dev/null || { log "runc is missing: run scripts/bootstrap-host.sh first (it installs docker.io)"; exit 1; }

if ! DOCKER_HOST="unix://$sock" "$bin/docker" info >/dev/null 2>&1; then
  mkdir -p "$run" "$home"
  ip link show imx-cd0 >/dev/null 2>&1 || {
    ip link add imx-cd0 type bridge && ip addr add 172.31.251.1/24 dev imx-cd0 && ip link set imx-cd0 up
  }
  cat > "$home/containerd.toml" <<EOF
version = 2
root = "$home/containerd"
state = "$run/containerd"
[grpc]
  address = "$run/containerd/containerd.sock"
EOF
  echo '{"features": {"containerd-snapshotter": true}}' > "$home/daemon.json"
  log "starting containerd and dockerd (logs: $home/*.log)"
  PATH="$bin:$PATH" setsid "$bin/containerd" --config "$home/containerd.toml" > "$home/containerd.log" 2>&1 < /dev/null &
  echo $! > "$run/containerd.pid"
  for _ in $(seq 1 40); do [ -S "$run/containerd/containerd.sock" ] && break; sleep 0.25; done
  PATH="$bin:$PATH" setsid "$bin/dockerd" --config-file "$home/daemon.json" --containerd "$run/containerd/containerd.sock" \
    --host "unix://$sock" --data-root "$home/docker" --exec-root "$run/docker" --pidfile "$run/dockerd.pid" \
    --bridge imx-cd0 > "$home/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do DOCKER_HOST="unix://$sock" "$bin/docker" info >/dev/null 2>&1 && break; sleep 0.5; done
  DOCKER_HOST="unix://$sock" "$bin/docker" info >/dev/null 2>&1 || { log "dockerd did not start:"; tail -n 20 "$home/dockerd.log" >&2; exit 1; }
fi
store=$(DOCKER_HOST="unix://$sock" "$bin/docker" info --format '{{json .DriverStatus}}')
case "$store" in *io.containerd.snapshotter.v1*) ;; *) log "the engine does not use the containerd image store: $store"; exit 1 ;; esac
echo "unix://$sock"
