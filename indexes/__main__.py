"""``python -m indexes sync|check``: apply or verify the index specification."""

from __future__ import annotations

import argparse
import asyncio
import sys

from indexes.search_index import sync_vector_index
from indexes.spec import specification
from indexes.sync import compare, sync
from service.retrieval.model import load_model_spec
from service.settings import Settings
from service.store.mongo import create_client


async def _main(command: str, settings: Settings) -> int:
    client = create_client(settings, index_builds=True)
    try:
        db = client[settings.mongodb_db]
        spec = specification(settings)
        if command == "sync":
            for action in await sync(db, spec):
                print(action)
            # Nothing unspecified is dropped, so what is left to report is informational.
            for difference in await compare(db, spec):
                print(f"note: {difference}")
            if settings.vector_search == "atlas":
                model = load_model_spec(settings.embedding_model_dir)
                print(await sync_vector_index(db, model.dimensions))
            print(f"indexes in sync on {settings.mongodb_db}")
            return 0
        differences = await compare(db, spec)
        failures = [d for d in differences if d.problem != "unexpected"]
        for difference in differences:
            print(("FAIL " if difference in failures else "note ") + str(difference))
        if failures:
            print(f"{len(failures)} index(es) missing or different: run `python -m indexes sync`")
            return 1
        print(f"indexes OK on {settings.mongodb_db}")
        return 0
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexes", description=__doc__)
    parser.add_argument("command", choices=["sync", "check"])
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.command, Settings()))


if __name__ == "__main__":
    sys.exit(main())
