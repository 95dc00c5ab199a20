"""The names of the device mesh's axes, and which of them split a batch's examples.

A leaf in the lowest layer, so that the scanned towers (models/layer_scan.py) and the distributed losses find
their batch axes without importing the trainer: training/mesh.py builds the mesh over these names.
"""

from __future__ import annotations

import jax

BATCH_AXIS = "data"
FSDP_AXIS = "fsdp"
MODEL_AXIS = "model"
MESH_AXES = (BATCH_AXIS, FSDP_AXIS, MODEL_AXIS)
BATCH_AXES = (BATCH_AXIS, FSDP_AXIS)  # the axes the examples of a batch are split over


def batch_axes(mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh) -> tuple[str, ...]:
    """The mesh's axes that split a batch's examples: those of BATCH_AXES it has."""
    return tuple(axis for axis in BATCH_AXES if axis in mesh.axis_names)
