#!/bin/sh
# Container entry point: the first argument picks the role.
set -eu
role="${1:-api}"
[ "$#" -gt 0 ] && shift
case "$role" in
  api)
    # The flags of devstack/api.py (make run, the tests and benchmarks serve the API alike).
    # SIGTERM: granian stops accepting and drains in-flight requests before exiting. Event
    # streams last as long as their job: after 10 s they are cut, and EventSource clients
    # reconnect (Last-Event-ID) to another instance.
    # Every open event stream is a request in flight: granian's default of 1,024 per worker
    # would stall everything else at 1,024 streams (STREAM_MAX_OPEN stays below this).
    exec granian --interface asgi --factory --host 0.0.0.0 --port "${PORT:-8000}" \
      --workers "${API_WORKERS:-1}" --backpressure "${GRANIAN_BACKPRESSURE:-8192}" \
      --loop uvloop --no-ws --workers-kill-timeout 10 service.api.app:app_factory ;;
  worker)
    exec python -m worker ;;
  indexes-sync)
    exec python -m indexes sync ;;
  indexes-check)
    exec python -m indexes check ;;
  nginx-config)
    # Render nginx/ for the nginx container: nginx-config OUT_DIR UPSTREAM [UPSTREAM...]
    out="$1"; shift
    set -- $(for upstream in "$@"; do printf -- '--upstream %s ' "$upstream"; done)
    exec python -m devstack nginx --out "$out" --listen "${NGINX_LISTEN:-8080}" "$@" ;;
  *)
    echo "unknown role: $role (api, worker, indexes-sync, indexes-check, nginx-config)" >&2
    exit 64 ;;
esac
