"""The "gathered" contrastive statistics: local rows against all-gathered columns (open_clip's scheme).

Called inside shard_map over the batch axis. Each device all-gathers both embeddings, then computes
its own rows of the image->text matrix and its own columns of a second product for text->image
([b, B] each, b = B / devices). Gradients flow back through the gather (its transpose is a reduce-scatter), so
each device ends up with the gradient of its own embeddings. Memory per device: O(B d + b B).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from losses.pairs import pair_masks
from losses.sigmoid import sigmoid_row_loss_dense
from losses.softmax import softmax_terms_dense


def _gather(tree, axis_name):
    return jax.tree.map(lambda a: lax.all_gather(a, axis_name, tiled=True), tree)


def _seed(seeds, prefix):
    return (seeds[f"{prefix}_max"], seeds[f"{prefix}_sum"]) if f"{prefix}_sum" in seeds else None


def gathered_softmax_terms(x, y, logit_scale, rows, cols, seeds, teacher_logit_scale, *, axis_name, alpha: float):
    """This device's (row_term [b], col_term [c], row_argmax [b], col_argmax [c]), as losses.tiled.softmax_terms.

    x [b, d], y [c, d]: this device's rows and columns; rows, cols: their side dicts.
    """
    (all_x, all_rows), (all_y, all_cols) = _gather(((x, rows), (y, cols)), axis_name)
    scale = jnp.exp(logit_scale)
    image_to_text = (scale * x) @ all_y.T
    text_to_image = (scale * all_x) @ y.T  # [B, c]: its own product, read along the columns
    row_teacher = col_teacher = None
    if teacher_logit_scale is not None:
        teacher_scale = jnp.exp(lax.stop_gradient(teacher_logit_scale))
        row_teacher = (teacher_scale * rows["teacher"]) @ all_cols["teacher"].T
        col_teacher = ((teacher_scale * all_rows["teacher"]) @ cols["teacher"].T).T
    positive, row_keep, _ = pair_masks(rows, all_cols, image_to_text)
    row_term, row_arg = softmax_terms_dense(
        image_to_text, positive, row_keep, all_cols["index"], _seed(seeds, "row"), row_teacher, alpha
    )
    positive, _, col_keep = pair_masks(all_rows, cols, text_to_image)
    col_term, col_arg = softmax_terms_dense(
        text_to_image.T, positive.T, col_keep.T, all_rows["index"], _seed(seeds, "col"), col_teacher, alpha
    )
    return row_term, col_term, row_arg, col_arg


def gathered_sigmoid_row_loss(x, y, logit_scale, logit_bias, rows, cols, *, axis_name):
    """This device's [b] sums over all kept texts of -log sigmoid(z_ij logit_ij)."""
    all_y, all_cols = _gather((y, cols), axis_name)
    logits = jnp.exp(logit_scale) * (x @ all_y.T)
    positive, keep, _ = pair_masks(rows, all_cols, logits)
    return sigmoid_row_loss_dense(logits, positive, keep, logit_bias)
