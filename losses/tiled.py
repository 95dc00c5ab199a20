"""Per-example statistics of the softmax and sigmoid losses, computed tile by tile (Inf-CL's idea).

The logits are s * x y^T with s = exp(logit_scale). Each function here has a custom VJP: the
forward pass keeps an online log-sum-exp (softmax) or running sums (sigmoid) per row and column,
and the backward pass recomputes every tile from the embeddings instead of storing it. Memory is
O((R + C) d + tile^2), never O(R C).

The same code serves the `tiled` implementation (one device, `axis_name=None`) and the `ring`
implementations (inside shard_map: columns travel round `axis_name`, see losses/blockwise.py).
Inputs are the rows a device holds: x, y [R, d], `index` [R] (global example number; the
positive pair of row i is the column with the same index) and `valid` [R] (False for padding).
R must be a multiple of `tile`: callers pad with valid=False.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from losses.blockwise import ring_sweep


def _masked_logits(rows, cols, scale):
    """[tile, tile] logits and validity mask of one block."""
    logits = scale * (rows["x"] @ cols["x"].T)
    return logits, rows["valid"][:, None] & cols["valid"][None, :]


def _online_update(state, logits, axis: int, index):
    """Folds one block into a running (max, sum of exp(logit - max), argmax) along `axis`.

    Ties keep the smaller global index, as jnp.argmax does on the whole matrix.
    """
    running_max, running_sum, running_arg = state
    block_max = jnp.max(logits, axis)
    block_arg = index[jnp.argmax(logits, axis)]
    new_max = jnp.maximum(running_max, block_max)
    # The masked value is finite (finfo.min), so exp(masked - max) is 0, never exp(inf - inf).
    new_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
        jnp.exp(logits - jnp.expand_dims(new_max, axis)), axis
    )
    take = (block_max > running_max) | ((block_max == running_max) & (block_arg < running_arg))
    return new_max, new_sum, jnp.where(take, block_arg, running_arg)


def _softmax_forward_body(scale):
    def body(rows, cols, row_state, col_state, acc):
        logits, mask = _masked_logits(rows, cols, scale)
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        row_state = _online_update(row_state, logits, 1, cols["index"])
        col_state = _online_update(col_state, logits, 0, rows["index"])
        return row_state, col_state, acc

    return body


def _softmax_backward_body(scale):
    def body(rows, cols, dx, dy, dlogit_scale):
        logits, mask = _masked_logits(rows, cols, scale)
        # d row_lse_i / d logit_ij is the row softmax, d col_lse_j / d logit_ij the column softmax.
        row_prob = jnp.exp(jnp.where(mask, logits - rows["lse"][:, None], -jnp.inf))
        col_prob = jnp.exp(jnp.where(mask, logits - cols["lse"][None, :], -jnp.inf))
        dlogits = rows["g"][:, None] * row_prob + cols["g"][None, :] * col_prob
        dx = dx + scale * (dlogits @ cols["x"])
        dy = dy + scale * (dlogits.T @ rows["x"])
        # d logit_ij / d logit_scale = logit_ij, since logit = exp(logit_scale) <x, y>.
        return dx, dy, dlogit_scale + jnp.sum(dlogits * logits)

    return body


def _compute_dtype(x, y, logit_scale):
    return jnp.result_type(x.dtype, y.dtype, logit_scale.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def softmax_lse(tile: int, axis_name: str | None, axis_size: int, x, y, logit_scale, index, valid):
    """Row and column log-sum-exp (and argmax) of the masked logits exp(logit_scale) x y^T.

    x, y [R, d]; index, valid [R]. Returns (row_lse [R], col_lse [R], row_argmax [R],
    col_argmax [R]); argmaxes are global indices. With `axis_name`, rows are this device's and
    columns range over all devices of the axis. Entries for rows with valid=False are meaningless.
    """
    return _softmax_forward(tile, axis_name, axis_size, x, y, logit_scale, index, valid)[0]


def _softmax_forward(tile, axis_name, axis_size, x, y, logit_scale, index, valid):
    dtype = _compute_dtype(x, y, logit_scale)
    n = x.shape[0]
    no_index = jnp.full((n,), jnp.iinfo(index.dtype).max, index.dtype)
    init = (jnp.full((n,), jnp.finfo(dtype).min, dtype), jnp.zeros((n,), dtype), no_index)
    rows = {"x": x, "index": index, "valid": valid}
    cols = {"x": y, "index": index, "valid": valid}
    row_state, col_state, _ = ring_sweep(
        _softmax_forward_body(jnp.exp(logit_scale)), rows, cols, init, init, (), tile, axis_name, axis_size
    )
    row_lse = row_state[0] + jnp.log(row_state[1])
    col_lse = col_state[0] + jnp.log(col_state[1])
    outputs = (row_lse, col_lse, row_state[2], col_state[2])
    return outputs, (x, y, logit_scale, index, valid, row_lse, col_lse)


def _softmax_backward(tile, axis_name, axis_size, residuals, cotangents):
    x, y, logit_scale, index, valid, row_lse, col_lse = residuals
    g_row, g_col = cotangents[0], cotangents[1]
    dtype = _compute_dtype(x, y, logit_scale)
    rows = {"x": x, "index": index, "valid": valid, "lse": row_lse, "g": g_row}
    cols = {"x": y, "index": index, "valid": valid, "lse": col_lse, "g": g_col}
    dx, dy, dlogit_scale = ring_sweep(
        _softmax_backward_body(jnp.exp(logit_scale)),
        rows,
        cols,
        jnp.zeros(x.shape, dtype),
        jnp.zeros(y.shape, dtype),
        jnp.zeros((), dtype),
        tile,
        axis_name,
        axis_size,
    )
    if axis_name is not None:
        # logit_scale is replicated: its cotangent is the sum of every device's blocks.
        dlogit_scale = lax.psum(dlogit_scale, axis_name)
    dlogit_scale = jnp.reshape(dlogit_scale, logit_scale.shape).astype(logit_scale.dtype)
    return dx.astype(x.dtype), dy.astype(y.dtype), dlogit_scale, None, None


softmax_lse.defvjp(_softmax_forward, _softmax_backward)


def _sigmoid_logits(rows, cols, scale, bias):
    """Block logits s <x, y> + b, labels z = +1 on positive pairs and -1 elsewhere, and mask."""
    logits, mask = _masked_logits(rows, cols, scale)
    sign = jnp.where(rows["index"][:, None] == cols["index"][None, :], 1.0, -1.0).astype(logits.dtype)
    return logits + bias, sign, mask


def _sigmoid_forward_body(scale, bias):
    def body(rows, cols, row_loss, col_acc, acc):
        logits, sign, mask = _sigmoid_logits(rows, cols, scale, bias)
        # -log sigmoid(z * logit) = softplus(-z * logit), stable at any temperature.
        pair_loss = jnp.where(mask, jax.nn.softplus(-sign * logits), 0.0)
        return row_loss + jnp.sum(pair_loss, 1), col_acc, acc

    return body


def _sigmoid_backward_body(scale, bias):
    def body(rows, cols, dx, dy, acc):
        logits, sign, mask = _sigmoid_logits(rows, cols, scale, bias)
        dlogits = jnp.where(mask, -sign * jax.nn.sigmoid(-sign * logits) * rows["g"][:, None], 0.0)
        dx = dx + scale * (dlogits @ cols["x"])
        dy = dy + scale * (dlogits.T @ rows["x"])
        dlogit_scale, dlogit_bias = acc
        return dx, dy, (dlogit_scale + jnp.sum(dlogits * (logits - bias)), dlogit_bias + jnp.sum(dlogits))

    return body


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def sigmoid_row_loss(tile: int, axis_name: str | None, axis_size: int, x, y, logit_scale, logit_bias, index, valid):
    """Per-row sums of -log sigmoid(z_ij (exp(logit_scale) <x_i, y_j> + logit_bias)) over valid columns.

    x, y [R, d]; index, valid [R]. Returns [R]. With `axis_name`, rows are this device's and
    columns range over all devices of the axis.
    """
    return _sigmoid_forward(tile, axis_name, axis_size, x, y, logit_scale, logit_bias, index, valid)[0]


def _sigmoid_forward(tile, axis_name, axis_size, x, y, logit_scale, logit_bias, index, valid):
    dtype = _compute_dtype(x, y, logit_scale)
    body = _sigmoid_forward_body(jnp.exp(logit_scale), logit_bias)
    rows = {"x": x, "index": index, "valid": valid}
    cols = {"x": y, "index": index, "valid": valid}
    row_loss, _, _ = ring_sweep(body, rows, cols, jnp.zeros(x.shape[:1], dtype), (), (), tile, axis_name, axis_size)
    return row_loss, (x, y, logit_scale, logit_bias, index, valid)


def _sigmoid_backward(tile, axis_name, axis_size, residuals, g_row):
    x, y, logit_scale, logit_bias, index, valid = residuals
    dtype = _compute_dtype(x, y, logit_scale)
    rows = {"x": x, "index": index, "valid": valid, "g": g_row}
    cols = {"x": y, "index": index, "valid": valid}
    dx, dy, (dlogit_scale, dlogit_bias) = ring_sweep(
        _sigmoid_backward_body(jnp.exp(logit_scale), logit_bias),
        rows,
        cols,
        jnp.zeros(x.shape, dtype),
        jnp.zeros(y.shape, dtype),
        (jnp.zeros((), dtype), jnp.zeros((), dtype)),
        tile,
        axis_name,
        axis_size,
    )
    if axis_name is not None:
        dlogit_scale, dlogit_bias = lax.psum((dlogit_scale, dlogit_bias), axis_name)
    dlogit_scale = jnp.reshape(dlogit_scale, logit_scale.shape).astype(logit_scale.dtype)
    dlogit_bias = jnp.reshape(dlogit_bias, logit_bias.shape).astype(logit_bias.dtype)
    return dx.astype(x.dtype), dy.astype(y.dtype), dlogit_scale, dlogit_bias, None, None


sigmoid_row_loss.defvjp(_sigmoid_forward, _sigmoid_backward)
