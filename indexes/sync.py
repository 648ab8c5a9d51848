"""Compare the indexes in MongoDB with the specification, and make them match.

Only the differences are touched. A changed TTL is applied with ``collMod`` (no rebuild, no data
lost); any other change to a named index rebuilds that one index. Indexes that are not in the
specification are reported and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from indexes.spec import Specification

# Options that change what an index is; everything else (v, ns, background) is incidental.
_COMPARED_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")


@dataclass(frozen=True)
class Difference:
    """One index that is not as specified."""

    collection: str
    name: str
    problem: str  # "missing", "different", or "unexpected"
    detail: str

    def __str__(self) -> str:
        return f"{self.collection}.{self.name}: {self.problem} ({self.detail})"


def _shape(index: dict[str, Any]) -> dict[str, Any]:
    key = [(field, order) for field, order in dict(index["key"]).items()]
    if any(order == "text" or field == "_fts" for field, order in key):
        return _text_shape(index, key)
    shape: dict[str, Any] = {"key": key}
    for option in _COMPARED_OPTIONS:
        value = index.get(option)
        if option == "unique" and not value:
            continue
        if value is not None:
            shape[option] = int(value) if option == "expireAfterSeconds" else value
    return shape


def _text_shape(index: dict[str, Any], key: list[tuple[str, Any]]) -> dict[str, Any]:
    """A text index as declared and as the server lists it (``_fts``/``_ftsx`` with the text
    fields in ``weights``) reduced to one form: its other fields, its text fields and weights,
    its language settings."""
    if "weights" in index and any(field == "_fts" for field, _ in key):  # as the server lists it
        weights = {field: int(weight) for field, weight in dict(index["weights"]).items()}
    else:
        declared = dict(index.get("weights") or {})
        weights = {f: int(declared.get(f, 1)) for f, order in key if order == "text"}
    others = [(f, o) for f, o in key if o != "text" and f not in ("_fts", "_ftsx")]
    return {
        "key": [*others, ("$text", ",".join(sorted(weights)))],
        "weights": dict(sorted(weights.items())),
        "default_language": index.get("default_language", "english"),
        "language_override": index.get("language_override", "language"),
    }


def _describe(shape: dict[str, Any]) -> str:
    keys = ", ".join(f"{field}: {order}" for field, order in shape["key"])
    options = ", ".join(f"{k}={v}" for k, v in shape.items() if k != "key")
    return "{" + keys + "}" + (f" {options}" if options else "")


async def _existing(db: AsyncDatabase[Any], collection: str) -> dict[str, dict[str, Any]]:
    if collection not in await db.list_collection_names(filter={"name": collection}):
        return {}
    indexes = await db[collection].index_information()
    return {name: {"key": info["key"], **info} for name, info in indexes.items() if name != "_id_"}


async def compare(db: AsyncDatabase[Any], spec: Specification) -> list[Difference]:
    """Every missing, different and unexpected index, in specification order."""
    differences: list[Difference] = []
    for collection, models in spec.items():
        existing = await _existing(db, collection)
        wanted_names = set()
        for model in models:
            wanted = model.document
            name = wanted["name"]
            wanted_names.add(name)
            want = _shape(wanted)
            if name not in existing:
                differences.append(Difference(collection, name, "missing", _describe(want)))
                continue
            have = _shape(existing[name])
            if have != want:
                detail = f"expected {_describe(want)}, found {_describe(have)}"
                differences.append(Difference(collection, name, "different", detail))
        for name, info in existing.items():
            if name not in wanted_names:
                detail = _describe(_shape(info)) + " (left alone)"
                differences.append(Difference(collection, name, "unexpected", detail))
    return differences


def _only_ttl_differs(want: dict[str, Any], have: dict[str, Any]) -> bool:
    strip = {k: v for k, v in want.items() if k != "expireAfterSeconds"}
    return (
        "expireAfterSeconds" in want
        and "expireAfterSeconds" in have
        and strip == {k: v for k, v in have.items() if k != "expireAfterSeconds"}
    )


async def sync(db: AsyncDatabase[Any], spec: Specification) -> list[str]:
    """Make MongoDB match the specification; return what was done (empty when nothing was)."""
    actions: list[str] = []
    for collection, models in spec.items():
        existing = await _existing(db, collection)
        for model in models:
            wanted = model.document
            name = wanted["name"]
            want = _shape(wanted)
            if name in existing:
                have = _shape(existing[name])
                if have == want:
                    continue
                if _only_ttl_differs(want, have):
                    await db.command(
                        "collMod",
                        collection,
                        index={"name": name, "expireAfterSeconds": want["expireAfterSeconds"]},
                    )
                    actions.append(
                        f"{collection}.{name}: expireAfterSeconds "
                        f"{have['expireAfterSeconds']} -> {want['expireAfterSeconds']} (collMod)"
                    )
                    continue
                await db[collection].drop_index(name)
                actions.append(f"{collection}.{name}: dropped to rebuild ({_describe(have)})")
            else:
                # Same keys under another name would make create_index fail: rename by rebuild.
                for other, info in existing.items():
                    if _shape(info)["key"] == want["key"] and other != name:
                        await db[collection].drop_index(other)
                        actions.append(f"{collection}.{other}: dropped, replaced by {name}")
            await db[collection].create_indexes([IndexModel(**_model_args(wanted))])
            actions.append(f"{collection}.{name}: created {_describe(want)}")
    return actions


def _model_args(document: dict[str, Any]) -> dict[str, Any]:
    args = dict(document)
    keys = list(dict(args.pop("key")).items())
    return {"keys": keys, **args}
