"""Mixed precision (bf16 compute, fp32 params and optimizer state) and per-block remat in the train step."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import assert_same_params, batch, build, initial_state, run_steps, tiny_config

from training.mesh import global_batch, make_mesh


def _one_device():
    return make_mesh({"data": 1}, jax.devices()[:1])


@pytest.fixture(scope="module")
def float32_run():
    """(initial state, batch, one float32 step from it on one device): bf16 and remat change neither the
    parameters' values nor their dtype at init, so both tests start from this state."""
    config = tiny_config()
    start, local = initial_state(config), batch(config)
    return start, local, run_steps(config, _one_device(), [local], start)


def test_bfloat16_computes_in_bf16_and_keeps_float32_state(float32_run):
    start, local, (_, reference) = float32_run
    config = tiny_config(**{"model.dtype": "bfloat16"})
    mesh = _one_device()
    state, step, _ = build(config, mesh)
    with jax.set_mesh(mesh):
        hlo = step.lower(state, global_batch(local, mesh)).as_text()
    matmuls = re.findall(r"stablehlo.dot_general.*", hlo)
    assert matmuls and sum("bf16" in m for m in matmuls) >= 0.8 * len(matmuls)  # the towers' matmuls
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim} == {jnp.dtype(jnp.float32)}
    params, metrics = run_steps(config, mesh, [local], start)
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    # bf16 keeps 8 bits of mantissa: the loss agrees with fp32 to a few parts in a thousand.
    np.testing.assert_allclose(metrics[0]["loss"], reference[0]["loss"], rtol=2e-2)
    assert metrics[0]["loss"] != reference[0]["loss"]


def test_remat_recomputes_blocks_without_changing_the_step(float32_run):
    start, local, (ref_params, ref_metrics) = float32_run
    config = tiny_config(**{"model.remat": True})
    mesh = _one_device()
    state, step, _ = build(config, mesh, start)
    jaxpr = str(step.trace(state, global_batch(local, mesh)).jaxpr)
    assert jaxpr.count("checkpoint[") + jaxpr.count("remat") >= 2  # one per transformer block (2 here)
    params, metrics = run_steps(config, mesh, [local], start)
    np.testing.assert_allclose(metrics[0]["loss"], ref_metrics[0]["loss"], rtol=1e-6)
    assert_same_params(params, ref_params)
