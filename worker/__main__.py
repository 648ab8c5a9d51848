"""``python -m worker``: run the PDF worker until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from service.logs import configure_logging
from service.settings import Settings
from worker.metrics import serve as serve_metrics
from worker.wiring import create_worker


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    serve_metrics(settings.worker_metrics_port, settings.worker_metrics_host, token)
    create_worker(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
