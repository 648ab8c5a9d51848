"""``python -m worker``: run the PDF worker until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import sys

from service.settings import Settings
from worker.settings import create_worker


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    create_worker(Settings()).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
