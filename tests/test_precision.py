"""Mixed precision (bf16 compute, fp32 params and optimizer state) and per-block remat in the train step."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from tiny_training import batch, build, run_steps, tiny_config

from training.mesh import global_batch, make_mesh


def _one_device():
    return make_mesh({"data": 1}, jax.devices()[:1])


def test_bfloat16_computes_in_bf16_and_keeps_float32_state():
    config = tiny_config(**{"model.dtype": "bfloat16"})
    mesh = _one_device()
    state, step, _ = build(config, mesh)
    with jax.set_mesh(mesh):
        hlo = step.lower(state, global_batch(batch(config), mesh)).as_text()
    matmuls = re.findall(r"stablehlo.dot_general.*", hlo)
    assert matmuls and sum("bf16" in m for m in matmuls) >= 0.8 * len(matmuls)  # the towers' matmuls
    params, metrics = run_steps(config, mesh, [batch(config)])
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim} == {jnp.dtype(jnp.float32)}
    _, reference = run_steps(tiny_config(), mesh, [batch(config)])
    # bf16 keeps 8 bits of mantissa: the loss agrees with fp32 to a few parts in a thousand.
    np.testing.assert_allclose(metrics[0]["loss"], reference[0]["loss"], rtol=2e-2)
    assert metrics[0]["loss"] != reference[0]["loss"]


def test_remat_recomputes_blocks_without_changing_the_step():
    config = tiny_config(**{"model.remat": True})
    mesh = _one_device()
    state, step, _ = build(config, mesh)
    jaxpr = str(jax.make_jaxpr(step)(state, global_batch(batch(config), mesh)))
    assert jaxpr.count("checkpoint[") + jaxpr.count("remat") >= 2  # one per transformer block (2 here)
    got = run_steps(config, mesh, [batch(config)])
    want = run_steps(tiny_config(), mesh, [batch(config)])
    np.testing.assert_allclose(got[1][0]["loss"], want[1][0]["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got[0]), jax.tree.leaves(want[0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
