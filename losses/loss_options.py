"""The contrastive loss's options: kinds, implementations, tile sizes, matmul dtypes, the mesh; their checks.

losses/contrastive.py computes the loss; this module names what it can be asked for and refuses the rest in one
sentence, so that the config check (training/validation.py) and the loss agree.
"""

from __future__ import annotations

import math

import jax

from losses import fused
from models.mesh_axes import batch_axes

KINDS = ("softmax", "sigmoid")
# Implementations that compute every feature of SUPPORTED; "fused" only the plain pairs' (FUSED_FEATURES).
IMPLEMENTATIONS = ("dense", "gathered", "ring", "tiled", "ring_tiled")
FUSED = "fused"
ALL_IMPLEMENTATIONS = (*IMPLEMENTATIONS, FUSED)
DISTRIBUTED = ("gathered", "ring", "ring_tiled")
# tile_size 0 (the default) picks the block edge for the backend the loss is traced for. CPU: 512 x 512
# fp32 blocks (1 MiB) ran fastest on the 2-core CPU and keep temporaries far below one embedding matrix
# at B >= 4096 (BENCHMARKS.md). GPU: on one H200 (2026-12-04) the tiled loss ran 2.6x faster with 4,096
# than with 1,024 at B = 65,536, in 1.0 GiB against dense's 32.8. TPU: not measured yet; the GPU's edge,
# a multiple of every MXU size.
DEFAULT_TILE_SIZE = 0
TILE_SIZE_BY_PLATFORM = {"cpu": 512, "gpu": 4096, "tpu": 4096}
# The operand dtype of the in-batch logits' matmuls (forward and backward), accumulated in float32 with the
# loss's statistics in float32 either way. "float32": the embeddings as they are, multiplied at jax's default
# precision (TF32 on recent NVIDIA GPUs, one bf16 pass on TPU, exact on CPU). "bfloat16": s f and g rounded
# to bf16 once, so the matmuls run at the bf16 rate on every backend, with the same numbers everywhere.
MATMUL_DTYPES = ("float32", "bfloat16")
# Implementations that honour a matmul_dtype other than float32 (gathered computes its blocks its own way).
LOW_PRECISION_IMPLEMENTATIONS = ("dense", "ring", "tiled", "ring_tiled", FUSED)


def resolve_tile_size(tile_size: int, platform: str | None = None, implementation: str = "tiled") -> int:
    """tile_size itself if positive; for 0, the fused kernels' block (fused.DEFAULT_BLOCK) or the edge of
    TILE_SIZE_BY_PLATFORM for `platform` (default: the backend jax compiles for now, so call it while tracing the
    loss, never in validation)."""
    if tile_size:
        return tile_size
    if implementation == FUSED:
        return fused.DEFAULT_BLOCK
    platform = platform or jax.default_backend()
    return TILE_SIZE_BY_PLATFORM.get("gpu" if platform in ("cuda", "rocm") else platform, TILE_SIZE_BY_PLATFORM["cpu"])


def check_loss_options(kind: str, implementation: str, tile_size: int, matmul_dtype: str = "float32") -> None:
    """Raises ValueError, naming the fix, for an unknown kind, implementation or matmul dtype, a bad tile
    size, or a matmul dtype the implementation does not honour."""
    if kind not in KINDS:
        raise ValueError(f"Unknown contrastive loss kind {kind!r}; use one of {list(KINDS)}.")
    if implementation not in ALL_IMPLEMENTATIONS:
        raise ValueError(
            f"Unknown loss implementation {implementation!r}; set config.loss.implementation to one of "
            f"{list(ALL_IMPLEMENTATIONS)}."
        )
    if not (isinstance(tile_size, int) and tile_size >= 0):
        raise ValueError(
            f"config.loss.tile_size must be a positive integer (or 0 for the backend's default), not {tile_size!r}."
        )
    if implementation == FUSED and tile_size & (tile_size - 1):
        raise ValueError(
            f"config.loss.tile_size={tile_size} is not a power of two, which the fused kernels' blocks must be; "
            "set it to one (e.g. 64) or to 0 for the default."
        )
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"Unknown loss matmul dtype {matmul_dtype!r}; set config.loss.matmul_dtype to one of "
                         f"{list(MATMUL_DTYPES)}.")  # fmt: skip
    if matmul_dtype != "float32" and implementation not in LOW_PRECISION_IMPLEMENTATIONS:
        raise ValueError(
            f"config.loss.matmul_dtype={matmul_dtype!r} is not available with implementation={implementation!r}; "
            f"use one of {list(LOW_PRECISION_IMPLEMENTATIONS)} or matmul_dtype='float32'."
        )


def implementation_options(config) -> dict:
    """contrastive_loss keywords from config.loss: implementation, tile_size, matmul_dtype (dense, float32
    when absent).

    Objectives get no mesh: distributed implementations take the jax.set_mesh context, else
    training.mesh.make_mesh(), the trainer's mesh.
    """
    options = config.get("loss", {}) if config is not None else {}
    return {
        "implementation": options.get("implementation", "dense"),
        "tile_size": options.get("tile_size", DEFAULT_TILE_SIZE),
        "matmul_dtype": options.get("matmul_dtype", "float32"),
    }


def resolve_mesh(mesh, axis_name):
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
