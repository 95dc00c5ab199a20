"""A tiny two-tower model, its config and fixed batches, for the scaling tests and their worker processes."""

from __future__ import annotations

import jax
import numpy as np

from configs import common
from losses.objectives import get_objective
from models.two_tower import build_model
from training.optimizer import learning_rate_schedule, make_optimizer
from training.partitioning import create_train_state, jit_train_step, state_shardings

VOCAB = 64


def tiny_config(**overrides):
    """Width 32, one block per tower, 16 px images, 8 tokens; parameters of >= 256 elements are sharded."""
    c = common.get_base_config(None)
    c.model.image.update(width=32, depth=1, heads=2, patch_size=4, conv_stem_depth=0)
    c.model.text.update(width=32, depth=1, heads=2, max_len=8)
    c.model.embed_dim = 16
    c.data.image_size = 16
    c.batch_size = 16
    c.optimizer.warmup_steps = 0
    c.optimizer.learning_rate = 1e-3
    c.mesh.min_shard_size = 256
    for key, value in overrides.items():
        node, *path, leaf = [c, *key.split(".")]
        for name in path:
            node = node[name]
        node[leaf] = value
    return c


def batch(config, seed: int = 0, size: int | None = None) -> dict[str, np.ndarray]:
    """Random images and token ids (no padding, so every position is a caption token)."""
    rng = np.random.default_rng(seed)
    size = size or config.batch_size
    side = config.data.image_size
    return {
        "image": rng.normal(size=(size, side, side, 3)).astype(np.float32),
        "text": rng.integers(1, VOCAB, size=(size, config.model.text.max_len)).astype(np.int32),
    }


def build(config, mesh):
    """(initial state, jitted step, state shardings) of `config` on `mesh`."""
    model = build_model(config, VOCAB)
    objective = get_objective(config.objective)
    optimizer = make_optimizer(config)
    _, shardings = state_shardings(config, model, optimizer, objective, mesh)
    state = create_train_state(config, model, optimizer, objective, mesh)
    step = jit_train_step(config, model, objective, optimizer, learning_rate_schedule(config), mesh, shardings)
    return state, step, shardings


def run_steps(config, mesh, batches: list[dict[str, np.ndarray]]):
    """(final params as host arrays, [per-step metrics]) after one step per batch, on `mesh`."""
    from training.mesh import global_batch

    state, step, _ = build(config, mesh)
    metrics = []
    for local in batches:
        with jax.set_mesh(mesh):
            state, m = step(state, global_batch(local, mesh))
        metrics.append(jax.device_get(m))
    return jax.device_get(state.params), metrics
