"""Masked-language-model pieces shared by SPACE-2's MLM term (losses/space2.py) and CLIMB's objectives
(losses/climb.py): BERT's masking of a batch of token ids, and the token-mean cross-entropy of the masked positions.

The SentencePiece layout of input_pipeline/tokenizer.py: 0 padding, 1 unknown, 2 and 3 the start and end markers;
padding and markers are never masked nor drawn as random pieces. The [MASK] id is one row after the tokenizer's
vocabulary (models/two_tower.py gives the text tower that row).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# input_pipeline/token_ids.py's layout, copied because losses do not import the pipeline (tests check they agree).
UNKNOWN_ID, FIRST_PIECE = 1, 4


def mask_id_of(params) -> int:
    """The [MASK] id: the text tower's embedding row after the tokenizer's vocabulary."""
    return params["text_tower"]["token_embedding"]["embedding"].shape[0] - 1


def mask_pieces(tokens: jax.Array, rng: jax.Array, mask_id: int, probability) -> tuple[jax.Array, jax.Array]:
    """int32 [N, L] -> (inputs [N, L], chosen bool [N, L]): each piece (ids >= FIRST_PIECE, and unknown pieces)
    chosen with `probability` (a number, or [N, L] per token), then 80% [MASK] (`mask_id`), 10% a random piece
    (< mask_id), 10% kept."""
    choose, kind, draw = jax.random.split(rng, 3)
    maskable = (tokens >= FIRST_PIECE) | (tokens == UNKNOWN_ID)
    chosen = maskable & (jax.random.uniform(choose, tokens.shape) < probability)
    u = jax.random.uniform(kind, tokens.shape)
    random_piece = jax.random.randint(draw, tokens.shape, FIRST_PIECE, mask_id)
    replaced = jnp.where(u < 0.8, mask_id, jnp.where(u < 0.9, random_piece, tokens))
    return jnp.where(chosen, replaced, tokens), chosen


def mlm_inputs(tokens: jax.Array, rng: jax.Array, mask_id: int, probability) -> tuple[jax.Array, jax.Array]:
    """int32 [N, L] -> (inputs, labels [N, L], the original piece where chosen, -1 elsewhere): `mask_pieces`."""
    inputs, chosen = mask_pieces(tokens, rng, mask_id, probability)
    return inputs, jnp.where(chosen, tokens, -1)


def mlm_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """logits [N, L, V], labels [N, L] (-1 = not predicted) -> (token-mean cross-entropy, accuracy); 0 if none."""
    predicted = labels >= 0
    count = jnp.maximum(jnp.sum(predicted), 1)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.maximum(labels, 0)[..., None], axis=-1)[..., 0]
    hits = (jnp.argmax(logits, axis=-1) == labels) & predicted
    return -jnp.sum(jnp.where(predicted, picked, 0.0)) / count, jnp.sum(hits) / count
