"""The "gathered" contrastive statistics: local rows against all-gathered columns (open_clip's scheme).

Called inside shard_map over the batch axis. Each device all-gathers both embeddings, then computes
its own rows of the image->text matrix and its own rows of the text->image matrix ([b, B] each,
b = B / devices). Gradients flow back through the gather (its transpose is a reduce-scatter), so
each device ends up with the gradient of its own embeddings. Memory per device: O(B d + b B).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _gather(tree, axis_name: str):
    return jax.tree.map(lambda a: lax.all_gather(a, axis_name, tiled=True), tree)


def _masked(logits, valid_rows, valid_cols):
    return jnp.where(valid_rows[:, None] & valid_cols[None, :], logits, jnp.finfo(logits.dtype).min)


def gathered_softmax_lse(x, y, logit_scale, index, valid, *, axis_name: str):
    """This device's (row_lse, col_lse, row_argmax, col_argmax), each [b], from x, y [b, d] and index, valid [b]."""
    all_x, all_y, all_index, all_valid = _gather((x, y, index, valid), axis_name)
    scale = jnp.exp(logit_scale)
    image_to_text = _masked(scale * (x @ all_y.T), valid, all_valid)
    text_to_image = _masked(scale * (y @ all_x.T), valid, all_valid)
    return (
        jax.nn.logsumexp(image_to_text, axis=1),
        jax.nn.logsumexp(text_to_image, axis=1),
        all_index[jnp.argmax(image_to_text, axis=1)],
        all_index[jnp.argmax(text_to_image, axis=1)],
    )


def gathered_sigmoid_row_loss(x, y, logit_scale, logit_bias, index, valid, *, axis_name: str):
    """This device's [b] sums over all valid texts of -log sigmoid(z_ij logit_ij)."""
    all_y, all_index, all_valid = _gather((y, index, valid), axis_name)
    logits = jnp.exp(logit_scale) * (x @ all_y.T) + logit_bias
    sign = jnp.where(index[:, None] == all_index[None, :], 1.0, -1.0).astype(logits.dtype)
    pair_loss = jax.nn.softplus(-sign * logits)
    return jnp.sum(jnp.where(valid[:, None] & all_valid[None, :], pair_loss, 0.0), axis=1)
