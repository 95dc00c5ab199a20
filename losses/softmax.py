"""Symmetric softmax InfoNCE (CLIP): the dense version, and the reduction every implementation shares.

Every implementation (losses/contrastive.py) computes the same per-example statistics: the
log-sum-exp of each row (image -> all texts) and of each column (text -> all images) of the
logits s F G^T, plus their argmaxes. The loss is then
    1/2 [mean_i (row_lse_i - s <f_i, g_i>) + mean_j (col_lse_j - s <f_j, g_j>)],
which `softmax_loss_from_stats` evaluates; the positive logits s <f_i, g_i> cost O(B d) and are
differentiated by plain autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def logits_from_scale(image_embedding: jax.Array, text_embedding: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """[B, D] x [B', D] -> [B, B'] logits exp(logit_scale) * f g^T."""
    return jnp.exp(logit_scale) * image_embedding @ text_embedding.T


def positive_logits(image_embedding: jax.Array, text_embedding: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """[B, D], [B, D] -> [B] logits of the matching pairs, exp(logit_scale) <f_i, g_i>."""
    return jnp.exp(logit_scale) * jnp.sum(image_embedding * text_embedding, axis=-1)


def all_valid(image_embedding: jax.Array) -> jax.Array:
    """[B] all-True mask: every row of the batch is a real example."""
    return jnp.ones(image_embedding.shape[:1], bool)


def softmax_lse_dense(
    image_embedding: jax.Array, text_embedding: jax.Array, logit_scale: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Per-example statistics from the whole [B, B] matrix: (row_lse, col_lse, row_argmax, col_argmax), each [B]."""
    logits = logits_from_scale(image_embedding, text_embedding, logit_scale)
    # A finite fill (not -inf) keeps padded rows free of inf - inf in the gradient.
    logits = jnp.where(valid[:, None] & valid[None, :], logits, jnp.finfo(logits.dtype).min)
    return (
        jax.nn.logsumexp(logits, axis=1),
        jax.nn.logsumexp(logits, axis=0),
        jnp.argmax(logits, axis=1),
        jnp.argmax(logits, axis=0),
    )


def softmax_loss_from_stats(
    stats: tuple[jax.Array, jax.Array, jax.Array, jax.Array], positives: jax.Array, valid: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss and in-batch top-1 accuracies from per-example statistics; padded rows (valid=False) are ignored.

    stats: (row_lse, col_lse, row_argmax, col_argmax), each [B], argmaxes as global indices;
    positives [B]: the matching-pair logits; valid [B] bool.
    """
    row_lse, col_lse, row_argmax, col_argmax = stats
    count = jnp.maximum(jnp.sum(valid), 1).astype(positives.dtype)
    per_example = 0.5 * (row_lse + col_lse) - positives
    loss = jnp.sum(jnp.where(valid, per_example, 0.0)) / count
    labels = jnp.arange(valid.shape[0])
    metrics = {
        "i2t_accuracy": jnp.sum(valid & (row_argmax == labels)) / count,
        "t2i_accuracy": jnp.sum(valid & (col_argmax == labels)) / count,
    }
    return loss, metrics


def softmax_contrastive_loss(
    image_embedding: jax.Array,
    text_embedding: jax.Array,
    logit_scale: jax.Array,
    valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CLIP loss 1/2 [CE(s F G^T, I) + CE(s G F^T, I)] over normalised [B, D] embeddings, dense.

    `logit_scale` is the log of s (the clamp at log 100 belongs to the caller's parameter
    handling). `valid` [B] marks real rows (default all); padded rows and columns are left out.
    Returns (loss, metrics) with image->text and text->image in-batch top-1 accuracy.
    """
    valid = all_valid(image_embedding) if valid is None else valid
    stats = softmax_lse_dense(image_embedding, text_embedding, logit_scale, valid)
    return softmax_loss_from_stats(stats, positive_logits(image_embedding, text_embedding, logit_scale), valid)
