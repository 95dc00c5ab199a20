"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023; METHODS.md 15a): dense version and shared reduction.

    L = -(1/B) sum_i sum_j log sigmoid(z_ij (t <x_i, y_j> + b)),  z_ij = +1 if i = j else -1,

with t = exp(logit_scale) and a learnable bias b (init log 10 and -10: the bias offsets the
1 : B-1 imbalance of positives to negatives). Every implementation (losses/contrastive.py)
produces the per-row sums over j; `sigmoid_loss_from_stats` averages them over the valid rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from losses.pairs import pair_masks
from losses.softmax import all_valid, logits_from_scale


def sigmoid_row_loss_dense(logits: jax.Array, positive: jax.Array, keep: jax.Array, logit_bias: jax.Array) -> jax.Array:
    """[A] sums over the kept candidates of -log sigmoid(z_ij (logit_ij + b)), from logits [A, N].

    positive, keep [A, N] bool (losses/pairs.py); z = +1 on positives, -1 elsewhere.
    """
    sign = jnp.where(positive, 1.0, -1.0).astype(logits.dtype)
    # -log sigmoid(u) = softplus(-u), stable at any temperature.
    pair_loss = jax.nn.softplus(-sign * (logits + logit_bias))
    return jnp.sum(jnp.where(keep, pair_loss, 0.0), axis=1)


def sigmoid_loss_from_stats(
    row_loss: jax.Array, valid: jax.Array, weights: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean over valid rows of the [B] per-row sums, weighted by `weights` [B] (default 1); no metrics
    (the sigmoid loss has no cheap accuracy)."""
    weights = jnp.ones_like(row_loss) if weights is None else weights.astype(row_loss.dtype)
    weights = jnp.where(valid, weights, 0.0)
    return jnp.sum(jnp.where(valid, weights * row_loss, 0.0)) / jnp.maximum(jnp.sum(weights), 1e-30), {}


def sigmoid_contrastive_loss(
    image_embedding: jax.Array,
    text_embedding: jax.Array,
    logit_scale: jax.Array,
    logit_bias: jax.Array,
    valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SigLIP loss over normalised [B, D] embeddings, dense; `logit_scale` is log t, `logit_bias` is b.

    `valid` [B] marks real rows (default all); padded rows and columns are left out. Returns
    (loss, {}).
    """
    valid = all_valid(image_embedding) if valid is None else valid
    side = {"index": jnp.arange(image_embedding.shape[0]), "valid": valid}
    logits = logits_from_scale(image_embedding, text_embedding, logit_scale)
    positive, keep, _ = pair_masks(side, side, logits)
    return sigmoid_loss_from_stats(sigmoid_row_loss_dense(logits, positive, keep, logit_bias), valid)
