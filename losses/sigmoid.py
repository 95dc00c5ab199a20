"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023; METHODS.md 15a): dense version and shared reduction.

    L = -(1/B) sum_i sum_j log sigmoid(z_ij (t <x_i, y_j> + b)),  z_ij = +1 if i = j else -1,

with t = exp(logit_scale) and a learnable bias b (init log 10 and -10: the bias offsets the
1 : B-1 imbalance of positives to negatives). Every implementation (losses/contrastive.py)
produces the per-row sums over j; `sigmoid_loss_from_stats` averages them over the valid rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from losses.softmax import all_valid, logits_from_scale


def sigmoid_row_loss_dense(
    image_embedding: jax.Array,
    text_embedding: jax.Array,
    logit_scale: jax.Array,
    logit_bias: jax.Array,
    valid: jax.Array,
) -> jax.Array:
    """[B] sums over valid texts j of -log sigmoid(z_ij logit_ij), from the whole [B, B] matrix."""
    logits = logits_from_scale(image_embedding, text_embedding, logit_scale) + logit_bias
    sign = 2.0 * jnp.eye(logits.shape[0], dtype=logits.dtype) - 1.0
    # -log sigmoid(u) = softplus(-u), stable at any temperature.
    pair_loss = jax.nn.softplus(-sign * logits)
    return jnp.sum(jnp.where(valid[:, None] & valid[None, :], pair_loss, 0.0), axis=1)


def sigmoid_loss_from_stats(row_loss: jax.Array, valid: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean over valid rows of the [B] per-row sums; no metrics (the sigmoid loss has no cheap accuracy)."""
    count = jnp.maximum(jnp.sum(valid), 1).astype(row_loss.dtype)
    return jnp.sum(jnp.where(valid, row_loss, 0.0)) / count, {}


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
    row_loss = sigmoid_row_loss_dense(image_embedding, text_embedding, logit_scale, logit_bias, valid)
    return sigmoid_loss_from_stats(row_loss, valid)
