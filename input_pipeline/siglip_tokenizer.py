"""SigLIP's tokenizer: its SentencePiece model (`spiece.model`) with big_vision's text canonicalisation,
as transformers' SiglipTokenizer applies it with padding="max_length" (how SigLIP was trained)."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

from configs.errors import ConfigError

_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonicalize(text: str) -> str:
    """Lower case, ASCII punctuation removed, whitespace runs made one space (big_vision's prompt_engineering)."""
    return re.sub(r"\s+", " ", text.lower().translate(_NO_PUNCTUATION)).strip()


class SiglipTokenizer:
    """Text -> [n, max_len] int32 ids: pieces, end of text `</s>`, then `</s>` again as padding (SigLIP's pad
    is its end id, and its text tower reads the final position); the end is kept when truncating.

    `path` is a spiece.model file or a folder holding one (a Hugging Face SigLIP model)."""

    def __init__(self, path: str):
        file = os.path.join(path, "spiece.model") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ConfigError(f"No spiece.model at {path!r}; set config.text.tokenizer_path to a SigLIP model's.")
        self._sp = spm.SentencePieceProcessor(model_file=file)
        self.end_id = self._sp.piece_to_id("</s>")
        if self._sp.id_to_piece(self.end_id) != "</s>":
            raise ConfigError(f"{file!r} has no </s> piece; pass a SigLIP (T5-style) SentencePiece model.")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        out = np.full((len(texts), max_len), self.end_id, np.int32)
        for row, text in enumerate(texts):
            ids = self._sp.encode(canonicalize(text))[: max_len - 1]
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) != self.end_id])
