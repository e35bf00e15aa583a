#!/bin/bash
# Container entrypoint: turns EMBER_* environment variables into `ember serve`
# flags, appends EMBER_EXTRA_ARGS and the container's arguments (which win: for
# a flag given twice ember takes the last), and execs ember, so that ember is
# PID 1 and receives docker stop's SIGTERM itself (it drains, then exits 0).
#
#   EMBER_MODEL                   --model (GGUF file or HF directory)
#   EMBER_HOST                    --host (the images set 0.0.0.0)
#   EMBER_PORT                    --port (default 8000; the healthcheck uses it too)
#   EMBER_API_KEY                 read by ember itself (never put on the command line, where `ps` shows it)
#   EMBER_MAX_MODEL_LEN           --max-model-len
#   EMBER_GPU_MEMORY_UTILIZATION  --gpu-memory-utilization
#   EMBER_DEVICE                  --device (auto | cpu | cuda)
#   EMBER_SERVED_MODEL_NAME       --served-model-name
#   EMBER_DRAIN_TIMEOUT           --drain-timeout (keep it below the stop grace period)
#   EMBER_LOG_LEVEL               --log-level
#   EMBER_EXTRA_ARGS              more flags, split on whitespace (no shell quoting)
#
# `docker run IMAGE [flags...]` serves with extra flags; `docker run IMAGE serve
# [flags...]` too. `generate`, `bench`, `--version` and `--help` run that ember
# command as is; any other command (e.g. bash) is executed as given.
set -euo pipefail

ember_bin="${EMBER_BIN:-ember}"

case "${1:-}" in
  serve) shift ;;
  generate | bench | --version | -V | --help | -h) exec "$ember_bin" "$@" ;;
  "" | -*) ;;
  *) exec "$@" ;;
esac

global=()
[[ -n "${EMBER_LOG_LEVEL:-}" ]] && global+=(--log-level "$EMBER_LOG_LEVEL")

args=(--host "${EMBER_HOST:-0.0.0.0}" --port "${EMBER_PORT:-8000}")
[[ -n "${EMBER_MODEL:-}" ]] && args+=(--model "$EMBER_MODEL")
[[ -n "${EMBER_DEVICE:-}" ]] && args+=(--device "$EMBER_DEVICE")
[[ -n "${EMBER_MAX_MODEL_LEN:-}" ]] && args+=(--max-model-len "$EMBER_MAX_MODEL_LEN")
[[ -n "${EMBER_GPU_MEMORY_UTILIZATION:-}" ]] && args+=(--gpu-memory-utilization "$EMBER_GPU_MEMORY_UTILIZATION")
[[ -n "${EMBER_SERVED_MODEL_NAME:-}" ]] && args+=(--served-model-name "$EMBER_SERVED_MODEL_NAME")
[[ -n "${EMBER_DRAIN_TIMEOUT:-}" ]] && args+=(--drain-timeout "$EMBER_DRAIN_TIMEOUT")
if [[ -n "${EMBER_EXTRA_ARGS:-}" ]]; then
  read -r -a extra <<<"$EMBER_EXTRA_ARGS"
  args+=("${extra[@]}")
fi

# A missing model is the most common deployment mistake: say so before ember starts.
if [[ -n "${EMBER_MODEL:-}" && ! -e "$EMBER_MODEL" && " $* ${EMBER_EXTRA_ARGS:-} " != *" --model"* ]]; then
  echo "entrypoint: EMBER_MODEL=$EMBER_MODEL does not exist in the container (mount it, e.g. -v \$PWD/models:/models:ro)" >&2
  exit 2
fi

echo "entrypoint: exec $ember_bin ${global[*]} serve ${args[*]} $*" >&2
exec "$ember_bin" "${global[@]}" serve "${args[@]}" "$@"
