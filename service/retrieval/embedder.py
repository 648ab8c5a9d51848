"""Text to vectors with onnxruntime on the CPU: one model, loaded once, in the embedding process.

    embedder = Embedder(load_model_spec(None), threads=1)
    vectors = embedder.embed(["How do I quote a string?"], "query")   # float32 (1, 384)

What it does, as sentence-transformers does for these models: put the kind's prefix before each
text, tokenize with truncation at the model's window, run the network on batches padded to their
longest text, pool the last hidden state (mean over real tokens, or the ``[CLS]`` token), and
L2-normalise when the model says so (then inner product = cosine).

Measured on this project's 2-core machines (MiniLM int8, texts of ~220 tokens):
- ``enable_mem_pattern=False`` (NOTES.md: ~560 MB RSS against ~800 MB with the default).
- Batches sorted by length and capped at ``max_batch_tokens`` (2,048: 8 full windows): CPU per
  text (~0.05-0.07 s) does not improve past ~4-8 texts a batch, while memory grows with the
  batch (attention is batch x 12 heads x 256^2 floats a layer): ~370 MB RSS at 8 full texts,
  ~850 MB at 32. The embedding process peaks at 410-450 MB RSS (bench/index.py).
- Idle intra-op threads spin by default, burning a core between batches on a shared machine:
  spinning is off.
- Padding does not change a text's vector (cosine 1.0 between alone and in a padded batch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from service.domain.errors import ModelError
from service.retrieval.model import ModelSpec, Vectors, check_sha256
from service.retrieval.tokens import Kind, TokenCounter

MAX_BATCH_TOKENS = 2048
_MAX_BATCH_TEXTS = 64


class Embedder:
    """One ONNX session and its tokenizer; ``embed`` is synchronous and not thread-safe."""

    def __init__(
        self, spec: ModelSpec, *, threads: int = 1, max_batch_tokens: int = MAX_BATCH_TOKENS
    ) -> None:
        if threads < 1:
            raise ValueError("an embedder needs at least one thread")
        self.spec = spec
        self.tokens = TokenCounter(spec)
        self._max_batch_tokens = max(max_batch_tokens, spec.max_tokens)
        tokenizer = Tokenizer.from_file(spec.tokenizer_path)
        tokenizer.enable_truncation(max_length=spec.max_tokens)
        tokenizer.no_padding()  # we pad per batch, in numpy
        self._tokenizer = tokenizer
        self._session = _session(spec, threads)
        names = {node.name for node in self._session.get_inputs()}
        unknown = names - {"input_ids", "attention_mask", "token_type_ids"}
        if "input_ids" not in names or unknown:
            raise ModelError(
                f"{spec.model_path}: inputs {sorted(names)} are not a BERT-like encoder's "
                "(input_ids, attention_mask, token_type_ids)"
            )
        self._inputs = names
        output = self._session.get_outputs()[0]
        if isinstance(output.shape[-1], int) and output.shape[-1] != spec.dimensions:
            raise ModelError(
                f"{spec.model_path} makes {output.shape[-1]}-d vectors, "
                f"but its config says {spec.dimensions}"
            )

    def embed(self, texts: Sequence[str], kind: Kind) -> Vectors:
        """Vectors of ``texts`` as passages or queries: float32, shape ``(len(texts), dim)``."""
        out = np.empty((len(texts), self.spec.dimensions), dtype=np.float32)
        if not texts:
            return out
        prefix = self.spec.prefix(kind)
        encodings = self._tokenizer.encode_batch([prefix + text for text in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")  # neighbours in length: little padding
        start = 0
        while start < len(order):
            end = start + 1
            while (
                end < len(order)
                and end - start < _MAX_BATCH_TEXTS
                and (end - start + 1) * lengths[order[end]] <= self._max_batch_tokens
            ):
                end += 1
            batch = order[start:end]
            out[batch] = self._run([encodings[i].ids for i in batch], int(lengths[batch[-1]]))
            start = end
        return out

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` without special tokens (the chunker's measure)."""
        return self.tokens.count(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character offsets of ``text``'s tokens, special tokens excluded."""
        return self.tokens.offsets(text)

    def _run(self, ids: list[list[int]], width: int) -> Vectors:
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, row_ids in enumerate(ids):
            input_ids[row, : len(row_ids)] = row_ids
            mask[row, : len(row_ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        if hidden.ndim == 2:  # the export pools itself (a "sentence_embedding" output)
            pooled = hidden
        elif self.spec.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if pooled.shape[1] != self.spec.dimensions:
            raise ModelError(
                f"{self.spec.model_path} made {pooled.shape[1]}-d vectors, "
                f"but its config says {self.spec.dimensions}"
            )
        if self.spec.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)


def _session(spec: ModelSpec, threads: int) -> ort.InferenceSession:
    """A CPU session over the model's bytes, checked against the sha256 of its config first (the
    bytes that run are the bytes that were checked)."""
    try:
        with open(spec.model_path, "rb") as file:
            model = file.read()
    except OSError as exc:
        raise ModelError(f"cannot read the embedding model {spec.model_path}: {exc}") from None
    check_sha256(hashlib.sha256(model).hexdigest(), spec.sha256, spec.model_path)
    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # warnings about unused initializers are not ours to fix
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors have no common public base class
        raise ModelError(f"onnxruntime cannot load {spec.model_path}: {exc}") from None
