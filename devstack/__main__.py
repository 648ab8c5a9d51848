"""``python -m devstack run|token|job``: development commands behind the Makefile."""

from __future__ import annotations

import argparse
import asyncio
import sys

from devstack import run
from devstack.token import emulator_token
from service.settings import Settings


async def _create_job(user_id: str, book_id: str, file_id: str) -> str:
    from service.store.database import open_store
    from service.store.documents import PdfChapterJob

    store = await open_store(Settings())
    try:
        job = PdfChapterJob(user_id=user_id, book_id=book_id, file_id=file_id)
        await store.jobs.insert(job.model_dump())
        return job.job_id
    finally:
        await store.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the whole service (make run)")
    token = commands.add_parser("token", help="print a development ID token (emulator mode)")
    token.add_argument("user_id")
    token.add_argument("--lifetime", type=int, default=3600, help="seconds (default 3600)")
    edge = commands.add_parser("nginx", help="render nginx/ into a runnable config")
    edge.add_argument("--out", required=True, help="directory to write nginx.conf into")
    edge.add_argument("--upstream", action="append", default=None, help="host:port (repeatable)")
    edge.add_argument("--listen", default="8080")
    job = commands.add_parser("job", help="insert a pending job and print its id")
    job.add_argument("user_id")
    job.add_argument("--book-id", default="book_dev")
    job.add_argument("--file-id", default="file_dev")
    args = parser.parse_args(argv)

    if args.command == "run":
        return run.main()
    if args.command == "nginx":
        from pathlib import Path

        from devstack.nginx import render

        settings = Settings()
        conf = render(
            Path(args.out),
            upstreams=args.upstream or [f"127.0.0.1:{settings.port}"],
            listen=args.listen,
            origins=list(settings.cors_origins),
            max_upload_mb=settings.max_upload_mb,
        )
        print(conf)
        return 0
    if args.command == "token":
        print(
            emulator_token(args.user_id, Settings().firebase_project_id, lifetime_s=args.lifetime)
        )
        return 0
    print(asyncio.run(_create_job(args.user_id, args.book_id, args.file_id)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
