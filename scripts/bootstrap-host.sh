#!/usr/bin/env bash
# Prepare a Debian host for imagematrix: a Docker engine with BuildKit, the
# buildx plugin, and the base images of examples/matrix.yaml, pulled where a
# registry answers and otherwise made from Debian's own mirror. Needs root.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

SUITES=${IMAGEMATRIX_BASE_SUITES:-trixie}
STATE=${IMAGEMATRIX_HOST_STATE:-/var/lib/imagematrix-host}
mkdir -p "$STATE"

log() { printf '[bootstrap] %s\n' "$*"; }

mirror() {
  # The Debian URI apt already uses (deb822 or one-line sources).
  local uri
  uri=$(grep -hoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hoE '^deb\s+\S+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $STATE/dockerd.log)"
  setsid dockerd >"$STATE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see $STATE/dockerd.log"; tail -n 20 "$STATE/dockerd.log"; exit 1; }
fi

MIRROR=$(mirror)
for suite in $SUITES; do
  tag="debian:${suite}-slim"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    log "$tag present"
    continue
  fi
  if timeout 300 docker pull -q "$tag" >/dev/null 2>&1; then
    log "$tag pulled"
    continue
  fi
  log "$tag cannot be pulled (no registry reachable): making it from Debian's mirror"
  rootfs="$STATE/rootfs-$suite"
  rm -rf "$rootfs"
  log "debootstrap $suite from $MIRROR"
  # A suite newer than this debootstrap (forky on bookworm) is bootstrapped with sid's script.
  script=()
  [ -e "/usr/share/debootstrap/scripts/$suite" ] || script=(/usr/share/debootstrap/scripts/sid)
  debootstrap --variant=minbase "$suite" "$rootfs" "$MIRROR" "${script[@]}" >"$STATE/debootstrap-$suite.log" 2>&1 \
    || { tail -n 20 "$STATE/debootstrap-$suite.log"; exit 1; }
  if [ "$suite" = forky ]; then
    # forky's Release file on the mirror is past its Valid-Until date; apt inside builds must still read it.
    echo 'Acquire::Check-Valid-Until "false";' > "$rootfs/etc/apt/apt.conf.d/99imagematrix-valid-until"
  fi
  # Leave apt caches out: a slim base.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$tag" >/dev/null
  rm -rf "$rootfs"
  log "$tag imported"
done

# buildx: Debian bookworm lacks it; trixie's docker-buildx works with this engine.
plugin="$HOME/.docker/cli-plugins/docker-buildx"
if ! docker buildx version >/dev/null 2>&1; then
  log "installing docker-buildx from trixie"
  work=$(mktemp -d)
  ( cd "$work" \
    && docker run --rm -v "$work:/out" -w /out "debian:trixie-slim" \
         sh -c 'apt-get update -qq && apt-get download -qq docker-buildx' >/dev/null 2>&1 ) \
    || { log "could not fetch docker-buildx; builds fall back to DOCKER_BUILDKIT=1 docker build"; rm -rf "$work"; exit 0; }
  dpkg -x "$work"/docker-buildx_*.deb "$work/x"
  mkdir -p "$(dirname "$plugin")"
  cp "$work/x/usr/libexec/docker/cli-plugins/docker-buildx" "$plugin"
  chmod +x "$plugin"
  rm -rf "$work"
fi
docker buildx version 2>/dev/null | sed 's/^/[bootstrap] /' || true
log "ready"
