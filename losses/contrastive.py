"""One entry point for the contrastive losses: kind (softmax | sigmoid) x implementation, chosen by name.

Implementations, with identical values and gradients (tests/test_distributed_losses.py):
- `dense`: the global [B, B] matrix; sharding left to the compiler.
- `gathered`: shard_map; each device computes its rows against all-gathered columns, gradient through
  the gather (losses/gathered.py). Per device O(B d + b B) memory, b = B / devices.
- `ring`: shard_map + ppermute; text (column) blocks travel round the batch axis and no device holds
  more than a b x b block of logits; custom VJP, so the backward pass does the same (losses/tiled.py).
- `tiled`: one device, tile x tile blocks with a custom VJP (online log-sum-exp forward, tiles
  recomputed backward): O(B d + tile^2) memory.
- `ring_tiled`: the ring, each b x b block itself done in tiles: O(b d + tile^2) per device.

Padding: blockwise implementations pad the rows to a multiple of the tile internally (any B works);
distributed ones need B to be a multiple of the devices on the batch axis. Callers may pass `valid`
[B] to leave rows (and their columns) out, e.g. to pad a global batch.

Metrics: the softmax loss gives in-batch i2t/t2i top-1 accuracy in every implementation (argmax is
tracked next to the online max, ties go to the lower index as in jnp.argmax); the sigmoid loss none.

Mesh: distributed implementations use `mesh` if given, else the mesh installed with
`jax.set_mesh(...)` around the caller (the trainer's); with neither they raise ValueError. Objectives
only get the config, so they rely on the trainer's `jax.set_mesh`. The batch is split
over `axis_name`: one mesh axis or a tuple of them; by default every batch axis of the mesh ("data",
and "fsdp" where the mesh has one), so the ring runs over all devices that hold examples.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from losses.gathered import gathered_sigmoid_row_loss, gathered_softmax_lse
from losses.mesh_axes import batch_axes
from losses.sigmoid import sigmoid_loss_from_stats, sigmoid_row_loss_dense
from losses.softmax import all_valid, positive_logits, softmax_loss_from_stats, softmax_lse_dense
from losses.tiled import sigmoid_row_loss, softmax_lse

KINDS = ("softmax", "sigmoid")
IMPLEMENTATIONS = ("dense", "gathered", "ring", "tiled", "ring_tiled")
DISTRIBUTED = ("gathered", "ring", "ring_tiled")
# 512 x 512 fp32 blocks (1 MiB each) keep the tile's temporaries far below one embedding matrix at
# B >= 4096 and ran fastest on the 2-core CPU (BENCHMARKS.md).
DEFAULT_TILE_SIZE = 512


def check_loss_options(kind: str, implementation: str, tile_size: int) -> None:
    """Raises ValueError, naming the fix, for an unknown kind or implementation or a bad tile size."""
    if kind not in KINDS:
        raise ValueError(f"Unknown contrastive loss kind {kind!r}; use one of {list(KINDS)}.")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"Unknown loss implementation {implementation!r}; set config.loss.implementation to one of "
            f"{list(IMPLEMENTATIONS)}."
        )
    if not (isinstance(tile_size, int) and tile_size > 0):
        raise ValueError(f"config.loss.tile_size must be a positive integer, not {tile_size!r}.")


def _resolve_mesh(mesh, axis_name):
    """(mesh, axis names as a tuple, devices along them)."""
    if mesh is None:
        mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty:
            raise ValueError(
                "Distributed loss implementations need a device mesh; call the loss under jax.set_mesh(mesh), "
                "pass mesh=..., or use implementation='dense' or 'tiled'."
            )
    names = batch_axes(mesh) if axis_name is None else (axis_name,) if isinstance(axis_name, str) else axis_name
    missing = [name for name in names if name not in mesh.axis_names]
    if missing or not names:
        raise ValueError(
            f"The mesh {dict(mesh.shape)} has no axis {missing or axis_name!r}; pass the batch axes as axis_name "
            "or use implementation='dense' or 'tiled'."
        )
    return mesh, tuple(names), math.prod(mesh.shape[name] for name in names)


def _pad_and_call(primitive, tile_size, axis_name, axis_size, x, y, scalars, index, valid):
    """Pads the rows to a multiple of the tile (padding has valid=False), calls a losses/tiled.py primitive."""
    n = x.shape[0]
    tile = min(tile_size, n)
    pad = -n % tile
    if pad:
        x, y = (jnp.pad(a, ((0, pad), (0, 0))) for a in (x, y))
        index = jnp.pad(index, (0, pad), constant_values=-1)
        valid = jnp.pad(valid, (0, pad))
    out = primitive(tile, axis_name, axis_size, x, y, *scalars, index, valid)
    return jax.tree.map(lambda a: a[:n], out)


def _per_device(implementation, kind, tile_size, axis_name, axis_size):
    """fn(x, y, *scalars, index, valid) computing this device's statistics inside shard_map."""
    if implementation == "gathered":
        gathered = gathered_softmax_lse if kind == "softmax" else gathered_sigmoid_row_loss
        return functools.partial(gathered, axis_name=axis_name)
    primitive = softmax_lse if kind == "softmax" else sigmoid_row_loss

    def ring(x, y, *rest):
        # `ring` is `ring_tiled` with a single b x b tile per round.
        tile = x.shape[0] if implementation == "ring" else tile_size
        *scalars, index, valid = rest
        return _pad_and_call(primitive, tile, axis_name, axis_size, x, y, scalars, index, valid)

    return ring


def _statistics(kind, implementation, x, y, scalars, index, valid, tile_size, mesh, axis_name):
    """Per-example statistics: softmax (row_lse, col_lse, row_argmax, col_argmax); sigmoid row_loss. All [B]."""
    if implementation == "dense":
        if kind == "softmax":
            return softmax_lse_dense(x, y, *scalars, valid)
        return sigmoid_row_loss_dense(x, y, *scalars, valid)
    if implementation == "tiled":
        primitive = softmax_lse if kind == "softmax" else sigmoid_row_loss
        return _pad_and_call(primitive, tile_size, None, 1, x, y, scalars, index, valid)
    mesh, axis_name, axis_size = _resolve_mesh(mesh, axis_name)
    if x.shape[0] % axis_size:
        raise ValueError(
            f"Implementation {implementation!r} needs the batch ({x.shape[0]}) to be a multiple of the "
            f"{axis_size} devices on mesh axes {list(axis_name)}; change the batch size or use 'dense' or 'tiled'."
        )
    batch = P(axis_name)
    fn = jax.shard_map(
        _per_device(implementation, kind, tile_size, axis_name, axis_size),
        mesh=mesh,
        in_specs=(batch, batch, *(P() for _ in scalars), batch, batch),
        out_specs=batch,
        axis_names=set(axis_name),
    )
    return fn(x, y, *scalars, index, valid)


def contrastive_loss(
    image_embedding: jax.Array,
    text_embedding: jax.Array,
    logit_scale: jax.Array,
    logit_bias: jax.Array | None = None,
    *,
    kind: str = "softmax",
    implementation: str = "dense",
    tile_size: int = DEFAULT_TILE_SIZE,
    mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Softmax (CLIP) or sigmoid (SigLIP) loss of normalised [B, D] embeddings, by any implementation.

    logit_scale: scalar log of the scale; logit_bias: scalar bias (sigmoid only); valid: [B] bool,
    rows to keep (default all). tile_size applies to `tiled` and `ring_tiled`. Returns
    (loss, metrics) as losses.softmax.softmax_contrastive_loss / losses.sigmoid.sigmoid_contrastive_loss.
    """
    check_loss_options(kind, implementation, tile_size)
    if image_embedding.ndim != 2 or image_embedding.shape != text_embedding.shape:
        raise ValueError(
            f"Image and text embeddings must both be [batch, dim], got {image_embedding.shape} and "
            f"{text_embedding.shape}; pass one embedding per example from each tower."
        )
    if kind == "sigmoid" and logit_bias is None:
        raise ValueError("The sigmoid loss needs logit_bias; pass the model's learnable bias.")
    valid = all_valid(image_embedding) if valid is None else valid.astype(bool)
    index = jnp.arange(image_embedding.shape[0])
    scalars = (logit_scale,) if kind == "softmax" else (logit_scale, logit_bias)
    stats = _statistics(
        kind, implementation, image_embedding, text_embedding, scalars, index, valid, tile_size, mesh, axis_name
    )
    if kind == "softmax":
        positives = positive_logits(image_embedding, text_embedding, logit_scale)
        return softmax_loss_from_stats(stats, positives, valid)
    return sigmoid_loss_from_stats(stats, valid)
