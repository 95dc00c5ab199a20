"""The per-example transform of text-only training: tokenize each text field of a record."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

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
