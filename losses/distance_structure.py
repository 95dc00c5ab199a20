"""Distance-structure distillation over every pair of the batch, by any implementation.

    structure_loss(s, t) = sum_{i<j} SmoothL1(||s_i - s_j|| - ||t_i - t_j||)

(ProCLIP's L_struct; RKD's distance term with a sum). Each pair's distance is taken from the explicit
difference s_i - s_j, as torch.pdist does, not from a Gram matrix: |s_i|^2 + |s_j|^2 - 2 <s_i, s_j>
loses the small distances of near-duplicate captions to cancellation and gives their gradients
(s_i - s_j) / d a direction of rounding noise. A zero distance (identical rows) has gradient 0.

The sum over i < j is half the sum over all ordered pairs (the diagonal adds 0), which splits into
blocks like the contrastive losses (losses/contrastive.py):
- `dense`: the [B, B, D] differences at once (the reference; B^2 D memory);
- `gathered`: shard_map; each device its rows against all-gathered columns, gradient through the gather;
- `tiled`, `ring`, `ring_tiled`: tile x tile blocks (losses/blockwise.py; columns travel round the
  batch axes in the ring ones) with a custom VJP that recomputes each block backward. A block holds
  [tile, tile, D] differences, so its edge is at most PAIR_TILE whatever config.loss.tile_size says.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from losses.blockwise import ring_sweep
from losses.contrastive import check_loss_options, resolve_mesh, resolve_tile_size

# [128, 128, 128] float32 differences are 8 MiB; 512 (the logit tiles' edge) would be 512 MiB per array.
PAIR_TILE = 128


def smooth_l1(x: jax.Array, beta: float = 1.0) -> jax.Array:
    """Elementwise SmoothL1 (Huber, PyTorch's form): 0.5 x^2 / beta if |x| < beta, else |x| - 0.5 beta."""
    magnitude = jnp.abs(x)
    return jnp.where(magnitude < beta, 0.5 * jnp.square(x) / beta, magnitude - 0.5 * beta)


def _smooth_l1_slope(x: jax.Array, beta: float = 1.0) -> jax.Array:
    return jnp.where(jnp.abs(x) < beta, x / beta, jnp.sign(x))


def _distances(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """a [R, D], b [C, D] -> (differences [R, C, D], distances [R, C]), sqrt taken only where positive."""
    difference = a[:, None, :] - b[None, :, :]
    squared = jnp.sum(jnp.square(difference), axis=-1)
    positive = squared > 0
    # sqrt has an infinite slope at 0: take it only where the distance is positive, 0 (and gradient 0) elsewhere.
    return difference, jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _pair_terms(rows: dict, cols: dict) -> jax.Array:
    """[R, C] 1/2 SmoothL1(d_s - d_t) of the kept pairs (both valid)."""
    _, student = _distances(rows["s"], cols["s"])
    _, teacher = _distances(rows["t"], cols["t"])
    keep = rows["valid"][:, None] & cols["valid"][None, :]
    return jnp.where(keep, 0.5 * smooth_l1(student - teacher), 0.0)


def dense_row_terms(s: jax.Array, t: jax.Array, valid: jax.Array) -> jax.Array:
    """[R] per-row halves of the pair sums of rows s, t [R, D] against themselves (plain autodiff)."""
    side = {"s": s, "t": t, "valid": valid}
    return jnp.sum(_pair_terms(side, side), axis=1)


def _forward_body(rows, cols, row_loss, col_acc, acc):
    return row_loss + jnp.sum(_pair_terms(rows, cols), axis=1), col_acc, acc


def _backward_body(rows, cols, row_grads, col_grads, acc):
    """d/ds, d/dt of sum_ij g_i 1/2 SmoothL1(d_s(i, j) - d_t(i, j)), to row i and column j alike."""
    s_difference, s_distance = _distances(rows["s"], cols["s"])
    t_difference, t_distance = _distances(rows["t"], cols["t"])
    keep = rows["valid"][:, None] & cols["valid"][None, :]
    slope = jnp.where(keep, 0.5 * rows["g"][:, None] * _smooth_l1_slope(s_distance - t_distance), 0.0)
    # d ||a_i - b_j|| / d a_i = (a_i - b_j) / d, and the negative of that for b_j; 0 at d = 0.
    s_weight = jnp.where(s_distance > 0, slope / jnp.where(s_distance > 0, s_distance, 1.0), 0.0)
    t_weight = jnp.where(t_distance > 0, -slope / jnp.where(t_distance > 0, t_distance, 1.0), 0.0)
    ds_rows, dt_rows = row_grads
    ds_cols, dt_cols = col_grads
    ds_step = jnp.einsum("ij,ijd->id", s_weight, s_difference), jnp.einsum("ij,ijd->jd", s_weight, s_difference)
    dt_step = jnp.einsum("ij,ijd->id", t_weight, t_difference), jnp.einsum("ij,ijd->jd", t_weight, t_difference)
    return (ds_rows + ds_step[0], dt_rows + dt_step[0]), (ds_cols - ds_step[1], dt_cols - dt_step[1]), acc


def _pad(side: dict, tile: int) -> dict:
    pad = -side["valid"].shape[0] % tile
    return jax.tree.map(lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)), side)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def blockwise_row_terms(tile: int, axis_name, axis_size: int, s, t, valid) -> jax.Array:
    """dense_row_terms block by block: rows s, t [R, D] (R a multiple of `tile`) against the columns of
    every device on `axis_name` (None: against themselves). Returns [R]."""
    return _blockwise_forward(tile, axis_name, axis_size, s, t, valid)[0]


def _blockwise_forward(tile, axis_name, axis_size, s, t, valid):
    side = {"s": s, "t": t, "valid": valid}
    row_loss, _, _ = ring_sweep(
        _forward_body, side, side, jnp.zeros(s.shape[:1], s.dtype), (), (), tile, axis_name, axis_size
    )
    return row_loss, (s, t, valid)


def _blockwise_backward(tile, axis_name, axis_size, residuals, g_row):
    s, t, valid = residuals
    zeros = (jnp.zeros_like(s), jnp.zeros_like(t))
    (ds_rows, dt_rows), (ds_cols, dt_cols), _ = ring_sweep(
        _backward_body,
        {"s": s, "t": t, "valid": valid, "g": g_row},
        {"s": s, "t": t, "valid": valid},
        zeros,
        zeros,
        (),
        tile,
        axis_name,
        axis_size,
    )
    return ds_rows + ds_cols, dt_rows + dt_cols, None


blockwise_row_terms.defvjp(_blockwise_forward, _blockwise_backward)


def _row_terms(implementation, tile, axis_name, axis_size, s, t, valid):
    """This call's rows' [R] terms (all rows, or a device's inside shard_map)."""
    if implementation == "dense":
        return dense_row_terms(s, t, valid)
    if implementation == "gathered":
        all_s, all_t, all_valid = (lax.all_gather(a, axis_name, tiled=True) for a in (s, t, valid))
        rows, cols = {"s": s, "t": t, "valid": valid}, {"s": all_s, "t": all_t, "valid": all_valid}
        return jnp.sum(_pair_terms(rows, cols), axis=1)
    n = s.shape[0]
    padded = _pad({"s": s, "t": t, "valid": valid}, tile)
    return blockwise_row_terms(tile, axis_name, axis_size, padded["s"], padded["t"], padded["valid"])[:n]


def structure_loss(
    student: jax.Array,
    teacher: jax.Array,
    *,
    implementation: str = "dense",
    tile_size: int = PAIR_TILE,
    mesh=None,
    axis_name=None,
    valid: jax.Array | None = None,
) -> jax.Array:
    """student, teacher [B, D] -> sum over pairs i < j (both valid) of SmoothL1(d_student(i, j) - d_teacher(i, j)).

    implementation, tile_size, mesh, axis_name as losses.contrastive.contrastive_loss; valid [B] bool.
    """
    check_loss_options("softmax", implementation, tile_size)
    valid = jnp.ones(student.shape[:1], bool) if valid is None else valid.astype(bool)
    tile = min(resolve_tile_size(tile_size), PAIR_TILE, student.shape[0])
    if implementation in ("dense", "tiled"):
        return jnp.sum(_row_terms(implementation, tile, None, 1, student, teacher, valid))
    mesh, axes, axis_size = resolve_mesh(mesh, axis_name)
    if student.shape[0] % axis_size:
        raise ValueError(
            f"Implementation {implementation!r} needs the batch ({student.shape[0]}) to be a multiple of the "
            f"{axis_size} devices on mesh axes {list(axes)}; change the batch size or use 'dense' or 'tiled'."
        )

    def per_device(s, t, valid):
        local_tile = min(tile, s.shape[0])
        return _row_terms(implementation, local_tile, axes, axis_size, s, t, valid)

    batch = P(axes)
    rows = jax.shard_map(per_device, mesh=mesh, in_specs=(batch,) * 3, out_specs=batch, axis_names=set(axes))
    return jnp.sum(rows(student, teacher, valid))
