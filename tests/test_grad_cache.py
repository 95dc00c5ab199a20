"""GradCache accumulation over k micro-batches gives the full-batch step: same loss (over the whole
global batch, not a mean of micro-batch losses), gradients and updated parameters."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from tiny_training import VOCAB, assert_same_params, batch, initial_state, run_steps, tiny_config

from losses.objectives import Objective, clip_loss, get_objective
from models.two_tower import build_model
from training.grad_cache import grad_cache_value_and_grad, merge_microbatches, split_microbatches
from training.mesh import make_mesh
from training.partitioning import FAST_COMPILE

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)


def test_microbatch_i_takes_every_kth_example_and_merge_restores_order():
    x = np.arange(12).reshape(12, 1)
    micro = split_microbatches(x, 3)
    np.testing.assert_array_equal(micro[:, :, 0], [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])
    np.testing.assert_array_equal(merge_microbatches(micro), x)


@pytest.mark.parametrize(
    "objective, implementation, mesh_shape, microbatches",
    [
        ("clip", "dense", {"data": 4, "fsdp": 2}, 4),
        ("siglip", "ring", {"data": 2, "fsdp": 2, "model": 2}, 2),
    ],
)
def test_grad_cache_step_equals_full_batch_step(objective, implementation, mesh_shape, microbatches):
    overrides = {"objective": objective, "loss.implementation": implementation, "batch_size": 32}
    config = tiny_config(**overrides)
    start, batches, mesh = initial_state(config), [batch(config, seed) for seed in (0, 1)], make_mesh(mesh_shape)
    full = run_steps(config, mesh, batches, start)
    accumulated = run_steps(tiny_config(**overrides, microbatches=microbatches), mesh, batches, start)
    for got, want in zip(accumulated[1], full[1], strict=True):
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
        np.testing.assert_allclose(got["grad_norm"], want["grad_norm"], rtol=1e-5)
    assert_same_params(accumulated[0], full[0])


def test_grad_cache_gradient_is_not_the_mean_of_micro_batch_gradients():
    # Guards the test above against a GradCache that averaged per-micro-batch losses: on this batch
    # that gradient differs clearly from the full-batch one, which GradCache matches.
    config = tiny_config(batch_size=32)
    model, objective, rng = build_model(config, VOCAB), get_objective("clip"), jax.random.PRNGKey(1)
    params, local = initial_state(config).params, batch(config)

    def kernel_grad(b):
        loss = lambda p: objective.loss(p, b, {}, rng, model=model, config=config)[0]  # noqa: E731
        return jax.grad(loss)(params)["image_projection"]["kernel"]

    kernel_grad = jax.jit(kernel_grad, compiler_options=FAST_COMPILE)
    full, micro = kernel_grad(local), split_microbatches(local, 4)
    averaged = sum(kernel_grad({k: v[i] for k, v in micro.items()}) for i in range(4)) / 4
    scale = np.abs(full).max()
    assert np.abs(averaged - full).max() > 1e-2 * scale


def test_objective_without_embeddings_split_is_refused():
    config = tiny_config(microbatches=2)
    with pytest.raises(ValueError, match="has no embed/loss_from_embeddings pair.*set config.microbatches to 1"):
        grad_cache_value_and_grad(
            Objective(loss=clip_loss), {}, {}, {}, None, model=None, config=config, microbatches=2
        )
