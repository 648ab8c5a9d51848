"""service/retrieval/embedder.py: the real MiniLM model on onnxruntime, in this process."""

from __future__ import annotations

import numpy as np
import pytest

from service.retrieval.embedder import Embedder
from service.retrieval.model import load_model_spec


def test_vectors_are_384_float32_of_unit_length(embedder):
    vectors = embedder.embed(["The harbour froze in January.", "", "x " * 2000], "passage")

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_paraphrase_scores_higher_than_an_unrelated_sentence(embedder):
    query = embedder.embed(["How can I stop a running program?"], "query")[0]
    passages = embedder.embed(
        [
            "To terminate a process that is executing, send it a kill signal.",
            "The committee approved the budget for the new library building.",
        ],
        "passage",
    )

    paraphrase, unrelated = passages @ query

    assert paraphrase > unrelated + 0.2


def test_a_text_has_the_same_vector_alone_and_in_a_padded_batch(embedder):
    text = "Lists are ordered collections."
    batch = [text, "A much longer sentence that makes every other text in its batch padded. " * 6]

    alone = embedder.embed([text], "passage")[0]
    together = embedder.embed(batch, "passage")[0]

    assert float(alone @ together) > 0.9999


def test_order_is_kept_however_texts_are_batched(spec):
    small_batches = Embedder(spec, max_batch_tokens=spec.max_tokens)  # one long text a batch
    texts = [f"Sentence number {i} " + "word " * (i * 20) for i in range(12)]

    one_by_one = np.stack([small_batches.embed([text], "passage")[0] for text in texts])
    batched = small_batches.embed(texts[::-1], "passage")[::-1]

    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_no_texts_give_an_empty_matrix(embedder):
    assert embedder.embed([], "query").shape == (0, 384)


def test_prefixes_are_applied_by_kind(model_dir):
    prefixed = Embedder(
        load_model_spec(str(model_dir("e5", query_prefix="query: ", passage_prefix="passage: ")))
    )
    plain = Embedder(load_model_spec(str(model_dir("plain"))))
    text = "tides follow the moon"

    as_query, as_passage = (prefixed.embed([text], kind)[0] for kind in ("query", "passage"))
    reference = plain.embed(["query: " + text, "passage: " + text, text], "query")

    np.testing.assert_allclose(as_query, reference[0], atol=1e-5)
    np.testing.assert_allclose(as_passage, reference[1], atol=1e-5)
    assert float(as_query @ reference[2]) < 0.999  # the prefix made a difference


def test_cls_pooling_and_no_normalisation_follow_the_config(model_dir, embedder):
    cls = Embedder(load_model_spec(str(model_dir("cls", pooling="cls", normalize=False))))
    text = ["The lighthouse keeper logs every ship."]

    raw = cls.embed(text, "passage")[0]
    mean = embedder.embed(text, "passage")[0]

    assert abs(float(np.linalg.norm(raw)) - 1.0) > 0.01  # not normalised
    assert float(raw @ mean / np.linalg.norm(raw)) < 0.99  # another pooling, another vector


def test_token_counts_and_offsets_exclude_special_tokens(embedder, counter):
    text = "Hello, harbour-master!"

    offsets = embedder.token_offsets(text)

    assert embedder.count_tokens(text) == len(offsets) == counter.count(text)
    assert [text[a:b] for a, b in offsets] == ["Hello", ",", "harbour", "-", "master", "!"]
    assert counter.special_tokens == 2
    assert counter.budget("passage") == 254


def test_counting_sees_past_the_window(counter):
    # tokenizer.json ships with truncation at 128: counting must not inherit it.
    assert counter.count("word " * 1000) == 1000


def test_a_config_with_the_wrong_dimensions_is_refused(model_dir):
    from service.domain.errors import ModelError

    with pytest.raises(ModelError, match="384-d vectors, but its config says 768"):
        Embedder(load_model_spec(str(model_dir(dimensions=768))))
