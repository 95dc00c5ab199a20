"""WordPiece tokenizer of BERT-family encoders, read from a Hugging Face `tokenizer.json` (the `tokenizers` package)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from configs.errors import ConfigError


class WordPieceTokenizer:
    """Text -> [n, max_len] int32 ids: [CLS], word pieces, [SEP], then [PAD] (0); [SEP] kept when truncating.

    `path` is a tokenizer.json file or a folder holding one (a Hugging Face or sentence-transformers model).
    """

    def __init__(self, path: str):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ConfigError(
                "The wordpiece tokenizer needs the `tokenizers` package; pip install -e '.[interop]'."
            ) from None
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ConfigError(
                f"No tokenizer.json at {path!r}; set config.text.tokenizer_path to a file or folder with one."
            )
        self._tok = Tokenizer.from_file(file)
        self._tok.no_truncation()
        self._tok.no_padding()
        ids = {name: self._tok.token_to_id(name) for name in ("[PAD]", "[CLS]", "[SEP]")}
        if ids["[PAD]"] != 0 or None in ids.values():
            raise ConfigError(f"{file!r} must define [CLS], [SEP] and [PAD] with id 0 (a BERT WordPiece vocabulary).")
        self.sep_id = ids["[SEP]"]

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """Returns [len(texts), max_len] int32."""
        out = np.zeros((len(texts), max_len), np.int32)
        for row, encoding in enumerate(self._tok.encode_batch(list(texts))):
            ids = encoding.ids
            if len(ids) > max_len:
                ids = ids[: max_len - 1] + [self.sep_id]
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)
