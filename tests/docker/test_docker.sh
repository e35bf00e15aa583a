#!/usr/bin/env bash
# The Docker deployment, tested for real (issue 12). Not part of scripts/test.sh:
# the image build alone takes ~10 minutes on 2 cores. Run it before changing docker/.
#
#   tests/docker/test_docker.sh [cpu|gpu|all]     (default: cpu)
#
# cpu: makes the Debian 12 base image (cached by name), builds docker/Dockerfile.cpu
#      on it, runs the image with --network host on a free port, waits for the
#      image's own HEALTHCHECK to say healthy, checks ember is PID 1 and not root,
#      sends completions with the official openai client (with the API key; 401
#      without), then `docker stop`s the container while a streamed request is
#      running: the request must finish in full, the logs must show the drain and
#      the exit code must be 0.
# gpu: makes the local CUDA devel/runtime bases from this host's toolkit, builds
#      docker/Dockerfile (CUDA kernels compiled for 80;90a) and runs `ember --version`
#      in the final image (no GPU needed), non-root, every shared library found.
#
# Env: EMBER_DOCKER_BASE (Debian base image name), EMBER_DOCKER_TAG (default ember:test),
#      EMBER_DOCKER_CA_DIR (PEM certificates the build stage must trust; default
#      /usr/local/share/ca-certificates: networks that intercept TLS), EMBER_DOCKER_KEEP=1
#      keeps the container after the run, EMBER_DOCKER_NO_BUILD=1 reuses the images already
#      tagged (reruns of the container checks only). Exits nonzero with a message on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODE="${1:-cpu}"
TAG="${EMBER_DOCKER_TAG:-ember:test}"
BASE="${EMBER_DOCKER_BASE:-ember-base:debian12}"
CA_DIR="${EMBER_DOCKER_CA_DIR:-/usr/local/share/ca-certificates}"
PY="$ROOT/.venv/bin/python"
t0=$(date +%s)
log() { echo "[docker-test +$(($(date +%s) - t0))s] $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

command -v docker >/dev/null || fail "docker is not installed (apt-get install -y docker.io debootstrap)"
docker info >/dev/null 2>&1 || fail "no Docker daemon (here: dockerd --storage-driver=vfs --iptables=false --bridge=none &)"

# Certificates for the build stage only (passed as a build arg, never committed, never in the final image).
ca_pem=""
if compgen -G "$CA_DIR/*.crt" >/dev/null; then ca_pem="$(cat "$CA_DIR"/*.crt)"; fi

build() {  # build TAG DOCKERFILE BUILD-ARGS...
  local tag="$1" file="$2"; shift 2
  if [[ "${EMBER_DOCKER_NO_BUILD:-0}" == 1 ]]; then
    docker image inspect "$tag" >/dev/null 2>&1 || fail "EMBER_DOCKER_NO_BUILD=1 but there is no image $tag"
    log "using the existing $tag (EMBER_DOCKER_NO_BUILD=1)"; : > "$WORK/build-$(basename "$file").log"; return
  fi
  local start=$(date +%s)
  # The build args are logged without their values (EXTRA_CA_CERTS is a page of PEM).
  log "docker build -f $file -t $tag (build args: $(printf '%s\n' "$@" | sed -n 's/^\([A-Z_]*\)=.*/\1/p' | tr '\n' ' '))"
  docker build --network host -f "$ROOT/$file" -t "$tag" "$@" "$ROOT" \
    > "$WORK/build-$(basename "$file").log" 2>&1 \
    || { tail -40 "$WORK/build-$(basename "$file").log"; fail "docker build of $file failed (log above)"; }
  log "built $tag in $(($(date +%s) - start)) s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

WORK="$(mktemp -d)"
CONTAINER=""
cleanup() {
  if [[ -n "$CONTAINER" && "${EMBER_DOCKER_KEEP:-0}" != 1 ]]; then docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

test_cpu() {
  [[ -x "$PY" ]] || fail "$PY missing: run scripts/setup.sh (the openai client comes from scripts/requirements.txt)"
  "$PY" -c "import openai" 2>/dev/null || fail "the openai package is missing from $ROOT/.venv"
  "$ROOT/scripts/make_docker_base.sh" debian "$BASE" >/dev/null
  build "$TAG-cpu" docker/Dockerfile.cpu --build-arg BASE_IMAGE="$BASE" --build-arg EXTRA_CA_CERTS="$ca_pem"

  local port key
  port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  key="test-key-$RANDOM$RANDOM"
  CONTAINER="ember-docker-test-$$"
  log "docker run $TAG-cpu on port $port (--network host)"
  docker run -d --name "$CONTAINER" --network host -e EMBER_PORT="$port" -e EMBER_API_KEY="$key" \
    -e EMBER_DRAIN_TIMEOUT=60 "$TAG-cpu" --max-num-seqs 8 >/dev/null

  # The image's own HEALTHCHECK (interval 10 s) must turn healthy.
  local health="" deadline=$(($(date +%s) + 240))
  while (($(date +%s) < deadline)); do
    health="$(docker inspect -f '{{.State.Health.Status}}' "$CONTAINER")"
    [[ "$health" == healthy ]] && break
    [[ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER")" == true ]] \
      || { docker logs "$CONTAINER" 2>&1 | tail -30; fail "the container exited before it was healthy"; }
    [[ "$health" == unhealthy ]] && { docker logs "$CONTAINER" 2>&1 | tail -30; fail "the container is unhealthy"; }
    sleep 1
  done
  [[ "$health" == healthy ]] || { docker logs "$CONTAINER" 2>&1 | tail -30; fail "not healthy after 240 s (status: $health)"; }
  log "healthy ($(docker inspect -f '{{len .State.Health.Log}}' "$CONTAINER") health probes run)"

  # ember itself is PID 1 (so it gets SIGTERM) and runs as the image's non-root user.
  local uid comm user
  uid="$(docker exec "$CONTAINER" id -u)"
  user="$(docker exec "$CONTAINER" id -un)"
  comm="$(docker exec "$CONTAINER" cat /proc/1/comm)"
  [[ "$uid" != 0 ]] || fail "the container runs as root"
  [[ "$comm" == ember ]] || fail "PID 1 is '$comm', not ember (the entrypoint must exec it)"
  log "PID 1 is ember, running as $user (uid $uid)"

  log "openai client: completions, chat, 401 without the key, docker stop during a streamed request"
  EMBER_TEST_PORT="$port" EMBER_TEST_KEY="$key" EMBER_TEST_CONTAINER="$CONTAINER" \
    "$PY" "$ROOT/tests/docker/openai_checks.py" || { docker logs "$CONTAINER" 2>&1 | tail -30; fail "openai checks failed"; }

  # docker stop returned (inside openai_checks.py): the exit must have been ember's own, graceful one.
  local code logs
  code="$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
  logs="$(docker logs "$CONTAINER" 2>&1)"
  echo "$logs" | tail -8 | sed 's/^/    container: /' >&2
  [[ "$code" == 0 ]] || fail "exit code $code after docker stop (0 expected: SIGTERM drains and exits 0; 137 means it was killed)"
  grep -q "SIGTERM: no new requests" <<<"$logs" || fail "the logs do not show the SIGTERM drain"
  grep -q "stopped" <<<"$logs" || fail "the logs do not end with 'stopped'"
  grep -q "$key" <<<"$logs" && fail "the API key appears in the logs"
  log "graceful stop: exit code 0, drain logged"
}

test_gpu() {
  "$ROOT/scripts/make_docker_base.sh" debian "$BASE" >/dev/null
  local devel runtime
  devel="$("$ROOT/scripts/make_docker_base.sh" cuda-devel)"
  runtime="$("$ROOT/scripts/make_docker_base.sh" cuda-runtime)"
  build "$TAG-gpu" docker/Dockerfile --build-arg CUDA_DEVEL_IMAGE="$devel" --build-arg CUDA_RUNTIME_IMAGE="$runtime"
  local version uid missing libs
  # Built with the CUDA backend: the binary links the CUDA runtime and cuBLAS (from the runtime base image).
  libs="$(docker run --rm --entrypoint /bin/sh "$TAG-gpu" -c 'ldd /opt/ember/bin/ember')"
  grep -q "libcudart.so.* => /usr/local/cuda" <<<"$libs" || fail "ember in $TAG-gpu does not link the CUDA runtime: $libs"
  grep -q "libcublasLt.so.* => /usr/local/cuda" <<<"$libs" || fail "ember in $TAG-gpu does not link cuBLASLt"
  version="$(docker run --rm --network host "$TAG-gpu" --version)" || fail "ember --version fails in $TAG-gpu"
  uid="$(docker run --rm --entrypoint id "$TAG-gpu" -u)"
  missing="$(grep "not found" <<<"$libs" || true)"
  [[ "$version" == ember* ]] || fail "unexpected --version output: $version"
  [[ "$uid" != 0 ]] || fail "the GPU image runs as root"
  # libcuda.so.1 is the driver's: the NVIDIA container toolkit mounts it at run time.
  [[ -z "$(grep -v libcuda.so <<<"$missing")" ]] || fail "shared libraries missing in $TAG-gpu: $missing"
  log "GPU image: '$version', uid $uid, libraries complete"
}

case "$MODE" in
  cpu) test_cpu ;;
  gpu) test_gpu ;;
  all) test_cpu; test_gpu ;;
  *) fail "unknown mode '$MODE' (cpu | gpu | all)" ;;
esac
log "PASS ($MODE) in $(($(date +%s) - t0)) s"
