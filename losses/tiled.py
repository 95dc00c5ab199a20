"""Per-example contrastive terms computed tile by tile (Inf-CL's idea), on one device or round a ring.

The logits are s * x y^T with s = exp(logit_scale). Each function here has a custom VJP: the
forward pass keeps running statistics per row and column (an online log-sum-exp for the softmax,
running sums for the sigmoid), and the backward pass recomputes every tile from the embeddings
instead of storing it. Memory is O((R + C) d + tile^2), never O(R C).

The same code serves the `tiled` implementation (one device, `axis_name=None`) and the `ring`
implementations (inside shard_map: columns travel round `axis_name`, see losses/blockwise.py).
Inputs are the rows and columns a device holds: x [R, d], y [C, d] and side dicts `rows`, `cols`
of per-example data (losses/pairs.py: index, valid, optional group, domain, threshold; and
`teacher` [n, dt] for soft targets). R and C must be multiples of `tile`: callers pad with
valid=False.

Positives are read off the same tiles as the log-sum-exp, so each term lse - positive is computed
from one set of rounded logits and is never negative (it is (max - positive) + log(sum), each >= 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from losses.blockwise import ring_sweep
from losses.pairs import pair_masks
from losses.softmax import exp_below_peak, matmul


def _kahan_add(acc, value):
    """Compensated running sum (total, lost low-order part): a scalar summed over many tiles cancels."""
    total, compensation = acc
    corrected = value - compensation
    new_total = total + corrected
    return new_total, (new_total - total) - corrected


def _kahan_zero(dtype):
    return jnp.zeros((), dtype), jnp.zeros((), dtype)


def _kahan_value(acc):
    return acc[0] - acc[1]


def _tile_logits(rows, cols):
    """Block logits and teacher logits; the rows come pre-scaled (`_scaled_rows`)."""
    teacher = rows["teacher"] @ cols["teacher"].T if "teacher" in rows else None
    return matmul(rows["x"], cols["x"].T), teacher


def _scaled_rows(rows, x, scale, teacher_scale, matmul_dtype=None):
    """rows with x (and the teacher's) multiplied by the scale before the matmul, x then in `matmul_dtype`.

    The logits are then the matmul's own rounded output. With s * (x @ y^T) the compiler may fuse
    the multiply into logit - max as an FMA, whose unrounded product differs from the logit the max
    saw (by up to 4e-6 at s = 100): the log-sum-exp and the positive would see different numbers.
    With matmul_dtype bfloat16 the scaled rows are rounded once, after the scale (as the dense loss does).
    """
    rows = {**rows, "x": _in_matmul_dtype(scale * x, matmul_dtype)}
    if teacher_scale is not None:
        rows["teacher"] = teacher_scale * rows["teacher"]
    return rows


def _in_matmul_dtype(a, matmul_dtype):
    return a if matmul_dtype is None else a.astype(matmul_dtype)


def _grad_matmul(dlogits, other):
    """dlogits [n, m] @ other [m, d] with dlogits rounded to the operand's dtype (bf16 stays bf16-rate)."""
    return matmul(dlogits.astype(other.dtype), other)


def _transpose(a):
    return None if a is None else a.T


def _fold(state, logits, keep, positive, col_index, teacher):
    """Folds one block into the running per-anchor statistics along axis 1.

    Ties of the argmax keep the smaller column id, as jnp.argmax does on the whole matrix.
    """
    lowest = jnp.finfo(logits.dtype).min
    masked = jnp.where(keep, logits, lowest)
    block_max = jnp.max(masked, 1)
    block_arg = col_index[jnp.argmax(masked, 1)]
    new_max = jnp.maximum(state["max"], block_max)
    take = (block_max > state["max"]) | ((block_max == state["max"]) & (block_arg < state["arg"]))
    new = {
        "max": new_max,
        "sum": state["sum"] * exp_below_peak(state["max"] - new_max)
        + jnp.sum(jnp.where(keep, exp_below_peak(logits - new_max[:, None]), 0.0), 1),
        "arg": jnp.where(take, block_arg, state["arg"]),
        "pos": state["pos"] + jnp.sum(jnp.where(positive, logits, 0.0), 1),
        "count": state["count"] + jnp.sum(positive, 1, dtype=logits.dtype),
    }
    if teacher is not None:
        teacher_max = jnp.maximum(state["teacher_max"], jnp.max(jnp.where(keep, teacher, lowest), 1))
        weight = jnp.where(keep, jnp.exp(teacher - teacher_max[:, None]), 0.0)
        rescale = jnp.exp(state["teacher_max"] - teacher_max)
        new["teacher_max"] = teacher_max
        new["teacher_sum"] = state["teacher_sum"] * rescale + jnp.sum(weight, 1)
        new["teacher_dot"] = state["teacher_dot"] * rescale + jnp.sum(weight * logits, 1)
    return new


def _init_state(n, dtype, index_dtype, seed_max, seed_sum, teacher: bool):
    lowest = jnp.finfo(dtype).min
    state = {
        "max": jnp.full((n,), lowest, dtype) if seed_max is None else seed_max.astype(dtype),
        "sum": jnp.zeros((n,), dtype) if seed_sum is None else seed_sum.astype(dtype),
        "arg": jnp.full((n,), jnp.iinfo(index_dtype).max, index_dtype),
        "pos": jnp.zeros((n,), dtype),
        "count": jnp.zeros((n,), dtype),
    }
    if teacher:
        state.update(teacher_max=jnp.full((n,), lowest, dtype), teacher_sum=jnp.zeros((n,), dtype))
        state["teacher_dot"] = jnp.zeros((n,), dtype)
    return state


def _finish(state, alpha):
    """(term, argmax, residuals) of one side: term = lse - target with target = alpha * mean positive
    logit + (1 - alpha) * E_teacher[logit]; lse = max + log(sum), whose parts are each >= the target."""
    total = jnp.where(state["sum"] > 0, state["sum"], 1.0)
    target = state["pos"] / jnp.maximum(state["count"], 1.0)
    residuals = {"lse": state["max"] + jnp.log(total), "count": state["count"]}
    if "teacher_sum" in state:
        teacher_total = jnp.where(state["teacher_sum"] > 0, state["teacher_sum"], 1.0)
        target = alpha * target + (1.0 - alpha) * state["teacher_dot"] / teacher_total
        residuals["teacher_lse"] = state["teacher_max"] + jnp.log(teacher_total)
    return (state["max"] - target) + jnp.log(total), state["arg"], residuals


def _softmax_forward_body():
    def body(rows, cols, row_state, col_state, acc):
        logits, teacher = _tile_logits(rows, cols)
        positive, row_keep, col_keep = pair_masks(rows, cols, logits)
        row_state = _fold(row_state, logits, row_keep, positive, cols["index"], teacher)
        col_state = _fold(col_state, logits.T, col_keep.T, positive.T, rows["index"], _transpose(teacher))
        return row_state, col_state, acc

    return body


def _direction_grad(side, logits, keep, positive, teacher, alpha):
    """d term / d logits along axis 1 times the cotangent, and its part of d loss / d logit_scale.

    d term_i / d logit_ij = p_ij - w_ij (softmax minus target). The scale's part, sum (p - w) logit,
    is summed as sum (p - w) (logit - lse): the same number since each row's p - w sums to 0 (the
    seeds' share is added back by the caller), without cancelling terms of size |logit|.
    """
    shifted = jnp.where(keep, logits - side["lse"][:, None], 0.0)
    prob = jnp.where(keep, jnp.exp(shifted), 0.0)
    target = jnp.where(positive, alpha / jnp.maximum(side["count"], 1.0)[:, None], 0.0)
    if teacher is not None:
        target = target + (1.0 - alpha) * jnp.where(keep, jnp.exp(teacher - side["teacher_lse"][:, None]), 0.0)
    dlogits = side["g"][:, None] * (prob - target)
    return dlogits, jnp.sum(dlogits * shifted)


def _softmax_backward_body(scale, alpha):
    def body(rows, cols, dx, dy, acc):
        logits, teacher = _tile_logits(rows, cols)
        positive, row_keep, col_keep = pair_masks(rows, cols, logits)
        d_row, scale_row = _direction_grad(rows, logits, row_keep, positive, teacher, alpha)
        d_col, scale_col = _direction_grad(cols, logits.T, col_keep.T, positive.T, _transpose(teacher), alpha)
        dlogits = d_row + d_col.T
        dx = dx + scale * _grad_matmul(dlogits, cols["x"])
        dy = dy + _grad_matmul(dlogits.T, rows["x"])
        return dx, dy, _kahan_add(acc, scale_row + scale_col)

    return body


def _compute_dtype(x, y, logit_scale):
    return jnp.result_type(x.dtype, y.dtype, logit_scale.dtype)


def _teacher_scale(teacher_logit_scale):
    return None if teacher_logit_scale is None else jnp.exp(lax.stop_gradient(teacher_logit_scale))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def softmax_terms(
    tile, axis_name, axis_size, alpha, matmul_dtype, x, y, logit_scale, rows, cols, seeds, teacher_logit_scale
):
    """Per-anchor softmax cross-entropy terms of the masked logits exp(logit_scale) x y^T, both directions.

    x [R, d], y [C, d]; rows, cols: side dicts (losses/pairs.py), plus `teacher` [n, dt] when
    `teacher_logit_scale` is given. seeds: optional `row_max`, `row_sum` [R] / `col_max`, `col_sum`
    [C], the online log-sum-exp state of extra candidates outside the matrix (sum of exp(logit -
    max); the max gets no gradient). alpha (static): weight of the positives in the target, the rest
    on the teacher's softmax. matmul_dtype (static): None, or e.g. "bfloat16" for the logits' and
    gradients' matmuls to take operands in that dtype (accumulated in float32; statistics stay float32).
    Returns (row_term [R], col_term [C], row_argmax [R], col_argmax [C]), argmaxes as column / row ids
    (max int where an extra candidate wins). With `axis_name`, rows are this device's and columns range
    over all devices of the axis. Terms of padded rows are meaningless.
    """
    return _softmax_forward(
        tile, axis_name, axis_size, alpha, matmul_dtype, x, y, logit_scale, rows, cols, seeds, teacher_logit_scale
    )[0]


def _softmax_forward(
    tile, axis_name, axis_size, alpha, matmul_dtype, x, y, logit_scale, rows, cols, seeds, teacher_logit_scale
):
    dtype = _compute_dtype(x, y, logit_scale)
    teacher = teacher_logit_scale is not None
    row_init = _init_state(x.shape[0], dtype, rows["index"].dtype, seeds.get("row_max"), seeds.get("row_sum"), teacher)
    col_init = _init_state(y.shape[0], dtype, cols["index"].dtype, seeds.get("col_max"), seeds.get("col_sum"), teacher)
    row_side = _scaled_rows(rows, x, jnp.exp(logit_scale), _teacher_scale(teacher_logit_scale), matmul_dtype)
    col_side = {**cols, "x": _in_matmul_dtype(y, matmul_dtype)}
    row_state, col_state, _ = ring_sweep(
        _softmax_forward_body(), row_side, col_side, row_init, col_init, (), tile, axis_name, axis_size
    )
    row_term, row_arg, row_res = _finish(row_state, alpha)
    col_term, col_arg, col_res = _finish(col_state, alpha)
    residuals = (x, y, logit_scale, rows, cols, seeds, teacher_logit_scale, row_res, col_res)
    return (row_term, col_term, row_arg, col_arg), residuals


def _seed_grads(seeds, side, valid, g, prefix):
    """Cotangent of the seed sum, and the seeds' share -g lse p_seed of d loss / d logit_scale."""
    if f"{prefix}_sum" not in seeds:
        return {}, 0.0
    share = jnp.where(valid, jnp.exp(seeds[f"{prefix}_max"] - side["lse"]), 0.0)
    grads = {f"{prefix}_max": jnp.zeros_like(seeds[f"{prefix}_max"]), f"{prefix}_sum": g * share}
    return grads, -jnp.sum(g * side["lse"] * share * seeds[f"{prefix}_sum"])


def _softmax_backward(tile, axis_name, axis_size, alpha, matmul_dtype, residuals, cotangents):
    x, y, logit_scale, rows, cols, seeds, teacher_logit_scale, row_res, col_res = residuals
    g_row, g_col = cotangents[0], cotangents[1]
    dtype = _compute_dtype(x, y, logit_scale)
    scale = jnp.exp(logit_scale)
    row_side = {**_scaled_rows(rows, x, scale, _teacher_scale(teacher_logit_scale), matmul_dtype), **row_res}
    row_side["g"] = g_row
    col_side = {**cols, **col_res, "x": _in_matmul_dtype(y, matmul_dtype), "g": g_col}
    body = _softmax_backward_body(scale, alpha)
    dx, dy, acc = ring_sweep(
        body,
        row_side,
        col_side,
        jnp.zeros(x.shape, dtype),
        jnp.zeros(y.shape, dtype),
        _kahan_zero(dtype),
        tile,
        axis_name,
        axis_size,
    )
    row_seed, row_share = _seed_grads(seeds, row_side, rows["valid"], g_row, "row")
    col_seed, col_share = _seed_grads(seeds, col_side, cols["valid"], g_col, "col")
    dlogit_scale = _kahan_value(acc) + row_share + col_share
    if axis_name is not None:
        # logit_scale is replicated: its cotangent is the sum of every device's blocks.
        dlogit_scale = lax.psum(dlogit_scale, axis_name)
    dlogit_scale = jnp.reshape(dlogit_scale, logit_scale.shape).astype(logit_scale.dtype)
    seed_grads = {**row_seed, **col_seed}
    return dx.astype(x.dtype), dy.astype(y.dtype), dlogit_scale, None, None, seed_grads, None


softmax_terms.defvjp(_softmax_forward, _softmax_backward)


def _sigmoid_logits(rows, cols, bias):
    """Block logits s <x, y> + b, labels z = +1 on positive pairs and -1 elsewhere, and the pairs kept."""
    logits, _ = _tile_logits(rows, cols)
    positive, keep, _ = pair_masks(rows, cols, logits)
    return logits + bias, jnp.where(positive, 1.0, -1.0).astype(logits.dtype), keep


def _sigmoid_forward_body(bias):
    def body(rows, cols, row_loss, col_acc, acc):
        logits, sign, keep = _sigmoid_logits(rows, cols, bias)
        # -log sigmoid(z * logit) = softplus(-z * logit), stable at any temperature.
        pair_loss = jnp.where(keep, jax.nn.softplus(-sign * logits), 0.0)
        return row_loss + jnp.sum(pair_loss, 1), col_acc, acc

    return body


def _sigmoid_backward_body(scale, bias):
    def body(rows, cols, dx, dy, acc):
        logits, sign, keep = _sigmoid_logits(rows, cols, bias)
        dlogits = jnp.where(keep, -sign * jax.nn.sigmoid(-sign * logits) * rows["g"][:, None], 0.0)
        dx = dx + scale * _grad_matmul(dlogits, cols["x"])
        dy = dy + _grad_matmul(dlogits.T, rows["x"])
        scale_acc, bias_acc = acc
        return (
            dx,
            dy,
            (_kahan_add(scale_acc, jnp.sum(dlogits * (logits - bias))), _kahan_add(bias_acc, jnp.sum(dlogits))),
        )

    return body


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def sigmoid_row_loss(
    tile: int, axis_name: str | None, axis_size: int, matmul_dtype, x, y, logit_scale, logit_bias, rows, cols
):
    """Per-row sums of -log sigmoid(z_ij (exp(logit_scale) <x_i, y_j> + logit_bias)) over the kept pairs.

    x [R, d], y [C, d]; rows, cols: side dicts (losses/pairs.py); z = +1 on positives. Returns [R].
    With `axis_name`, rows are this device's and columns range over all devices of the axis.
    matmul_dtype: as softmax_terms.
    """
    return _sigmoid_forward(tile, axis_name, axis_size, matmul_dtype, x, y, logit_scale, logit_bias, rows, cols)[0]


def _sigmoid_forward(tile, axis_name, axis_size, matmul_dtype, x, y, logit_scale, logit_bias, rows, cols):
    dtype = _compute_dtype(x, y, logit_scale)
    rows = _scaled_rows(rows, x, jnp.exp(logit_scale), None, matmul_dtype)
    row_loss, _, _ = ring_sweep(
        _sigmoid_forward_body(logit_bias),
        rows,
        {**cols, "x": _in_matmul_dtype(y, matmul_dtype)},
        jnp.zeros(x.shape[:1], dtype),
        (),
        (),
        tile,
        axis_name,
        axis_size,
    )
    return row_loss, (x, y, logit_scale, logit_bias, rows, cols)


def _sigmoid_backward(tile, axis_name, axis_size, matmul_dtype, residuals, g_row):
    x, y, logit_scale, logit_bias, rows, cols = residuals
    dtype = _compute_dtype(x, y, logit_scale)
    dx, dy, (scale_acc, bias_acc) = ring_sweep(
        _sigmoid_backward_body(jnp.exp(logit_scale), logit_bias),
        {**_scaled_rows(rows, x, jnp.exp(logit_scale), None, matmul_dtype), "g": g_row},
        {**cols, "x": _in_matmul_dtype(y, matmul_dtype)},
        jnp.zeros(x.shape, dtype),
        jnp.zeros(y.shape, dtype),
        (_kahan_zero(dtype), _kahan_zero(dtype)),
        tile,
        axis_name,
        axis_size,
    )
    dlogit_scale, dlogit_bias = _kahan_value(scale_acc), _kahan_value(bias_acc)
    if axis_name is not None:
        dlogit_scale, dlogit_bias = lax.psum((dlogit_scale, dlogit_bias), axis_name)
    dlogit_scale = jnp.reshape(dlogit_scale, logit_scale.shape).astype(logit_scale.dtype)
    dlogit_bias = jnp.reshape(dlogit_bias, logit_bias.shape).astype(logit_bias.dtype)
    return dx.astype(x.dtype), dy.astype(y.dtype), dlogit_scale, dlogit_bias, None, None


sigmoid_row_loss.defvjp(_sigmoid_forward, _sigmoid_backward)
