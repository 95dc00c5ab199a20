"""Visiting every tile of a logit matrix, on one device tile by tile, or around a ring of devices.

The blockwise losses (losses/tiled.py) are a `body` applied to each (row tile, column tile) pair of
the [R, C] logit matrix. These drivers choose the order and thread the accumulators, so only one
[tile, tile] block exists at a time. Row-indexed data stays put; column-indexed data (the column
embeddings and their accumulators) walks round the ring, one device per round.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax import lax

Tree = Any
Body = Callable[[Tree, Tree, Tree, Tree, Tree], tuple[Tree, Tree, Tree]]


def _leading(tree: Tree) -> int:
    return jax.tree.leaves(tree)[0].shape[0]


def _take(tree: Tree, i: jax.Array, tile: int) -> Tree:
    return jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, i * tile, tile), tree)


def _put(tree: Tree, i: jax.Array, part: Tree, tile: int) -> Tree:
    return jax.tree.map(lambda a, p: lax.dynamic_update_slice_in_dim(a, p, i * tile, 0), tree, part)


def tile_sweep(body: Body, rows: Tree, cols: Tree, row_acc: Tree, col_acc: Tree, acc: Tree, tile: int):
    """Applies `body` to every (row tile, column tile) pair, row tiles outer.

    rows / row_acc: pytrees of [R, ...] arrays, read-only / accumulated; cols / col_acc: the same for
    [C, ...]; R and C are multiples of `tile`. acc: pytree of small accumulators.
    body(rows_tile, cols_tile, row_acc_tile, col_acc_tile, acc) -> (row_acc_tile, col_acc_tile, acc).
    Returns (row_acc, col_acc, acc).
    """
    num_row_tiles, num_col_tiles = _leading(rows) // tile, _leading(cols) // tile

    def row_step(i, carry):
        row_acc, col_acc, acc = carry
        rows_i = _take(rows, i, tile)

        def col_step(j, carry):
            row_acc_i, col_acc, acc = carry
            row_acc_i, col_acc_j, acc = body(rows_i, _take(cols, j, tile), row_acc_i, _take(col_acc, j, tile), acc)
            return row_acc_i, _put(col_acc, j, col_acc_j, tile), acc

        row_acc_i, col_acc, acc = lax.fori_loop(0, num_col_tiles, col_step, (_take(row_acc, i, tile), col_acc, acc))
        return _put(row_acc, i, row_acc_i, tile), col_acc, acc

    return lax.fori_loop(0, num_row_tiles, row_step, (row_acc, col_acc, acc))


def _varying(a, axis_name):
    """`a` marked device-varying over `axis_name` (a seeded accumulator may already be)."""
    names = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)
    aval = jax.typeof(a)
    # jax 0.10 keeps the varying axes in manual_axis_type; earlier and later versions in vma.
    varying = aval.manual_axis_type.varying if hasattr(aval, "manual_axis_type") else aval.vma
    missing = tuple(name for name in names if name not in varying)
    return lax.pcast(a, missing, to="varying") if missing else a


def ring_sweep(
    body: Body,
    rows: Tree,
    cols: Tree,
    row_acc: Tree,
    col_acc: Tree,
    acc: Tree,
    tile: int,
    axis_name: str | None,
    axis_size: int,
):
    """`tile_sweep` of this device's rows against the columns of every device on `axis_name`.

    Call inside shard_map, with freshly created accumulators (not yet device-varying). `cols` and
    `col_acc` move one device along the ring (ppermute) per round; after `axis_size` rounds each
    column block is back home with its accumulators summed over the rows of all devices. The last
    round sends only `col_acc`, since the columns themselves are no longer needed. axis_name None:
    one device, no communication.
    """
    if axis_name is None:
        return tile_sweep(body, rows, cols, row_acc, col_acc, acc, tile)
    # Accumulators start as fresh (device-invariant) zeros, or seeds; the loop makes them device-varying.
    row_acc, col_acc, acc = jax.tree.map(functools.partial(_varying, axis_name=axis_name), (row_acc, col_acc, acc))
    perm = [(i, (i + 1) % axis_size) for i in range(axis_size)]

    def round_(_, carry):
        cols, col_acc, row_acc, acc = carry
        row_acc, col_acc, acc = tile_sweep(body, rows, cols, row_acc, col_acc, acc, tile)
        cols, col_acc = lax.ppermute((cols, col_acc), axis_name, perm)
        return cols, col_acc, row_acc, acc

    cols, col_acc, row_acc, acc = lax.fori_loop(0, axis_size - 1, round_, (cols, col_acc, row_acc, acc))
    row_acc, col_acc, acc = tile_sweep(body, rows, cols, row_acc, col_acc, acc, tile)
    return row_acc, lax.ppermute(col_acc, axis_name, perm), acc
