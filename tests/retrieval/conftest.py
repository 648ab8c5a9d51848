"""Fixtures for service/retrieval: the real default model (loaded once), and model directories
assembled from its files with another config."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.retrieval.model import DEFAULT_MODEL_DIR, ModelSpec, load_model_spec
from service.retrieval.tokens import TokenCounter


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return load_model_spec(None)


@pytest.fixture(scope="session")
def counter(spec: ModelSpec) -> TokenCounter:
    return TokenCounter(spec)


@pytest.fixture(scope="session")
def embedder(spec: ModelSpec) -> Any:
    from service.retrieval.embedder import Embedder

    return Embedder(spec)


@pytest.fixture
def model_dir(tmp_path: Path, spec: ModelSpec) -> Callable[..., Path]:
    """``model_dir("e5", pooling="cls", query_prefix="query: ")``: a directory holding the default
    model's files (the ONNX file linked, not copied) and its config with these changes."""

    def make(folder: str = "custom", **changes: Any) -> Path:
        directory = tmp_path / folder
        directory.mkdir()
        shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", directory / "tokenizer.json")
        (directory / "model.onnx").symlink_to(spec.model_path)
        config = json.loads((DEFAULT_MODEL_DIR / "embedding.json").read_text())
        del config["model_package"]
        config.update(changes)
        (directory / "embedding.json").write_text(json.dumps(config))
        return directory

    return make
