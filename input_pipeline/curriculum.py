"""CLIMB's curricula on the host (Diehl Martinez et al. 2023, METHODS.md §26): the data curriculum's source, and the
ranking of a tokenizer's pieces that the vocabulary curriculum hides from the least probable (losses/climb.py).

`CurriculumSource` is the data curriculum: the stream's example i belongs to step i // global batch, and is drawn
uniformly from the easiest d(step) of the source (CLIMB's uniform sampling under the pacing function's limit; d is
losses/pacing.py's, passed in as `share_at`). Its records are in step order, so the pipeline must not shuffle them
(`in_step_order`), and each is a pure function of (seed, i): resuming from a checkpointed iterator gives the same
stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from sentencepiece import sentencepiece_model_pb2

FIRST_RANKED = 4  # the first id after padding, unknown and the two markers (input_pipeline/token_ids.py)


def piece_ranks(tokenizer) -> np.ndarray:
    """int32 [vocab]: each piece's rank among the tokenizer's learnt pieces, most probable first (SentencePiece's
    unigram score), for the vocabulary curriculum; -1 for what it never hides: padding, markers, unknown, byte
    and control pieces. (CLIMB ranks by BPE id, i.e. merge order; a unigram model's ids follow its scores too, but
    its byte pieces come first in id order and are rare, so they are taken out of the ranking here.) A tokenizer
    without a SentencePiece model (a pretrained one) ranks its pieces by id."""
    proto = getattr(tokenizer, "model_proto", None)
    if proto is None:
        ranks = np.arange(tokenizer.vocab_size, dtype=np.int32) - FIRST_RANKED
        return np.where(ranks >= 0, ranks, -1).astype(np.int32)
    pieces = sentencepiece_model_pb2.ModelProto.FromString(proto).pieces
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.Type.NORMAL
    learnt = sorted((i for i, p in enumerate(pieces) if p.type == normal), key=lambda i: (-pieces[i].score, i))
    ranks = np.full(len(pieces), -1, np.int32)
    ranks[learnt] = np.arange(len(learnt), dtype=np.int32)
    return ranks


class CurriculumSource:
    """The data curriculum over `source`: record i of this stream is source[order[j]], j uniform in the easiest
    ceil(d · N) of `order` (the source's indices by `difficulty`, easiest first), d = share_at(i // global batch).

    Length total_steps x global_batch_size (the pipeline repeats it past the end at full difficulty's last step).
    """

    in_step_order = True  # input_pipeline/pipeline.py keeps the order: shuffling would mix the steps

    def __init__(
        self, source, difficulty: np.ndarray, share_at: Callable[[int], float], *, total_steps: int,
        global_batch_size: int, seed: int,
    ):  # fmt: skip
        if len(difficulty) != len(source):
            raise ValueError(f"{len(difficulty)} difficulties for a source of {len(source)} records.")
        self.source, self.share_at, self.total_steps = source, share_at, total_steps
        self.global_batch_size, self.seed = global_batch_size, seed
        self.order = np.argsort(np.asarray(difficulty), kind="stable")

    def __len__(self) -> int:
        return self.total_steps * self.global_batch_size

    def pool(self, step: int) -> int:
        """How many of the easiest records step `step` draws from: share_at(step) of them, at least one."""
        return max(1, math.ceil(float(self.share_at(step)) * len(self.order)))

    def __getitem__(self, index: int):
        index = int(index) % len(self)
        rng = np.random.default_rng((self.seed, index))
        pick = int(rng.integers(self.pool(index // self.global_batch_size)))
        return self.source[int(self.order[pick])]

    def tokenizer_corpus(self):
        """The wrapped source's texts, once each, as text_sources.texts reads them (training/text_task.corpus): every
        arm of a curriculum comparison trains the same tokenizer as its baseline."""
        own = getattr(self.source, "tokenizer_corpus", None)
        return own() if own else (self.source[i]["text"] for i in range(min(len(self.source), 20_000)))
