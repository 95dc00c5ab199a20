"""The plain contrastive losses as fused Pallas kernels: a logit tile never leaves on-chip memory.

losses/tiled.py computes the same per-anchor statistics with jnp ops on [tile, tile] blocks, so each block
goes to device memory between the matmul and the max / exp / sum passes; at large batch that traffic, not
the matmuls, bounds it. Here one kernel per pass does the matmul and the reductions on a [block, block]
tile in registers (Triton on GPU), in the flash-attention pattern: the grid runs over row blocks, each
program loops over column blocks, and each tile's matmul loops over the features in chunks. On the CPU
the same kernels run in Pallas' interpret mode (slow, exact: for tests). TPU would need a (row, column)
grid with VMEM scratch: not written yet.

Scope: positives by equal `index` (one-to-one pairs, several texts per image, positive groups) and a
`valid` mask, softmax (both directions) and sigmoid. Group / domain false negatives, margins, extra
negatives and teacher targets stay with the jnp implementations (losses/contrastive.py checks).

Every kernel is written for the rows: `a` [R, d] against `b` [C, d]. Column statistics are the same
kernel on (b, a) — one more matmul in the forward pass, none stored — and the gradient of the columns is
the rows' gradient kernel with the sides swapped, since d loss / d logits is symmetric in its two parts.
Rows come scaled (a = s x), so logits are the matmul's own rounded output, as in losses/tiled.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

# The kernels' shape on a GPU, chosen by compiling their Triton IR for sm_90 (H100 / H200) on a CPU host with OpenAI
# Triton (benchmarks/triton_resources.py; speed not yet measured on a device). Each matmul steps over the features
# CHUNK at a time (the GEMM pattern: _logits), so a program stages only [block, CHUNK] slices in shared memory
# (32 KiB at block 64 in float32, whatever d) and d needs padding to a multiple of CHUNK only. What bounds the block
# is the gradient kernels' [block, d] float32 accumulator in registers: at block 64 and 8 warps it takes 128
# registers a thread at d = 512, and the kernels compile without spilling up to d = 512 (d = 768: 80-264 bytes
# a thread). Block 128 spills in every gradient kernel, block 32 more than 64 (Hopper's warpgroup matmuls take
# 64 rows); 16 warps cap a thread at 128 registers and spill too (BENCHMARKS.md "What the kernels ask of a GPU").
DEFAULT_BLOCK = 64  # tile_size 0
CHUNK = 32  # features per matmul step
TRITON = plgpu.CompilerParams(num_warps=8, num_stages=2)


def _acc(dtype):
    """The accumulation and statistics dtype for operands of `dtype`: float32, or float64 under x64."""
    return jnp.promote_types(dtype, jnp.float32)


def _precision():
    """The matmuls' precision as jax's default sets it for XLA's: Triton takes float32 operands as TF32 unless
    told HIGHEST, which `jax_default_matmul_precision=float32` (or "highest") asks for."""
    full = str(jax.config.jax_default_matmul_precision).lower() in ("float32", "highest")
    return lax.Precision.HIGHEST if full else None


def _dot_t(a, b):
    """a [n, d] @ b [m, d]^T accumulated in _acc (bf16 operands run at the bf16 rate)."""
    dims = (((1,), (1,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=_precision(), preferred_element_type=_acc(a.dtype))


def _dot(a, b):
    dims = (((1,), (0,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=_precision(), preferred_element_type=_acc(b.dtype))


def _exp_below_peak(shift):
    # exp(0) exactly 1 (losses/softmax.exp_below_peak): a converged term never goes below 0.
    return jnp.where(shift == 0, 1.0, jnp.exp(shift))


def _softplus(t):
    return jnp.maximum(t, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(t)))


def _sigmoid(t):
    e = jnp.exp(-jnp.abs(t))
    return jnp.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logits(a_ref, b_ref, cols):
    """a_ref's rows @ b_ref[cols]^T [rows, block], accumulated over the features `CHUNK` at a time (the GEMM
    pattern): only [block, CHUNK] slices of the operands are on chip at once, so the block need not shrink as d
    grows, and Triton pipelines the loads of the next slice behind the current matmul."""

    def step(k, logits):
        features = pl.ds(pl.multiple_of(k * CHUNK, CHUNK), CHUNK)
        return logits + _dot_t(a_ref[:, features], b_ref[cols, features])

    zeros = jnp.zeros((a_ref.shape[0], cols.size), _acc(a_ref.dtype))
    return lax.fori_loop(0, a_ref.shape[1] // CHUNK, step, zeros)


def _tile(a_ref, b_ref, a_index, b_index_ref, b_valid_ref, a_valid, start, block):
    """(logits, positive, keep) of a_ref's rows against columns [start, start + block) of b."""
    cols = pl.ds(start, block)
    logits = _logits(a_ref, b_ref, cols)
    keep = b_valid_ref[cols][None, :] != 0
    if a_valid is not None:
        keep = keep & (a_valid[:, None] != 0)
    positive = keep & (a_index[:, None] == b_index_ref[cols][None, :])
    return logits, positive, keep


def _feature_chunks(d):
    """Static slices of the features, CHUNK wide: the gradient's [rows, d] accumulator is kept as one register
    tile per slice, each fed by a [block, CHUNK] slice of b."""
    return [pl.ds(start, CHUNK) for start in range(0, d, CHUNK)]


def _add_products(grads, dlogits, b_ref, cols):
    """grads[c] + dlogits @ b[cols, chunk c] for each feature chunk c; dlogits [rows, block] in b's dtype."""
    dlogits, chunks = dlogits.astype(b_ref.dtype), _feature_chunks(b_ref.shape[1])
    return tuple(g + _dot(dlogits, b_ref[cols, f]) for g, f in zip(grads, chunks, strict=True))


def _zero_grads(rows, d, dtype):
    """The gradient accumulator of `rows` rows: one [rows, CHUNK] zero tile per feature chunk."""
    return tuple(jnp.zeros((rows, f.size), dtype) for f in _feature_chunks(d))


def _store_grads(ref, grads):
    """Writes the per-chunk accumulator into the [rows, d] output `ref`."""
    for g, f in zip(grads, _feature_chunks(ref.shape[1]), strict=True):
        ref[:, f] = g


def _row_specs(block, n_b, d):
    """BlockSpecs of (a [R, d], a-side vectors, b [C, d], b-side vectors): a by row block, b whole."""
    return (
        pl.BlockSpec((block, d), lambda i: (i, 0)),
        pl.BlockSpec((block,), lambda i: (i,)),
        pl.BlockSpec((n_b, d), lambda i: (0, 0)),
        pl.BlockSpec((n_b,), lambda i: (0,)),
    )


def _call(kernel, name, block, a, a_vectors, b, b_vectors, out_shape, scalars=()):
    """pallas_call over row blocks of a; outputs are [R] vectors or [R, d]; scalars: [1] arrays, whole."""
    if jax.default_backend() == "tpu":
        raise ValueError("implementation='fused' has GPU and CPU kernels only; on TPU set config.loss.implementation "
                         "to 'tiled' or 'ring_tiled'.")  # fmt: skip
    a_spec, a_vec, b_spec, b_vec = _row_specs(block, b.shape[0], a.shape[1])
    out_specs = [a_spec if len(shape.shape) == 2 else a_vec for shape in out_shape]
    operands = (a, *a_vectors, b, *b_vectors, *scalars)

    def call(*operands, interpret: bool):
        return pl.pallas_call(
            kernel,
            grid=(a.shape[0] // block,),
            in_specs=[a_spec]
            + [a_vec] * len(a_vectors)
            + [b_spec]
            + [b_vec] * len(b_vectors)
            + [pl.BlockSpec((1,), lambda i: (0,))] * len(scalars),
            out_specs=out_specs,
            out_shape=out_shape,
            interpret=interpret,
            compiler_params=TRITON,
            name=name,
        )(*operands)

    # Pallas has no CPU compiler: there the kernels are interpreted (exact, slow; for tests). Chosen when the
    # step is lowered, not when it is traced, so a CPU host can lower the Triton kernels for a GPU too
    # (jax.export, ahead-of-time compilation; tests/test_triton_resources.py checks that they lower).
    return lax.platform_dependent(
        *operands, cpu=functools.partial(call, interpret=True), default=functools.partial(call, interpret=False)
    )


def _vector(n, dtype):
    return jax.ShapeDtypeStruct((n,), dtype)


def _softmax_stats(block, a, a_index, b, b_index, b_valid):
    """Per row of a against the kept columns of b: (term = lse - mean positive logit, lse, positive count,
    position of the first maximum or C where none is kept), each [R]."""
    n_rows, n_cols, acc = a.shape[0], b.shape[0], _acc(a.dtype)
    lowest = jnp.finfo(acc).min

    def kernel(a_ref, a_index_ref, b_ref, b_index_ref, b_valid_ref, term_ref, lse_ref, count_ref, arg_ref):
        a_index, rows = a_index_ref[...], a_ref.shape[0]

        def body(j, carry):
            top, total, arg, pos, count = carry
            start = j * block
            logits, positive, keep = _tile(a_ref, b_ref, a_index, b_index_ref, b_valid_ref, None, start, block)
            masked = jnp.where(keep, logits, lowest)
            block_top = jnp.max(masked, 1)
            position = start + jnp.arange(block, dtype=jnp.int32)[None, :]
            block_arg = jnp.min(jnp.where(masked == block_top[:, None], position, n_cols), 1)
            new_top = jnp.maximum(top, block_top)
            # Earlier blocks hold smaller positions: a tie keeps the earlier maximum, as jnp.argmax does.
            arg = jnp.where(block_top > top, block_arg, arg)
            shifted = jnp.where(keep, _exp_below_peak(logits - new_top[:, None]), 0.0)
            total = total * jnp.exp(top - new_top) + jnp.sum(shifted, 1)
            pos = pos + jnp.sum(jnp.where(positive, logits, 0.0), 1)
            count = count + jnp.sum(positive.astype(acc), 1)
            return new_top, total, arg, pos, count

        zeros = jnp.zeros((rows,), acc)
        init = (zeros + lowest, zeros, jnp.full((rows,), n_cols, jnp.int32), zeros, zeros)
        top, total, arg, pos, count = lax.fori_loop(0, n_cols // block, body, init)
        total = jnp.where(total > 0, total, 1.0)
        # (max - target) + log(sum): each part >= 0, so a term is never negative (losses/tiled.py).
        term_ref[...] = (top - pos / jnp.maximum(count, 1.0)) + jnp.log(total)
        lse_ref[...] = top + jnp.log(total)
        count_ref[...] = count
        arg_ref[...] = arg

    out_shape = [_vector(n_rows, acc)] * 3 + [_vector(n_rows, jnp.int32)]
    return _call(kernel, "contrastive_softmax_stats", block, a, (a_index,), b, (b_index, b_valid), out_shape)


def _softmax_grad(block, with_scale, a, a_side, b, b_side):
    """(d loss / d a [R, d] (before the rows' scale), per-row part of d loss / d log s [R]).

    *_side: (index, valid, lse, count, g) vectors. d loss / d logit_ij = g_i (p_ij - w_ij) + g_j (q_ij - w_ij),
    p / q the row / column softmax, w the uniform target over the anchor's positives. The scale's part,
    sum dlogits * logit, is summed with each direction's logits shifted by its lse (as losses/tiled.py):
    the same number, since each anchor's p - w sums to 0, without cancelling terms of size |logit|.
    """
    (n_rows, d), acc = a.shape, _acc(a.dtype)

    def kernel(a_ref, ai_ref, av_ref, al_ref, ac_ref, ag_ref, b_ref, bi_ref, bv_ref, bl_ref, bc_ref, bg_ref, *out):
        a_valid = av_ref[...]
        a_lse, a_w, a_g = al_ref[...], 1.0 / jnp.maximum(ac_ref[...], 1.0), ag_ref[...]

        def body(j, carry):
            grad, scale_part = carry
            cols = pl.ds(j * block, block)
            logits, positive, keep = _tile(a_ref, b_ref, ai_ref[...], bi_ref, bv_ref, a_valid, j * block, block)
            b_lse, b_w, b_g = bl_ref[cols], 1.0 / jnp.maximum(bc_ref[cols], 1.0), bg_ref[cols]
            shift_a = jnp.where(keep, logits - a_lse[:, None], 0.0)
            shift_b = jnp.where(keep, logits - b_lse[None, :], 0.0)
            part_a = a_g[:, None] * (jnp.where(keep, jnp.exp(shift_a), 0.0) - jnp.where(positive, a_w[:, None], 0.0))
            part_b = b_g[None, :] * (jnp.where(keep, jnp.exp(shift_b), 0.0) - jnp.where(positive, b_w[None, :], 0.0))
            grad = _add_products(grad, part_a + part_b, b_ref, cols)
            if with_scale:
                scale_part = scale_part + jnp.sum(part_a * shift_a + part_b * shift_b, 1)
            return grad, scale_part

        init = (_zero_grads(a_ref.shape[0], d, acc), jnp.zeros((a_ref.shape[0],), acc))
        grad, out[1][...] = lax.fori_loop(0, b_ref.shape[0] // block, body, init)
        _store_grads(out[0], grad)

    out_shape = [jax.ShapeDtypeStruct((n_rows, d), acc), _vector(n_rows, acc)]
    return _call(kernel, "contrastive_softmax_grad", block, a, a_side, b, b_side, out_shape)


def _operands(x, y, logit_scale, matmul_dtype):
    """(s x, y) in the matmul dtype, features zero-padded to a multiple of CHUNK (the kernels' matmul step)."""
    dtype = jnp.result_type(x.dtype, y.dtype, logit_scale.dtype, jnp.float32)
    a, b = jnp.exp(logit_scale).astype(dtype) * x.astype(dtype), y.astype(dtype)
    if matmul_dtype is not None:
        a, b = a.astype(matmul_dtype), b.astype(matmul_dtype)
    pad = -x.shape[1] % CHUNK
    if pad:
        a, b = jnp.pad(a, ((0, 0), (0, pad))), jnp.pad(b, ((0, 0), (0, pad)))
    return a, b


def _ints(side):
    return side["index"].astype(jnp.int32), side["valid"].astype(jnp.int32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def softmax_terms(block, matmul_dtype, x, y, logit_scale, rows, cols):
    """Per-anchor softmax cross-entropy terms of exp(logit_scale) x y^T, both directions, fused.

    x [R, d], y [C, d], R and C multiples of `block` (a power of two); rows / cols: {"index", "valid"} [n]
    (losses/pairs.py: positives share an index). matmul_dtype: None (float32) or e.g. "bfloat16".
    Returns (row_term [R], col_term [C], row_argmax [R], col_argmax [C]) as losses.tiled.softmax_terms
    (argmaxes as the winner's index; max int where nothing is kept). Terms of invalid rows are meaningless.
    """
    return _softmax_forward(block, matmul_dtype, x, y, logit_scale, rows, cols)[0]


def _argmax_ids(position, index):
    """The index of the column at each `position`; max int at position len(index) (nothing kept)."""
    return jnp.append(index, jnp.iinfo(index.dtype).max)[position]


def _softmax_forward(block, matmul_dtype, x, y, logit_scale, rows, cols):
    a, b = _operands(x, y, logit_scale, matmul_dtype)
    (row_index, row_valid), (col_index, col_valid) = _ints(rows), _ints(cols)
    row_term, row_lse, row_count, row_arg = _softmax_stats(block, a, row_index, b, col_index, col_valid)
    col_term, col_lse, col_count, col_arg = _softmax_stats(block, b, col_index, a, row_index, row_valid)
    out = (row_term, col_term, _argmax_ids(row_arg, cols["index"]), _argmax_ids(col_arg, rows["index"]))
    return out, (x, y, logit_scale, rows, cols, row_lse, row_count, col_lse, col_count)


def _softmax_backward(block, matmul_dtype, residuals, cotangents):
    x, y, logit_scale, rows, cols, row_lse, row_count, col_lse, col_count = residuals
    a, b = _operands(x, y, logit_scale, matmul_dtype)
    row_side = (*_ints(rows), row_lse, row_count, cotangents[0].astype(row_lse.dtype))
    col_side = (*_ints(cols), col_lse, col_count, cotangents[1].astype(col_lse.dtype))
    da, scale_part = _softmax_grad(block, True, a, row_side, b, col_side)
    dy, _ = _softmax_grad(block, False, b, col_side, a, row_side)
    dx = jnp.exp(logit_scale) * da[:, : x.shape[1]]
    dlogit_scale = jnp.reshape(jnp.sum(scale_part), logit_scale.shape).astype(logit_scale.dtype)
    return dx.astype(x.dtype), dy[:, : y.shape[1]].astype(y.dtype), dlogit_scale, None, None


softmax_terms.defvjp(_softmax_forward, _softmax_backward)


def _sigmoid_tile(a_ref, b_ref, a_index, b_index_ref, b_valid_ref, a_valid, start, block, bias):
    """(logits without the bias, labels z = +1 / -1, keep) of a tile."""
    logits, positive, keep = _tile(a_ref, b_ref, a_index, b_index_ref, b_valid_ref, a_valid, start, block)
    return logits, jnp.where(positive, 1.0, -1.0).astype(logits.dtype), keep


def _sigmoid_loss(block, a, a_side, b, b_side, bias):
    """Per row: sum over kept columns of softplus(-z (logit + bias)) = -log sigmoid(z (logit + bias)), [R]."""

    def kernel(a_ref, ai_ref, av_ref, b_ref, bi_ref, bv_ref, bias_ref, loss_ref):
        a_index, a_valid, bias = ai_ref[...], av_ref[...], bias_ref[...]

        def body(j, loss):
            logits, sign, keep = _sigmoid_tile(a_ref, b_ref, a_index, bi_ref, bv_ref, a_valid, j * block, block, bias)
            return loss + jnp.sum(jnp.where(keep, _softplus(-sign * (logits + bias[None, :])), 0.0), 1)

        loss_ref[...] = lax.fori_loop(0, b_ref.shape[0] // block, body, jnp.zeros((a_ref.shape[0],), _acc(a.dtype)))

    out_shape = [_vector(a.shape[0], _acc(a.dtype))]
    return _call(kernel, "contrastive_sigmoid_loss", block, a, a_side, b, b_side, out_shape, (bias,))[0]


def _sigmoid_grad(block, cotangent_on_rows, a, a_side, b, b_side, bias):
    """(d loss / d a [R, d] before the rows' scale, per-row parts of d loss / d log s and d bias [R]).

    *_side: (index, valid, g); the loss is a sum over pairs weighted by the row side's g, which is a's
    (cotangent_on_rows) or b's (the transposed call for the columns' gradient).
    """
    (n_rows, d), acc = a.shape, _acc(a.dtype)

    def kernel(a_ref, ai_ref, av_ref, ag_ref, b_ref, bi_ref, bv_ref, bg_ref, bias_ref, *out):
        a_index, a_valid, bias = ai_ref[...], av_ref[...], bias_ref[...]

        def body(j, carry):
            grad, scale_part, bias_part = carry
            cols = pl.ds(j * block, block)
            logits, sign, keep = _sigmoid_tile(a_ref, b_ref, a_index, bi_ref, bv_ref, a_valid, j * block, block, bias)
            g = ag_ref[...][:, None] if cotangent_on_rows else bg_ref[cols][None, :]
            dlogits = jnp.where(keep, -sign * _sigmoid(-sign * (logits + bias[None, :])) * g, 0.0)
            grad = _add_products(grad, dlogits, b_ref, cols)
            return grad, scale_part + jnp.sum(dlogits * logits, 1), bias_part + jnp.sum(dlogits, 1)

        zeros = jnp.zeros((a_ref.shape[0],), acc)
        init = (_zero_grads(a_ref.shape[0], d, acc), zeros, zeros)
        grad, out[1][...], out[2][...] = lax.fori_loop(0, b_ref.shape[0] // block, body, init)
        _store_grads(out[0], grad)

    out_shape = [jax.ShapeDtypeStruct((n_rows, d), acc), _vector(n_rows, acc), _vector(n_rows, acc)]
    return _call(kernel, "contrastive_sigmoid_grad", block, a, a_side, b, b_side, out_shape, (bias,))


def _bias_vector(logit_bias, dtype):
    return jnp.reshape(logit_bias, (1,)).astype(_acc(dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def sigmoid_row_loss(block, matmul_dtype, x, y, logit_scale, logit_bias, rows, cols):
    """Per-row sums of -log sigmoid(z_ij (exp(logit_scale) <x_i, y_j> + logit_bias)) over the kept pairs, [R].

    As losses.tiled.sigmoid_row_loss (z = +1 where the indices match), fused; shapes as softmax_terms.
    """
    return _sigmoid_forward(block, matmul_dtype, x, y, logit_scale, logit_bias, rows, cols)[0]


def _sigmoid_forward(block, matmul_dtype, x, y, logit_scale, logit_bias, rows, cols):
    a, b = _operands(x, y, logit_scale, matmul_dtype)
    loss = _sigmoid_loss(block, a, _ints(rows), b, _ints(cols), _bias_vector(logit_bias, a.dtype))
    return loss, (x, y, logit_scale, logit_bias, rows, cols)


def _sigmoid_backward(block, matmul_dtype, residuals, g_row):
    x, y, logit_scale, logit_bias, rows, cols = residuals
    a, b = _operands(x, y, logit_scale, matmul_dtype)
    bias = _bias_vector(logit_bias, a.dtype)
    g_row = g_row.astype(bias.dtype)
    row_side, col_side = (*_ints(rows), g_row), (*_ints(cols), jnp.zeros(y.shape[:1], bias.dtype))
    da, scale_part, bias_part = _sigmoid_grad(block, True, a, row_side, b, col_side, bias)
    dy, _, _ = _sigmoid_grad(block, False, b, col_side, a, row_side, bias)
    dx = jnp.exp(logit_scale) * da[:, : x.shape[1]]
    dlogit_scale = jnp.reshape(jnp.sum(scale_part), logit_scale.shape).astype(logit_scale.dtype)
    dlogit_bias = jnp.reshape(jnp.sum(bias_part), jnp.shape(logit_bias)).astype(logit_bias.dtype)
    return dx.astype(x.dtype), dy[:, : y.shape[1]].astype(y.dtype), dlogit_scale, dlogit_bias, None, None


sigmoid_row_loss.defvjp(_sigmoid_forward, _sigmoid_backward)
