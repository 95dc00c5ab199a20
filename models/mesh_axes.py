"""The names of the device mesh's axes, and which of them split a batch's examples.

A leaf in the lowest layer, so that the scanned towers (models/layer_scan.py) and the distributed losses find
their batch axes without importing the trainer: training/mesh.py builds the mesh over these names.
"""

from __future__ import annotations

import jax
from jax.sharding import PartitionSpec

BATCH_AXIS = "data"
FSDP_AXIS = "fsdp"
MODEL_AXIS = "model"
MESH_AXES = (BATCH_AXIS, FSDP_AXIS, MODEL_AXIS)
BATCH_AXES = (BATCH_AXIS, FSDP_AXIS)  # the axes the examples of a batch are split over


def batch_axes(mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh) -> tuple[str, ...]:
    """The mesh's axes that split a batch's examples: those of BATCH_AXES it has."""
    return tuple(axis for axis in BATCH_AXES if axis in mesh.axis_names)


def pin_batch(x: jax.Array, dim: int = 0) -> jax.Array:
    """x with dimension `dim` constrained to the current mesh's batch axes (x itself outside a mesh).

    XLA's partitioner can lose a batch sharding inside loops (a scan's carry, grad cache's micro-batches) and
    then all-reduces activations instead of gathering weights; pinning keeps the examples split."""
    mesh = jax.sharding.get_abstract_mesh()
    split = () if mesh.empty else batch_axes(mesh)
    if not split:
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec(*(None,) * dim, split))
