"""GradCache accumulation over k micro-batches gives the full-batch step: same loss (over the whole
global batch, not a mean of micro-batch losses), gradients and updated parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import VOCAB, batch, run_steps, tiny_config

from losses.objectives import Objective, clip_loss, get_objective
from models.two_tower import build_model
from training.grad_cache import grad_cache_value_and_grad, merge_microbatches, split_microbatches
from training.mesh import make_mesh

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
    batches = [batch(tiny_config(**overrides), seed) for seed in (0, 1)]
    mesh = make_mesh(mesh_shape)
    full = run_steps(tiny_config(**overrides), mesh, batches)
    accumulated = run_steps(tiny_config(**overrides, microbatches=microbatches), mesh, batches)
    for got, want in zip(accumulated[1], full[1], strict=True):
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
        np.testing.assert_allclose(got["grad_norm"], want["grad_norm"], rtol=1e-5)
    for got, want in zip(jax.tree.leaves(accumulated[0]), jax.tree.leaves(full[0]), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_grad_cache_gradient_is_not_the_mean_of_micro_batch_gradients():
    # Guards the test above against a GradCache that averaged per-micro-batch losses: on this batch
    # that objective's gradient differs clearly from the full-batch one.
    config = tiny_config(batch_size=32)
    model = build_model(config, VOCAB)
    local = jax.tree.map(jnp.asarray, batch(config))
    params = model.init(jax.random.PRNGKey(0), local["image"][:1], local["text"][:1])["params"]
    objective = get_objective("clip")
    rng = jax.random.PRNGKey(1)

    def loss(p, b):
        return objective.loss(p, b, {}, rng, model=model, config=config)[0]

    full = jax.grad(loss)(params, local)
    cached = grad_cache_value_and_grad(objective, params, local, {}, rng, model=model, config=config, microbatches=4)
    micro = split_microbatches(local, 4)
    per_micro = [jax.grad(loss)(params, {k: v[i] for k, v in micro.items()}) for i in range(4)]
    kernel = lambda g: np.asarray(g["image_projection"]["kernel"])  # noqa: E731
    averaged = sum(kernel(g) for g in per_micro) / 4
    scale = np.abs(kernel(full)).max()
    np.testing.assert_allclose(kernel(cached[1]), kernel(full), rtol=0, atol=1e-5 * scale)
    assert np.abs(averaged - kernel(full)).max() > 1e-2 * scale


def test_objective_without_embeddings_split_is_refused():
    config = tiny_config(microbatches=2)
    with pytest.raises(ValueError, match="has no embed/loss_from_embeddings pair.*set config.microbatches to 1"):
        grad_cache_value_and_grad(
            Objective(loss=clip_loss), {}, {}, {}, None, model=None, config=config, microbatches=2
        )
