"""Multi-host start-up: jax.distributed.initialize() when the config or the environment asks for it.

Each process then sees every device of the job in jax.devices(), reads its own slice of the data
(input_pipeline/pipeline.py slices by jax.process_index()), and takes part in the collective orbax
checkpoint writes; only process 0 writes metrics and run files (training/loop.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import ml_collections

# Environment variables that show a multi-process job jax can configure itself from.
_SLURM_TASKS = "SLURM_NTASKS"
_TPU_HOSTS = "TPU_WORKER_HOSTNAMES"  # Cloud TPU VM: comma-separated hosts of the slice
_COORDINATOR = "JAX_COORDINATOR_ADDRESS"


def environment_wants_distributed(env: Mapping[str, str]) -> bool:
    """True under SLURM with several tasks, on a multi-host Cloud TPU slice, or with a coordinator set."""
    if env.get(_COORDINATOR):
        return True
    if env.get(_SLURM_TASKS, "1").isdigit() and int(env.get(_SLURM_TASKS, "1")) > 1:
        return True
    return len([h for h in env.get(_TPU_HOSTS, "").split(",") if h]) > 1


def maybe_initialize(config: ml_collections.ConfigDict, env: Mapping[str, str] | None = None) -> bool:
    """Calls jax.distributed.initialize() for config.distributed (`on`; `auto` and a multi-process
    environment); returns whether it did. Must run before anything starts jax's backend."""
    d = config.distributed
    env = os.environ if env is None else env
    wanted = d.initialize == "on" or (
        d.initialize == "auto" and (d.coordinator_address or environment_wants_distributed(env))
    )
    if not wanted:
        return False
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address or None,
        num_processes=d.num_processes or None,
        process_id=None if d.process_id < 0 else d.process_id,
    )
    return True
