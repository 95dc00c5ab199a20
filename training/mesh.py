"""The device mesh and the shardings of parameters and batches.

Axes, outermost first: `data` (pure data parallelism: parameters replicated), `fsdp` (data
parallelism whose devices also split the large parameters and their optimizer state, ZeRO-3 style)
and `model` (tensor parallelism inside each transformer block). The batch is split over
`data` x `fsdp`; `model` is innermost so that its frequent collectives stay on the fastest links.
The axis names live in models/mesh_axes.py, where the scanned towers and the distributed losses read them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from models.mesh_axes import BATCH_AXIS, MESH_AXES, batch_axes


def mesh_shape(axis_sizes: Mapping[str, int], device_count: int) -> dict[str, int]:
    """{axis: size} for MESH_AXES, with the one -1 filled so the product is `device_count`.

    Raises ValueError naming the fix for an unknown axis, several -1, or sizes that do not multiply
    to the device count.
    """
    unknown = sorted(set(axis_sizes) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"Unknown mesh axes {unknown}; config.mesh takes only {list(MESH_AXES)}.")
    sizes = {axis: int(axis_sizes.get(axis, 1)) for axis in MESH_AXES}
    fill = [axis for axis, size in sizes.items() if size == -1]
    if len(fill) > 1 or any(size == 0 or size < -1 for size in sizes.values()):
        raise ValueError(f"config.mesh {sizes} must hold positive sizes and at most one -1 (fill); fix the sizes.")
    known = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if device_count % known:
            raise ValueError(
                f"config.mesh {sizes}: the fixed axes ({known} devices) do not divide the {device_count} devices; "
                "choose sizes whose product divides the device count."
            )
        sizes[fill[0]] = device_count // known
    if math.prod(sizes.values()) != device_count:
        raise ValueError(
            f"config.mesh {sizes} covers {math.prod(sizes.values())} devices but there are {device_count}; "
            "make the product of the sizes equal the device count, or set one axis to -1."
        )
    return sizes


def make_mesh(axis_sizes: Mapping[str, int] | None = None, devices: list | None = None) -> Mesh:
    """The (data, fsdp, model) mesh over `devices` (default: every device of every process).

    No `axis_sizes`: a 1-D `data` mesh. GSPMD "auto"
    axis semantics; jax.make_mesh orders the devices so the inner axes get the fastest links.
    """
    devices = jax.devices() if devices is None else devices
    if axis_sizes is None:
        return Mesh(np.asarray(devices), (BATCH_AXIS,))
    sizes = mesh_shape(axis_sizes, len(devices))
    return jax.make_mesh(
        tuple(sizes.values()),
        MESH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


def batch_device_count(mesh: Mesh | jax.sharding.AbstractMesh) -> int:
    """How many ways a batch is split: the product of the batch axes' sizes."""
    return math.prod(mesh.shape[axis] for axis in batch_axes(mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the batch axes (`data`, and `fsdp` where present)."""
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows -> one global array per field, sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
