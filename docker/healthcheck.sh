#!/bin/bash
# Docker HEALTHCHECK: healthy when GET /health answers 200 (ember answers 503
# while the model loads). Plain bash (/dev/tcp): the image carries no curl.
# Uses EMBER_PORT (the port the entrypoint passes to ember); a --port given in
# EMBER_EXTRA_ARGS or on the command line is not seen here: set EMBER_PORT instead.
set -u
port="${EMBER_PORT:-8000}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
read -r -t 4 status_line <&3 || exit 1
case "$status_line" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "health: $status_line" >&2; exit 1 ;;
esac
