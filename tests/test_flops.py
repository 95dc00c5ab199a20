import functools
import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from tiny_training import tiny_config

from losses.objectives import get_objective
from models.two_tower import build_model
from training.flops import matmul_flops


def test_batched_matmul_and_strided_grouped_conv_by_hand():
    a, b = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))
    assert matmul_flops(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), a, b) == 2 * 3 * 4 * 5 * 6
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 2, 16))  # 2 groups of 2 input channels

    def conv(x, w):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dims, feature_group_count=2)

    assert matmul_flops(conv, x, w) == 2 * (2 * 4 * 4 * 16) * (3 * 3 * 2)


def test_nested_jit_and_remat_count_once_and_elementwise_work_not_at_all():
    dense = nn.Dense(7)
    params = dense.init(jax.random.PRNGKey(0), jnp.ones((1, 5)))

    def forward(p, x):
        y = jax.checkpoint(lambda x: dense.apply(p, x))(x)
        return jax.jit(lambda y: jnp.tanh(y) @ jnp.ones((7, 2)))(y)

    assert matmul_flops(forward, params, jnp.ones((4, 5))) == 2 * 4 * 5 * 7 + 2 * 4 * 7 * 2


def test_a_scan_counts_its_body_per_iteration_and_a_cond_its_costliest_branch():
    w = jnp.ones((5, 5))

    def scanned(x):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=6)[0]

    def branch(x, flag):
        return jax.lax.cond(flag, lambda x: x @ w @ w, lambda x: x @ w, x)

    x = jnp.ones((4, 5))
    assert matmul_flops(scanned, x) == 6 * 2 * 4 * 5 * 5
    assert matmul_flops(branch, x, True) == 2 * (2 * 4 * 5 * 5)


@functools.cache
def _train_step_script():  # once: the script defines absl flags
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "train_step.py")
    spec = importlib.util.spec_from_file_location("train_step_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("attention", ["dense", "pallas"])
def test_mfu_counts_the_attention_matmuls_whatever_the_kernel(attention):
    """benchmarks/train_step.py's model FLOPs are the same for every attention kernel: the flash kernels' jaxprs
    hide their matmuls (counted on the pallas model's own jaxpr, a step would lose most of its attention FLOPs)."""
    script = _train_step_script()
    config = tiny_config(**{"model.attention": attention})
    model = build_model(config, script._VOCAB)
    data = script._batch(config)
    params = model.init(jax.random.PRNGKey(0), data["image"], data["text"])["params"]
    reference = script.model_flops(tiny_config(**{"model.attention": "xla"}), params, data)
    assert script.model_flops(config, params, data) == reference
    objective = get_objective(config.objective)

    def own_forward(p, b):
        return objective.loss(p, b, {}, jax.random.PRNGKey(0), model=model, config=config)[0]

    own = 3 * matmul_flops(own_forward, params, data)
    if attention == "pallas":
        assert own < reference  # what counting the kernel's own jaxpr would have reported
    else:
        assert own == reference  # dense attention's einsums are the same products as XLA's
