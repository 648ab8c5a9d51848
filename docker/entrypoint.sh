#!/bin/sh
# Container entry point: pick a role.
set -eu
role="${1:-api}"
case "$role" in
  api)
    exec granian --interface asgi --factory --host 0.0.0.0 --port "${PORT:-8000}" \
      --workers "${API_WORKERS:-1}" --loop uvloop --no-ws service.app:app_factory ;;
  indexes-sync)
    exec python -m indexes sync ;;
  indexes-check)
    exec python -m indexes check ;;
  *)
    exec "$@" ;;
esac
