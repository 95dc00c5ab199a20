"""The per-example transform of text-only training: tokenize each text field of a record."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from input_pipeline.child_text import POS_TAGS, word_piece_tags
from input_pipeline.tokenizer import Tokenizer


@dataclasses.dataclass
class TextTransform(grain.transforms.RandomMap):
    """Record -> {field: int32 [max_len]} for each string field, one uniformly drawn member (per
    example per epoch) tokenized for each tuple-of-strings field (e.g. CCP's "context"), arrays as they are, and
    int32 scalars for integer fields (e.g. "language"). The batch has no "image"."""

    tokenizer: Tokenizer
    max_len: int

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        example = {}
        for key, value in record.items():
            if isinstance(value, (tuple, list)):
                value = value[int(rng.integers(len(value)))]
            if isinstance(value, str):
                example[key] = self.tokenizer.encode([value], self.max_len)[0]
            elif isinstance(value, np.ndarray):  # e.g. a captioner's prefix features (training/caption_task.py)
                example[key] = value
            else:
                example[key] = np.int32(value)
        return example


@dataclasses.dataclass
class TaggedTextTransform(grain.transforms.RandomMap):
    """Record {"text", "pos": a tag per word} -> {"text": int32 [max_len], "tags": int32 [max_len]}: each piece's
    class for CLIMB's word-class task, 1 + the index of its word's tag in `classes` (tag names of
    child_text.POS_TAGS), 0 for a word of another tag, -1 at the markers and padding."""

    tokenizer: Tokenizer
    max_len: int
    classes: tuple[str, ...]

    def __post_init__(self):
        # child_text.POS_TAGS index (+1 for the -1 off words) -> class id
        self._class_of = np.array([-1] + [1 + self.classes.index(t) if t in self.classes else 0 for t in POS_TAGS])

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        del rng
        ids, tags = word_piece_tags(self.tokenizer, record["text"], record["pos"], self.max_len)
        return {"text": ids, "tags": self._class_of[tags + 1].astype(np.int32)}
