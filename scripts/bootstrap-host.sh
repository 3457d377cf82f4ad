#!/usr/bin/env bash
# Prepare a Debian host for imagematrix: a Docker engine with BuildKit, the
# buildx plugin, and the base images of examples/matrix.yaml, pulled where a
# registry answers and otherwise made from Debian's own mirror. Needs root.
# Idempotent: every step is skipped when its result is already there.
# IMAGEMATRIX_BASE_ARM64="trixie" also makes imagematrix-base/debian-arm64:trixie-slim, an arm64 base run
# under QEMU emulation (trixie's static qemu-aarch64 registered with binfmt_misc), for matrices with linux/arm64.
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

for suite in ${IMAGEMATRIX_BASE_ARM64:-}; do
  tag="imagematrix-base/debian-arm64:${suite}-slim"
  # QEMU 10 from trixie (static, fetched like buildx): bookworm's QEMU 7.2 runs the arm64 build, but
  # `import torch` (2.15.0, aarch64) segfaults under it.
  qemu=/usr/local/libexec/imagematrix/qemu-aarch64
  if [ ! -x "$qemu" ]; then
    log "fetching trixie's qemu-user (static qemu-aarch64) for arm64 under emulation"
    work=$(mktemp -d)
    docker run --rm -v "$work:/out" -w /out debian:trixie-slim sh -c 'apt-get update -qq && apt-get download -qq qemu-user' \
      >/dev/null 2>&1 || { log "could not fetch qemu-user from trixie"; rm -rf "$work"; exit 1; }
    dpkg -x "$work"/qemu-user_*.deb "$work/x"
    install -D "$work/x/usr/bin/qemu-aarch64" "$qemu"
    rm -rf "$work"
  fi
  # No systemd here to register the interpreter: do what systemd-binfmt would (F: opened now, so it works in containers).
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if ! grep -q "interpreter $qemu" /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64
    printf ':qemu-aarch64:M::%s:%s:%s:OPF\n' \
      '\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00' \
      '\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff' "$qemu" \
      > /proc/sys/fs/binfmt_misc/register
  fi
  if docker image inspect "$tag" >/dev/null 2>&1; then
    log "$tag present"
    continue
  fi
  rootfs="$STATE/rootfs-$suite-arm64"
  if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    rm -rf "$rootfs"
    log "debootstrap --arch=arm64 $suite from $MIRROR (emulated: several minutes)"
    debootstrap --arch=arm64 --variant=minbase "$suite" "$rootfs" "$MIRROR" >"$STATE/debootstrap-$suite-arm64.log" 2>&1 \
      || { tail -n 20 "$STATE/debootstrap-$suite-arm64.log"; exit 1; }
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # `docker import` would label it amd64: BuildKit sets the architecture from --platform.
  work=$(mktemp -d)
  tar -C "$rootfs" -cf "$work/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' > "$work/Dockerfile"
  docker buildx build --load --platform linux/arm64 -t "$tag" "$work" >"$STATE/import-$suite-arm64.log" 2>&1 \
    || { tail -n 20 "$STATE/import-$suite-arm64.log"; exit 1; }
  rm -rf "$work" "$rootfs"
  log "$tag imported ($(docker image inspect -f '{{.Architecture}}' "$tag"))"
done
log "ready"
