"""The sharded train step on 8 fake devices against the same step on one device: parameters sharded
by path, created in place, and the same loss and updated parameters on every mesh."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from tiny_training import assert_same_params, batch, build, initial_state, run_steps, tiny_config

from training.collectives import collective_traffic
from training.mesh import global_batch, make_mesh
from training.sharding import bytes_per_device, partition_spec

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)

# fp32 on CPU: sharded reductions sum in another order. Losses agree to ~1e-7 relative; parameters
# after two AdamW steps to ADAMW_PARAM_ATOL (tests/tiny_training.py says why).
LOSS_RTOL = 1e-5
MESHES = {
    "data=8": {"data": 8},
    "data=4,fsdp=2": {"data": 4, "fsdp": 2},
    "data=2,fsdp=2,model=2": {"data": -1, "fsdp": 2, "model": 2},
}


@pytest.fixture(scope="module")
def single_device():
    """(initial state, batches, run of two steps on one device): the reference of every mesh below."""
    config = tiny_config()
    start, batches = initial_state(config), [batch(config, seed) for seed in (0, 1)]
    return start, batches, run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches, start)


@pytest.mark.parametrize(
    "mesh_name, implementation",
    [("data=8", "dense"), ("data=4,fsdp=2", "gathered"), ("data=2,fsdp=2,model=2", "ring")],
)
def test_sharded_step_matches_single_device(single_device, mesh_name, implementation):
    start, batches, (ref_params, ref_metrics) = single_device
    config = tiny_config(**{"loss.implementation": implementation})
    params, metrics = run_steps(config, make_mesh(MESHES[mesh_name]), batches, start)
    assert not np.allclose(ref_metrics[0]["loss"], ref_metrics[1]["loss"])  # the second step saw changed params
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose(m["loss"], r["loss"], rtol=LOSS_RTOL)
        np.testing.assert_allclose(m["grad_norm"], r["grad_norm"], rtol=1e-4)
    assert_same_params(params, ref_params)


def test_fused_query_key_value_keep_heads_on_their_devices(single_device):
    """attention=xla stacks the q/k/v kernels (models/transformer.py FusedQKVAttention): on a mesh that splits
    heads over `model` it trains as the single device does, and moves no head between devices (no more
    all-to-all or permute traffic than flax's separate projections; concatenating them along heads would)."""
    start, batches, (ref_params, ref_metrics) = single_device
    mesh = make_mesh(MESHES["data=2,fsdp=2,model=2"])
    config = tiny_config(**{"model.attention": "xla"})
    params, metrics = run_steps(config, mesh, batches, start)
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose(m["loss"], r["loss"], rtol=LOSS_RTOL)
    assert_same_params(params, ref_params)
    traffic = {}
    for attention in ("dense", "xla"):
        config = tiny_config(**{"model.attention": attention})
        state, step, _ = build(config, mesh, start)
        with jax.set_mesh(mesh):
            hlo = step.lower(state, global_batch(batches[0], mesh)).compile().as_text()
        traffic[attention] = collective_traffic(hlo, mesh.size).bytes_by_kind
    for kind in ("all-to-all", "collective-permute"):
        assert traffic["xla"].get(kind, 0) <= traffic["dense"].get(kind, 0), kind
    assert traffic["xla"]["all-reduce"] < traffic["dense"]["all-reduce"]  # x's gradient: one sum over `model`


def test_parameters_and_adam_moments_are_created_sharded_by_their_paths(single_device):
    config = tiny_config()
    mesh = make_mesh(MESHES["data=2,fsdp=2,model=2"])
    state, _, shardings = build(config, mesh)
    fc1 = state.params["image_tower"]["encoder"]["block0"]["mlp"]["fc1"]["kernel"]  # [32, 128]
    assert fc1.sharding.spec == P("fsdp", "model")
    assert fc1.addressable_shards[0].data.shape == (16, 64)
    query = state.params["text_tower"]["encoder"]["block0"]["attn"]["query"]["kernel"]  # [32, 2, 16]
    assert query.sharding.spec == P("fsdp", "model")
    adam_mu = state.opt_state[1][0].mu["image_tower"]["encoder"]["block0"]["mlp"]["fc1"]["kernel"]
    assert adam_mu.sharding.spec == P("fsdp", "model")
    assert state.params["logit_scale"].sharding.spec == P()  # small: replicated
    assert state.params["image_tower"]["encoder"]["block0"]["ln1"]["scale"].sharding.spec == P()
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.params))
    assert bytes_per_device(state.params, shardings.params) < 0.5 * total
    # Created in their shards, the values are those of the same init on one device (the tests above
    # start every mesh from that one).
    for got, want in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(single_device[0]), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "name, shape, mesh_shape, min_size, expected",
    [
        ("text_tower/token_embedding/embedding", (1000, 512), {"fsdp": 4}, 256, P("fsdp")),
        ("image_tower/patchify/kernel", (16, 16, 3, 768), {"fsdp": 8, "model": 2}, 256, P(None, None, None, "fsdp")),
        ("opt_state/1/0/nu/x/attn/out/kernel", (12, 64, 768), {"fsdp": 4, "model": 4}, 256, P("model", None, "fsdp")),
        ("x/mlp/fc2/kernel", (3072, 768), {"fsdp": 5, "model": 2}, 256, P("model")),  # 5 divides neither
        ("x/mlp/fc1/bias", (3072,), {"fsdp": 4, "model": 2}, 256, P("model")),
        ("x/mlp/fc1/bias", (3072,), {"fsdp": 4, "model": 2}, 4096, P()),  # below min_size
        ("x/ln1/scale", (768,), {"fsdp": 4}, 256, P("fsdp")),
        ("logit_scale", (), {"fsdp": 4}, 0, P()),
    ],
)
def test_partition_rules(name, shape, mesh_shape, min_size, expected):
    assert partition_spec(name, shape, mesh_shape, min_size) == expected


def test_mesh_shape_errors_name_the_fix():
    from training.mesh import mesh_shape

    assert mesh_shape({"data": -1, "fsdp": 2}, 8) == {"data": 4, "fsdp": 2, "model": 1}
    with pytest.raises(ValueError, match="covers 4 devices but there are 8"):
        mesh_shape({"data": 2, "fsdp": 2}, 8)
    with pytest.raises(ValueError, match="do not divide the 8 devices"):
        mesh_shape({"data": -1, "fsdp": 3}, 8)
    with pytest.raises(ValueError, match="at most one -1"):
        mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match=r"config.mesh takes only \['data', 'fsdp', 'model'\]"):
        mesh_shape({"pipeline": 2}, 8)
