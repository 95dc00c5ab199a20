"""A tiny two-tower model, its config and fixed batches, for the scaling tests and their worker processes."""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from configs import common
from losses.objectives import get_objective
from models.two_tower import build_model
from training.mesh import global_batch, make_mesh
from training.optimizer import learning_rate_schedule, make_optimizer
from training.partitioning import FAST_COMPILE, create_train_state, jit_train_step, state_shardings

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
    return set_keys(c, overrides)


def set_keys(config, overrides: dict):
    """`config` with each dotted key of `overrides` ("model.text.width") set to its value."""
    for key, value in overrides.items():
        node, *path, leaf = [config, *key.split(".")]
        for name in path:
            node = node[name]
        node[leaf] = value
    return config


def fake_run(path, config) -> str:
    """A workdir (pathlib.Path) that validation takes for a finished run of `config`: a checkpoints folder, its
    run_info.json and a tokenizer.model; nothing a run could restore from."""
    os.makedirs(path / "checkpoints", exist_ok=True)
    (path / "run_info.json").write_text(json.dumps({"config": config.to_dict()}, default=list))
    (path / "tokenizer.model").write_text("")
    return str(path)


def batch(config, seed: int = 0, size: int | None = None) -> dict[str, np.ndarray]:
    """Random images and token ids (no padding, so every position is a caption token)."""
    rng = np.random.default_rng(seed)
    size = size or config.batch_size
    side = config.data.image_size
    return {
        "image": rng.normal(size=(size, side, side, 3)).astype(np.float32),
        "text": rng.integers(1, VOCAB, size=(size, config.model.text.max_len)).astype(np.int32),
    }


def tiny_decoder_on_a_mesh(config, **decoder):
    """`config` with a one-block decoder of width 32 (2 heads, context 12; `decoder` overrides) and batches of 16
    that every mesh of the 8-device tests splits, at full learning rate from the first step."""
    config.model.decoder.update({**dict(width=32, depth=1, heads=2, max_len=12), **decoder})
    config.batch_size, config.mesh.min_shard_size, config.optimizer.warmup_steps = 16, 256, 0
    return config


def token_rows(rng: np.random.Generator, length: int, low: int = 4) -> np.ndarray:
    """[16, length] int32 decoder input: BOS (2) first, ids in [low, 64), every third row padded (0) after
    length - 4 tokens."""
    text = rng.integers(low, 64, size=(16, length)).astype(np.int32)
    text[:, 0], text[::3, length - 4 :] = 2, 0
    return text


def build(config, mesh, start=None, inputs=None):
    """(initial state, jitted step, state shardings) of `config` on `mesh`. The state is created in
    its shards, or is `start` (a TrainState of host arrays, e.g. from initial_state) placed in them;
    `inputs`: the objective's host inputs (training/objective_inputs.py), for those that need them."""
    model = build_model(config, VOCAB)
    objective = get_objective(config.objective)
    optimizer = make_optimizer(config)
    _, shardings = state_shardings(config, model, optimizer, objective, mesh, inputs)
    # Compiling costs far more than the few steps a test runs: LLVM at -O0 (training/partitioning.py).
    if start is None:
        state = create_train_state(
            config, model, optimizer, objective, mesh, compiler_options=FAST_COMPILE, inputs=inputs
        )
    else:
        state = jax.device_put(start, shardings)
    schedule = learning_rate_schedule(config)
    step = jit_train_step(config, model, objective, optimizer, schedule, mesh, shardings, FAST_COMPILE)
    return state, step, shardings


def initial_state(config):
    """The initial TrainState of `config` as host arrays (created on one device)."""
    state, _, _ = build(config, make_mesh({"data": 1}, jax.devices()[:1]))
    return jax.device_get(state)


def train(state, step, mesh, batches: list[dict[str, np.ndarray]]):
    """(final params as host arrays, [per-step metrics]) after one step per batch, on `mesh`."""
    metrics = []
    for local in batches:
        with jax.set_mesh(mesh):
            state, m = step(state, global_batch(local, mesh))
        metrics.append(jax.device_get(m))
    return jax.device_get(state.params), metrics


def run_steps(config, mesh, batches: list[dict[str, np.ndarray]], start=None, inputs=None):
    """train() from build(config, mesh, start, inputs)."""
    state, step, _ = build(config, mesh, start, inputs)
    return train(state, step, mesh, batches)


# AdamW divides each gradient element by its running RMS + eps (1e-6): where an element is near zero
# because terms cancel (the attention key bias's true gradient is exactly zero: softmax ignores a shift
# shared by all keys), the fp32 rounding in it (~1e-9 absolute, and it depends on the summation order)
# moves the parameter by up to lr * noise / eps, about 1e-6 per step at lr 1e-3. Two runs that differ
# only in summation order (sharding, micro-batching, remat) are asserted to agree to 1e-5 after two
# steps: 1% of a step's largest move, while a wrong gradient moves parameters by ~lr.
ADAMW_PARAM_ATOL = 1e-5


def assert_same_params(got, want, atol: float = ADAMW_PARAM_ATOL) -> None:
    """Parameter trees `got` and `want` (host arrays) agree leaf by leaf to `atol`, naming the leaf."""
    flat, ref = jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)
    for (path, leaf), r in zip(flat, ref, strict=True):
        np.testing.assert_allclose(leaf, r, rtol=0, atol=atol, err_msg=jax.tree_util.keystr(path))
