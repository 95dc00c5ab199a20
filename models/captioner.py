"""A captioner that reads one vector per example through a decoder LM's input: LiMBeR's and CLOSE's model.

A linear map turns the vector (a frozen CLIP run's unit-norm image or text embedding, [B, D]) into `prefix_tokens`
embeddings of the LM's width, placed before the caption's tokens (models/language_model.py's `prefix`). LiMBeR
(Merullo et al. 2023) trains the map alone (the LM frozen, dropout 0.1 on the prefix), CLOSE (Gu et al. 2023) the
map and the LM from text embeddings; METHODS.md §18-19.

Params: {"prefix_map": {kernel [D, K W], bias [K W]}, "lm": the DecoderLM's}, so a trained language-model run's
checkpoint loads into "lm" as it is (training/caption_task.py) and generation runs the LM with
`prefix(features)` (evaluation/captioning_eval.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from models.language_model import DecoderLM


class PrefixCaptioner(nn.Module):
    """features [B, D] and caption tokens [B, C] -> the DecoderLM's {"logits" [B, C, V], "hidden"} and cache."""

    lm: DecoderLM
    prefix_tokens: int
    dropout: float = 0.0  # on the prefix embeddings while training (LiMBeR's 0.1)

    def setup(self):
        self.prefix_map = nn.Dense(self.prefix_tokens * self.lm.width, name="prefix_map")
        self.prefix_dropout = nn.Dropout(self.dropout)

    def prefix(self, features: jax.Array, deterministic: bool = True) -> jax.Array:
        """features [B, D] -> prefix embeddings [B, prefix_tokens, LM width]."""
        x = self.prefix_map(features).reshape(features.shape[0], self.prefix_tokens, self.lm.width)
        return self.prefix_dropout(x, deterministic=deterministic)

    def __call__(self, features: jax.Array, tokens: jax.Array, *, deterministic: bool = True):
        return self.lm(tokens, prefix=self.prefix(features, deterministic))
