"""Symmetric softmax InfoNCE (CLIP): the dense version, and the reduction every implementation shares.

Every implementation (losses/contrastive.py) computes the same per-anchor terms, in each direction
(image -> texts along the rows of the logits s F G^T, text -> images along its columns):
    term_i = lse_i - target_i,   target_i = mean of anchor i's positive logits
(or, with soft targets, alpha times that plus (1 - alpha) times the logits' mean under the teacher's
softmax), plus each anchor's argmax. Both parts come from the same rounded logits, and the term is
evaluated as (max - target) + log(sum exp(logit - max)), each part >= 0 for hard targets: a
converged loss is never negative. `softmax_loss_from_terms` reduces the terms to the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from losses.pairs import pair_masks


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """a @ b accumulated and returned in float32 (or wider) whatever the operands' dtype.

    bfloat16 operands (config.loss.matmul_dtype) multiply at the bf16 tensor-core rate; float32 ones are
    an ordinary matmul.
    """
    return jnp.matmul(a, b, preferred_element_type=jnp.promote_types(a.dtype, jnp.float32))


def logits_from_scale(
    image_embedding: jax.Array, text_embedding: jax.Array, logit_scale: jax.Array, matmul_dtype: str | None = None
) -> jax.Array:
    """[B, D] x [B', D] -> [B, B'] logits exp(logit_scale) * f g^T.

    The scale multiplies f before the matmul, so the logits are its own rounded output: after it, the
    compiler may fuse the multiply into logit - max as an FMA, and the log-sum-exp would see other
    numbers than the positive logit (by up to 4e-6 at s = 100, see losses/tiled.py). matmul_dtype
    (e.g. "bfloat16"): s f and g are rounded to it and multiplied with float32 accumulation.
    """
    scaled = jnp.exp(logit_scale) * image_embedding
    if matmul_dtype is None:
        return scaled @ text_embedding.T
    return matmul(scaled.astype(matmul_dtype), text_embedding.T.astype(matmul_dtype))


def all_valid(image_embedding: jax.Array) -> jax.Array:
    """[B] all-True mask: every row of the batch is a real example."""
    return jnp.ones(image_embedding.shape[:1], bool)


def exp_below_peak(shift: jax.Array) -> jax.Array:
    """exp(shift) for shift = logit - max <= 0, and exactly 1 (derivative 1) where shift is 0.

    XLA's exp(0) can be an ulp off 1; a sum of exponentials below 1 would make log(sum), and so a
    converged loss, negative.
    """
    return jnp.where(shift == 0, 1.0 + shift, jnp.exp(shift))


def softmax_terms_dense(
    logits: jax.Array,
    positive: jax.Array,
    keep: jax.Array,
    col_index: jax.Array,
    seed: tuple[jax.Array, jax.Array] | None = None,
    teacher_logits: jax.Array | None = None,
    alpha: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Per-anchor (term [A], argmax [A]) along axis 1 of logits [A, N], by plain autodiff.

    positive, keep [A, N] bool (losses/pairs.py); col_index [N]: ids the argmax reports (max int where
    a seed candidate wins). seed: (max [A], sum [A]) of extra candidates' exp(logit - max).
    teacher_logits [A, N]: the soft target is their softmax over the kept columns, weight 1 - alpha.
    """
    lowest = jnp.finfo(logits.dtype).min
    masked = jnp.where(keep, logits, lowest)
    block_max = jnp.max(masked, 1)
    peak = block_max if seed is None else jnp.maximum(block_max, seed[0])
    peak = jax.lax.stop_gradient(peak)
    total = jnp.sum(exp_below_peak(jnp.where(keep, logits - peak[:, None], -jnp.inf)), 1)
    if seed is not None:
        total = total + seed[1] * exp_below_peak(seed[0] - peak)
    count = jnp.sum(positive, 1, dtype=logits.dtype)
    target = jnp.sum(jnp.where(positive, logits, 0.0), 1) / jnp.maximum(count, 1.0)
    if teacher_logits is not None:
        teacher = jax.nn.softmax(jnp.where(keep, jax.lax.stop_gradient(teacher_logits), lowest), axis=1)
        target = alpha * target + (1.0 - alpha) * jnp.sum(jnp.where(keep, teacher * logits, 0.0), 1)
    term = (peak - target) + jnp.log(jnp.where(total > 0, total, 1.0))
    arg = col_index[jnp.argmax(masked, 1)]
    if seed is not None:
        arg = jnp.where(seed[0] > block_max, jnp.iinfo(col_index.dtype).max, arg)
    return term, arg


def softmax_loss_from_terms(
    terms: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    row_index: jax.Array,
    col_index: jax.Array,
    valid: jax.Array,
    col_valid: jax.Array,
    weights: jax.Array | None = None,
    directions: str = "both",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss and in-batch top-1 accuracies from per-anchor terms; padded anchors (valid=False) are ignored.

    terms: (row_term [B], col_term [B K], row_argmax [B], col_argmax [B K]), argmaxes as ids;
    row_index [B], col_index [B K]: positive ids; valid [B], col_valid [B K] bool. Column k of
    example i is its k-th positive text: the example's text term is the mean over its valid texts.
    Per-example loss: 1/2 (image term + text term) ("both"), or one direction; the loss is its
    mean weighted by `weights` [B] (default 1) over valid examples.
    """
    row_term, col_term, row_arg, col_arg = terms
    batch = row_term.shape[0]
    col_valid = col_valid.reshape(batch, -1)
    col_count = jnp.maximum(jnp.sum(col_valid, 1), 1).astype(row_term.dtype)
    text_term = jnp.sum(jnp.where(col_valid, col_term.reshape(batch, -1), 0.0), 1) / col_count
    per_example = {"both": 0.5 * (row_term + text_term), "image_to_text": row_term, "text_to_image": text_term}
    weights = jnp.ones_like(row_term) if weights is None else weights.astype(row_term.dtype)
    weights = jnp.where(valid, weights, 0.0)
    loss = jnp.sum(jnp.where(valid, weights * per_example[directions], 0.0)) / jnp.maximum(jnp.sum(weights), 1e-30)
    count = jnp.maximum(jnp.sum(valid), 1).astype(row_term.dtype)
    col_total = jnp.maximum(jnp.sum(col_valid), 1).astype(row_term.dtype)
    metrics = {
        "i2t_accuracy": jnp.sum(valid & (row_arg == row_index)) / count,
        "t2i_accuracy": jnp.sum(col_valid.reshape(-1) & (col_arg == col_index)) / col_total,
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
    side = {"index": jnp.arange(image_embedding.shape[0]), "valid": valid}
    logits = logits_from_scale(image_embedding, text_embedding, logit_scale)
    positive, keep, _ = pair_masks(side, side, logits)
    row_term, row_arg = softmax_terms_dense(logits, positive, keep, side["index"])
    col_term, col_arg = softmax_terms_dense(logits.T, positive.T, keep.T, side["index"])
    terms = (row_term, col_term, row_arg, col_arg)
    return softmax_loss_from_terms(terms, side["index"], side["index"], valid, valid)
