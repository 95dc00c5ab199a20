"""CLIP: the dense softmax loss and the "clip" objective with a configured implementation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import EmbeddingsAsTowers, float64, reference, unit_rows

from configs import clip
from losses.objectives import get_objective
from losses.softmax import softmax_contrastive_loss
from training import mesh as mesh_lib


def test_dense_softmax_loss_matches_reference_with_padding():
    rng = np.random.default_rng(0)
    image = unit_rows(rng.normal(size=(7, 4)))
    text = unit_rows(image + 0.5 * rng.normal(size=(7, 4)))
    valid = np.array([True, False, True, True, True, False, True])
    ref = reference("softmax", image, text, np.log(20.0), valid=valid)
    with float64():
        loss, metrics = softmax_contrastive_loss(
            jnp.asarray(image), jnp.asarray(text), jnp.float64(np.log(20.0)), jnp.asarray(valid)
        )
    assert float(loss) == pytest.approx(ref.loss, rel=1e-12)
    assert float(metrics["i2t_accuracy"]) == pytest.approx(ref.i2t_accuracy)
    assert float(metrics["t2i_accuracy"]) == pytest.approx(ref.t2i_accuracy)


@pytest.mark.parametrize("implementation", ["gathered", "tiled"])
def test_clip_objective_uses_the_configured_implementation(implementation):
    mesh = mesh_lib.make_mesh()
    config = clip.get_config()
    config.loss.implementation, config.loss.tile_size = implementation, 5
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4 * mesh.size, 16)).astype(np.float32)
    text = (image + rng.normal(size=image.shape)).astype(np.float32)
    params = {"logit_scale": jnp.float32(np.log(10.0)), "logit_bias": jnp.float32(0.0)}
    model = EmbeddingsAsTowers()
    loss_fn = functools.partial(get_objective("clip").loss, extra={}, rng=None, model=model, config=config)
    step = jax.jit(
        jax.value_and_grad(loss_fn, has_aux=True),
        in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
    )
    with jax.set_mesh(mesh):  # as the trainer does: objectives get no mesh
        (loss, metrics), grads = step(params, {"image": image, "text": text})
    ref = reference("softmax", unit_rows(image), unit_rows(text), np.log(10.0))
    assert float(loss) == pytest.approx(ref.loss, rel=1e-5)
    assert float(grads["logit_scale"]) == pytest.approx(ref.d_logit_scale, rel=1e-4)
    assert float(metrics["i2t_accuracy"]) == pytest.approx(ref.i2t_accuracy)
    assert float(metrics["t2i_accuracy"]) == pytest.approx(ref.t2i_accuracy)
