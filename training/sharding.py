"""Parameter sharding rules by parameter path: replicate small tensors, FSDP-shard large ones, and
split attention heads and MLP hidden units over the `model` axis (Megatron-style tensor parallelism).

The rules read only a leaf's path and shape, so the same rule places a parameter and its Adam
moments (`opt_state/.../mu/<param path>`) and any copy of it in the objective's `extra` state.
"""

from __future__ import annotations

import re
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from models.mesh_axes import FSDP_AXIS, MODEL_AXIS
from models.param_paths import path_name

# Path pattern -> the axis each dimension is split over, before the size and divisibility checks.
# Column-parallel in, row-parallel out: a block's attention and MLP each need one all-reduce over
# `model` in the forward pass. Heads, not head_dim, are split, so each device owns whole heads.
TENSOR_PARALLEL_RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"attn/(query|key|value)/kernel$", (FSDP_AXIS, MODEL_AXIS, None)),  # [width, heads, head_dim]
    (r"attn/(query|key|value)/bias$", (MODEL_AXIS, None)),  # [heads, head_dim]
    (r"attn/out/kernel$", (MODEL_AXIS, None, FSDP_AXIS)),  # [heads, head_dim, width]
    (r"mlp/(fc1|gate)/kernel$", (FSDP_AXIS, MODEL_AXIS)),  # [width, mlp]; gate: SwiGLU's second input matmul
    (r"mlp/(fc1|gate)/bias$", (MODEL_AXIS,)),  # [mlp]
    (r"mlp/fc2/kernel$", (MODEL_AXIS, FSDP_AXIS)),  # [mlp, width]
)


def partition_spec(name: str, shape: tuple[int, ...], mesh_shape: dict[str, int], min_size: int) -> PartitionSpec:
    """Where a leaf at path `name` with `shape` lives on a mesh of `mesh_shape` ({axis: size}).

    Leaves under `min_size` elements are replicated (sharding them saves little and costs a
    collective each). Others follow TENSOR_PARALLEL_RULES, else FSDP splits their largest dimension
    that the `fsdp` axis divides. An axis that does not divide its dimension is dropped from it.
    """
    size = 1
    for dim in shape:
        size *= dim
    if size < min_size:
        return PartitionSpec()
    axes = next((list(axes) for pattern, axes in TENSOR_PARALLEL_RULES if re.search(pattern, name)), None)
    if axes is None or len(axes) != len(shape):
        axes = [None] * len(shape)
        divisible = [i for i, dim in enumerate(shape) if dim % mesh_shape.get(FSDP_AXIS, 1) == 0]
        if divisible:
            axes[max(divisible, key=lambda i: (shape[i], i))] = FSDP_AXIS
    axes = [
        axis if axis is not None and mesh_shape.get(axis, 1) > 1 and dim % mesh_shape[axis] == 0 else None
        for axis, dim in zip(axes, shape, strict=True)
    ]
    while axes and axes[-1] is None:
        axes.pop()
    return PartitionSpec(*axes)


def tree_shardings(tree: Any, mesh: Mesh, min_size: int) -> Any:
    """NamedSharding for every leaf of `tree` (arrays or ShapeDtypeStructs), by partition_spec."""
    mesh_shape = dict(mesh.shape)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(
            mesh, partition_spec(path_name(path), tuple(leaf.shape), mesh_shape, min_size)
        ),
        tree,
    )


def bytes_per_device(tree: Any, shardings: Any) -> int:
    """Bytes one device holds of `tree` (arrays or ShapeDtypeStructs) placed with `shardings`."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
        shard = sharding.shard_shape(tuple(leaf.shape))
        count = 1
        for dim in shard:
            count *= dim
        total += count * jax.numpy.dtype(leaf.dtype).itemsize
    return total
