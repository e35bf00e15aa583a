#!/usr/bin/env bash
# Makes the local base images the Dockerfiles build on when no registry can be
# reached (this machine; air-gapped sites). Each image is made once and kept:
# an image that already exists under its name is not rebuilt (--force rebuilds).
#
#   scripts/make_docker_base.sh [--force] debian   [NAME]  Debian 12 minbase (debootstrap + docker import)
#   scripts/make_docker_base.sh [--force] cuda-devel   [NAME]  debian + this host's CUDA toolkit: nvcc, headers,
#                                                          cudart, cublas, cublasLt, nccl (for docker/Dockerfile's build stage)
#   scripts/make_docker_base.sh [--force] cuda-runtime [NAME]  debian + the CUDA runtime libraries only (its final stage)
#
# Default names: ember-base:debian12, ember-base:cuda-devel, ember-base:cuda-runtime.
# Env: EMBER_DEBIAN_MIRROR (default http://deb.debian.org/debian), CUDA_HOME (default /usr/local/cuda).
# Prints the image name on stdout (logs go to stderr).
set -euo pipefail
log() { echo "[make_docker_base] $*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
if [[ "${1:-}" == "--force" ]]; then force=1; shift; fi
kind="${1:-debian}"
MIRROR="${EMBER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_IMAGE="${EMBER_DEBIAN_BASE:-ember-base:debian12}"
case "$kind" in
  debian) name="${2:-$DEBIAN_IMAGE}" ;;
  cuda-devel) name="${2:-ember-base:cuda-devel}" ;;
  cuda-runtime) name="${2:-ember-base:cuda-runtime}" ;;
  *) die "unknown kind '$kind' (debian | cuda-devel | cuda-runtime)" ;;
esac

command -v docker >/dev/null || die "docker is not installed (apt-get install -y docker.io)"
docker info >/dev/null 2>&1 || die "the Docker daemon is not running (docker info fails)"
if ((!force)) && docker image inspect "$name" >/dev/null 2>&1; then
  log "$name exists (cached; --force rebuilds it)"
  echo "$name"
  exit 0
fi

make_debian() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
  [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
  local dir
  dir="$(mktemp -d /var/tmp/ember-debootstrap.XXXXXX)"
  trap 'rm -rf "$dir"' RETURN
  log "debootstrap --variant=minbase bookworm ($MIRROR) into $dir"
  debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >&2 || die "debootstrap failed (see above)"
  # The same suites a stock debian:12 image has, so security updates install.
  cat >"$dir/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # What the official image does to stay small: no apt caches, no docs in layers.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    >"$dir/etc/dpkg/dpkg.cfg.d/01-ember-nodoc"
  # mktemp made the root folder 0700 and tar records it: every non-root user
  # in the image could then reach nothing ("permission denied" on the entrypoint).
  chmod 0755 "$dir"
  log "docker import -> $name"
  tar -C "$dir" -c . | docker import --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
}

# The CUDA images are the Debian image plus files of the host's toolkit, added
# by a two-line Dockerfile whose build context is a tar stream made straight
# from the toolkit folder (no staging copy of ~1 GB). The layout matches
# NVIDIA's images: /usr/local/cuda-X.Y, /usr/local/cuda -> it, PATH and
# LD_LIBRARY_PATH set, CUDA_VERSION recorded.
make_cuda() {
  local variant="$1"
  local home
  home="$(readlink -f "${CUDA_HOME:-/usr/local/cuda}")"
  [[ -x "$home/bin/nvcc" ]] || die "no CUDA toolkit at $home (set CUDA_HOME)"
  local version
  version="$("$home/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')"
  [[ -n "$version" ]] || die "cannot read the CUDA version from $home/bin/nvcc --version"
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 || make_debian_named "$DEBIAN_IMAGE"
  local libdir=lib
  [[ -d "$home/lib64" && ! -L "$home/lib64" ]] && libdir=lib64
  local -a members=()
  local pattern f
  # Runtime: what ember links (cudart, cublas, cublasLt) and tensor parallelism will (nccl).
  local -a runtime_libs=(libcudart.so libcublas.so libcublasLt.so libnccl.so)
  for pattern in "${runtime_libs[@]}"; do
    for f in "$home/$libdir/$pattern".*; do [[ -e "$f" ]] && members+=("$libdir/$(basename "$f")"); done
  done
  if [[ "$variant" == devel ]]; then
    # The compiler (nvcc, ptxas, cicc in nvvm/, fatbinary, nvlink), headers and link-time files.
    members+=(bin include nvvm)
    for pattern in "${runtime_libs[@]}"; do [[ -e "$home/$libdir/$pattern" ]] && members+=("$libdir/$pattern"); done
    for f in libcudart_static.a libcudadevrt.a libculibos.a stubs; do
      [[ -e "$home/$libdir/$f" ]] && members+=("$libdir/$f")
    done
  fi
  [[ -d "$home/lib64" || -L "$home/lib64" ]] && [[ "$libdir" == lib ]] && members+=(lib64)
  [[ -d "$home/targets" ]] && members+=(targets)
  local stage
  stage="$(mktemp -d /var/tmp/ember-cuda-base.XXXXXX)"
  trap 'rm -rf "$stage"' RETURN
  # The symlink sits inside usr/ of the context: COPY keeps symlinks within a
  # copied folder but follows one named as the source (the toolkit twice).
  mkdir -p "$stage/usr/local"
  ln -s "cuda-$version" "$stage/usr/local/cuda"
  cat >"$stage/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY usr /usr
ENV CUDA_VERSION=$version PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib \\
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL org.opencontainers.image.description="ember local CUDA $version $variant base (from the host toolkit)"
EOF
  log "CUDA $version $variant: ${#members[@]} entries from $home -> $name"
  # One tar stream: the Dockerfile and the symlink from the stage, the toolkit
  # files renamed under usr/local/cuda-X.Y/ (the transform matches only toolkit members;
  # S: symlink targets inside the toolkit are kept as they are).
  tar -c -C "$stage" Dockerfile usr \
      -C "$home" --transform "s,^\\(bin\\|include\\|nvvm\\|lib\\|targets\\),usr/local/cuda-$version/\\1,S" "${members[@]}" \
    | docker build -q -t "$name" - >/dev/null || die "docker build of $name failed"
}

make_debian_named() { local saved="$name"; name="$1"; make_debian; name="$saved"; }

case "$kind" in
  debian) make_debian ;;
  cuda-devel) make_cuda devel ;;
  cuda-runtime) make_cuda runtime ;;
esac
log "made $name ($(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$name"
