"""Llama-family SentencePiece tokenizers (the tokenizer.model of Llama 2, TinyLlama, Mistral, 1.5-Pints) in the
project's id convention.

Llama numbers <unk> 0, <s> 1, </s> 2 and has no padding; the project pads with 0 and reads UNK 1, BOS 2, EOS 3
(input_pipeline/token_ids.py), which the decoder's masks, loss and decoding assume. One relabelling of the
vocabulary makes them agree: Llama's ids 3, 0, 1, 2 become 0, 1, 2, 3 (Llama's 3 is the byte piece <0x00>, a NUL
character, which text does not hold: it becomes padding, and the tokenizer drops it), every other id is unchanged.
A converted checkpoint's embedding rows and output columns are reordered the same way (interop/converters.py), so
the model gives exactly the checkpoint's probabilities to the same pieces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

from configs.errors import ConfigError
from input_pipeline.token_ids import BOS_ID, EOS_ID, PAD_ID

LLAMA_IDS = (3, 0, 1, 2)  # Llama's ids of our PAD (its <0x00>), UNK, BOS, EOS


def vocabulary_order(size: int) -> np.ndarray:
    """[size] int: the Llama id of each of our ids (rows of a Llama embedding taken in this order are ours)."""
    order = np.arange(size)
    order[: len(LLAMA_IDS)] = LLAMA_IDS
    return order


class LlamaTokenizer:
    """Text -> [n, max_len] int32 ids in the project's convention: BOS, pieces, EOS, then PAD (0); EOS kept when
    truncating. `path`: a tokenizer.model file or a folder holding one (a Hugging Face Llama checkpoint)."""

    def __init__(self, path: str):
        file = os.path.join(path, "tokenizer.model") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ConfigError(f"No tokenizer.model at {path!r}; set config.text.tokenizer_path to a Llama model's.")
        self._sp = spm.SentencePieceProcessor(model_file=file)
        specials = (self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.id_to_piece(3))
        if specials != (0, 1, 2, "<0x00>"):
            raise ConfigError(
                f"{file!r} is not a Llama-family SentencePiece model (<unk> 0, <s> 1, </s> 2, byte pieces from 3); "
                "set config.text.tokenizer='sentencepiece' for other SentencePiece models."
            )
        self._llama = vocabulary_order(self.vocab_size)  # our id -> Llama id
        self._ours = np.argsort(self._llama)  # Llama id -> our id

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        out = np.full((len(texts), max_len), PAD_ID, np.int32)
        for row, text in enumerate(texts):
            pieces = [self._ours[i] for i in self._sp.encode(text) if i != LLAMA_IDS[PAD_ID]]
            ids = [BOS_ID, *pieces[: max_len - 2], EOS_ID]
            out[row, : len(ids)] = ids
        return out

    def piece_id(self, piece: str) -> int:
        return int(self._ours[self._sp.piece_to_id(piece)])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special ids and ids past the vocabulary (rows a checkpoint pads its embedding with, or
        holds for tokens of its tokenizer.json that tokenizer.model lacks) give nothing."""
        pieces = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID) and 0 <= int(i) < self.vocab_size]
        return self._sp.decode([int(self._llama[i]) for i in pieces])
