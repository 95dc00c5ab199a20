"""The distance-structure loss (losses/distance_structure.py) in every implementation against a float64
NumPy loop over the pairs i < j, value and gradients, with padding rows, identical rows (zero
distances) and a batch that neither the tile nor the devices' share of it divides."""

import jax
import numpy as np
import pytest

from losses.contrastive import IMPLEMENTATIONS
from losses.distance_structure import structure_loss
from training.mesh import make_mesh

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)


def np_loss_and_grads(s, t, valid):
    """sum_{i<j, both valid} SmoothL1(|s_i - s_j| - |t_i - t_j|) and its gradients, written pair by pair."""
    loss, ds, dt = 0.0, np.zeros_like(s), np.zeros_like(t)
    for i in range(len(s)):
        for j in range(i + 1, len(s)):
            if not (valid[i] and valid[j]):
                continue
            a, b = np.linalg.norm(s[i] - s[j]), np.linalg.norm(t[i] - t[j])
            x = a - b
            loss += 0.5 * x**2 if abs(x) < 1 else abs(x) - 0.5
            slope = x if abs(x) < 1 else np.sign(x)
            if a > 0:
                ds[i] += slope * (s[i] - s[j]) / a
                ds[j] -= slope * (s[i] - s[j]) / a
            if b > 0:
                dt[i] -= slope * (t[i] - t[j]) / b
                dt[j] += slope * (t[i] - t[j]) / b
    return loss, ds, dt


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(24, 5)), 0.6 * rng.normal(size=(24, 5))
    s[7], t[7] = s[3], t[3]  # two identical captions: both distances 0
    s[11] = s[5]  # equal student rows, distinct teacher rows
    valid = np.ones(24, bool)
    valid[[2, 19]] = False
    return s, t, valid


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mesh_shape", [{"data": 8}, {"data": 4, "fsdp": 2}])
def test_every_implementation_matches_the_pairwise_loop(data, implementation, mesh_shape):
    if implementation in ("dense", "tiled") and "fsdp" in mesh_shape:
        pytest.skip("one-device implementations: the mesh does not enter")
    s, t, valid = data
    want_loss, want_ds, want_dt = np_loss_and_grads(s, t, valid)
    with jax.enable_x64(True), jax.set_mesh(make_mesh(mesh_shape)):
        # tile 2 on 3 rows per device, tile 5 on 24 rows: padding inside every blockwise sweep.
        tile = 2 if implementation in ("ring", "ring_tiled") else 5

        def loss(s, t):
            return structure_loss(s, t, implementation=implementation, tile_size=tile, valid=valid)

        value, (ds, dt) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(s, t)
    np.testing.assert_allclose(value, want_loss, rtol=1e-12)
    np.testing.assert_allclose(ds, want_ds, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dt, want_dt, rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(ds)[[2, 19]] == 0) and np.all(np.asarray(dt)[[2, 19]] == 0)  # padding: no gradient


def test_float32_tiled_equals_dense_at_a_batch_of_600():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(600, 16)).astype(np.float32)
    t = rng.normal(size=(600, 16)).astype(np.float32)
    dense = jax.jit(jax.value_and_grad(lambda s: structure_loss(s, t)))(s)
    tiled = jax.jit(jax.value_and_grad(lambda s: structure_loss(s, t, implementation="tiled", tile_size=128)))(s)
    np.testing.assert_allclose(tiled[0], dense[0], rtol=1e-5)
    np.testing.assert_allclose(tiled[1], dense[1], rtol=1e-4, atol=1e-5 * np.abs(dense[1]).max())
