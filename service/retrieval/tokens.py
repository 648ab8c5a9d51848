"""The model's tokenizer, for counting: how many tokens a text is, and where each one starts.

Only ``tokenizers`` (Rust, a few MB), never onnxruntime: the worker chunks a chapter with this in
its own process, and only the embedding process loads the network.

Counts are without the special tokens (``[CLS]``/``[SEP]``): ``special_tokens`` says how many the
model adds, and ``budget`` how many a passage may have so that prefix + passage + specials fit
the model's window.
"""

from __future__ import annotations

from typing import Literal

from tokenizers import Tokenizer

from service.domain.errors import ModelError
from service.retrieval.model import ModelSpec

Kind = Literal["passage", "query"]


class TokenCounter:
    """Counts and token offsets with the model's own tokenizer (no truncation, no padding)."""

    def __init__(self, spec: ModelSpec) -> None:
        try:
            tokenizer = Tokenizer.from_file(spec.tokenizer_path)
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise ModelError(f"cannot load the tokenizer {spec.tokenizer_path}: {exc}") from None
        # The file may carry its own truncation and padding (MiniLM's: 128 and fixed 128): a
        # count must see the whole text.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.spec = spec
        self.special_tokens = tokenizer.num_special_tokens_to_add(is_pair=False)
        self._prefix_tokens = {kind: self.count(spec.prefix(kind)) for kind in ("passage", "query")}

    # encode_batch, not encode: tokenizers' encode holds the GIL for the whole text (measured:
    # a thread encoding a page's text stalled the event loop ~60 ms a call), encode_batch lets
    # it go while Rust works, so a worker chunking a chapter in a thread keeps serving its jobs.

    def count(self, text: str) -> int:
        """Tokens in ``text``, special tokens not included."""
        return len(self._tokenizer.encode_batch([text], add_special_tokens=False)[0].ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Each token's ``(start, end)`` character offsets in ``text``, special tokens excluded."""
        return self._tokenizer.encode_batch([text], add_special_tokens=False)[0].offsets

    def budget(self, kind: Kind = "passage") -> int:
        """Tokens a text of ``kind`` may have before the model would cut it: the window less the
        special tokens and the kind's prefix."""
        return self.spec.max_tokens - self.special_tokens - self._prefix_tokens[kind]
