"""Text towers by config name: `clip` (causal transformer, pooled at end of text) or `bert` (BERT family)."""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp

from models.bert import BertEncoder
from models.text_transformer import TextTransformer

TEXT_TOWERS = {"clip": TextTransformer, "bert": BertEncoder}
# Pooling choices each tower implements (config.model.text.pool).
TEXT_POOLING = {"clip": ("last", "argmax", "eos", "final"), "bert": ("mean", "first")}
# config.model.text keys that only the clip tower reads.
_CLIP_ONLY = ("causal", "eos_token_id")


def text_tower(
    config: Mapping, vocab_size: int, *, remat: bool, dtype: jnp.dtype, scan_layers: bool = False, **transformer
) -> nn.Module:
    """The tower named by config["kind"] (default `clip`), built from the rest of `config` (config.model.text);
    `transformer` (attention, layer_norm_dtype: models/transformer.py) applies to the `clip` tower only, as
    do the clip tower's own switches (causal, eos_token_id), which the config holds for every kind."""
    options = dict(config)
    kind = options.pop("kind", "clip")
    if kind == "clip":
        options.update(transformer)
    else:
        options = {k: v for k, v in options.items() if k not in _CLIP_ONLY}
    return TEXT_TOWERS[kind](vocab_size=vocab_size, **options, remat=remat, dtype=dtype, scan_layers=scan_layers)
