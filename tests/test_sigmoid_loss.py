"""SigLIP: the dense sigmoid loss, its config, and the "siglip" objective under a sharded jit."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import EmbeddingsAsTowers, float64, reference, unit_rows

from configs import siglip
from losses.contrastive import IMPLEMENTATIONS
from losses.objectives import get_objective
from losses.sigmoid import sigmoid_contrastive_loss
from training import mesh as mesh_lib


def test_dense_sigmoid_loss_matches_reference():
    rng = np.random.default_rng(0)
    image, text = unit_rows(rng.normal(size=(6, 4))), unit_rows(rng.normal(size=(6, 4)))
    valid = np.array([True, True, False, True, True, True])
    ref = reference("sigmoid", image, text, np.log(10.0), -2.0, valid)
    with float64():
        loss, metrics = sigmoid_contrastive_loss(
            jnp.asarray(image), jnp.asarray(text), jnp.float64(np.log(10.0)), jnp.float64(-2.0), jnp.asarray(valid)
        )
    assert float(loss) == pytest.approx(ref.loss, rel=1e-12)
    assert metrics == {}


def test_siglip_config_sets_the_paper_initialisation():
    config = siglip.get_config()
    assert config.objective == "siglip"
    assert config.model.logit_scale_init == pytest.approx(math.log(10.0))
    assert config.model.logit_bias_init == -10.0
    assert config.loss.implementation in IMPLEMENTATIONS
    assert get_objective(config.objective).loss.__name__ == "siglip_loss"


def test_siglip_objective_runs_ring_tiled_in_the_sharded_train_step():
    mesh = mesh_lib.make_mesh()
    config = siglip.get_config()
    config.loss.implementation, config.loss.tile_size = "ring_tiled", 4
    rng = np.random.default_rng(0)
    batch_size = 6 * mesh.size
    image = rng.normal(size=(batch_size, 16)).astype(np.float32)
    text = (image + rng.normal(size=image.shape)).astype(np.float32)
    params = {"logit_scale": jnp.float32(np.log(10.0)), "logit_bias": jnp.float32(-10.0)}
    loss_fn = functools.partial(
        get_objective("siglip").loss, extra={}, rng=None, model=EmbeddingsAsTowers(), config=config
    )
    step = jax.jit(
        jax.value_and_grad(loss_fn, has_aux=True),
        in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
    )
    with jax.set_mesh(mesh):  # as the trainer does: objectives get no mesh
        (loss, metrics), grads = step(params, {"image": image, "text": text})
    ref = reference("sigmoid", unit_rows(image), unit_rows(text), np.log(10.0), -10.0)
    assert float(loss) == pytest.approx(ref.loss, rel=1e-5)
    assert float(grads["logit_scale"]) == pytest.approx(ref.d_logit_scale, rel=1e-4)
    assert float(grads["logit_bias"]) == pytest.approx(ref.d_logit_bias, rel=1e-4)
    assert float(metrics["temperature"]) == pytest.approx(0.1)
    assert float(metrics["logit_bias"]) == -10.0
