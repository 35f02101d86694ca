"""The coordinator's reference tokenizer: the vocabulary of one configured model.

The coordinator sizes sections with exact counts from this tokenizer. Each worker then fits
the sections again with its own tokenizer, so a different vocabulary never overflows a model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import llama_cpp

log = logging.getLogger(__name__)


class ReferenceTokenizer:
    def __init__(self, model_name: str, gguf_path: Path) -> None:
        self.model_name = model_name
        # vocab_only loads the tokenizer without the weights: milliseconds, a few MB.
        self._llama = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
        log.info("Loaded reference tokenizer of %s from %s", model_name, gguf_path)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens of each text, without BOS and with special tokens as plain text."""
        return [
            len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
            for text in texts
        ]
