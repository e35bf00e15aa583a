#!/usr/bin/env bash
# Sets up (packages, build, default model) and starts `ember serve` on the
# default model: on the GPU if there is one, else on the CPU. Extra arguments
# go to `ember serve` (e.g. --port 8080 --host 0.0.0.0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMBER_NINJA_TARGETS=ember "$ROOT/scripts/setup.sh"
exec "${EMBER_BUILD_DIR:-$ROOT/build}/ember" serve "$@"
