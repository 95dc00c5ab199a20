import functools
import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from tiny_training import tiny_config

from configs import common
from configs.lm import language_model, llama_style
from losses.objectives import get_objective
from models.two_tower import build_model
from training.flops import decoder_forward_flops, decoder_train_flops, matmul_flops


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


def _decoder(llama: bool, attention: str = "dense"):
    """(config, DecoderLM) of width 64, 2 blocks, 4 heads of 16, context 16, vocabulary 1000 (the benchmark's):
    GPT-2's switches, or Llama's (2 key-value heads: grouped-query; SwiGLU; untied output)."""
    config = language_model(common.get_base_config(None))
    config.model.decoder.update(width=64, depth=2, heads=4, max_len=16)
    if llama:
        llama_style(config.model.decoder)
    config.model.attention = attention
    return config, build_model(config, 1000)


def test_decoder_flops_by_hand():
    width, length, vocab = 64, 16, 1000
    # GPT-style, per token and block: q, k, v, o [64, 64]; GELU MLP [64, 256] and [256, 64]; scores and values
    # over all 16 keys (the causal half not taken off); then the tied output projection [64, 1000].
    gpt = 2 * (2 * (4 * width * width + 2 * width * 256 + 2 * length * width) + width * vocab)
    # Llama-style: q and o [64, 64], k and v [64, 2 x 16] (2 key-value heads); SwiGLU's gate, up and down
    # [64, 176] (8/3 x 64 rounded up to a multiple of 8); the untied lm_head [64, 1000].
    llama = 2 * (2 * (2 * width * width + 2 * width * 32 + 3 * width * 176 + 2 * length * width) + width * vocab)
    for is_llama, per_token in ((False, gpt), (True, llama)):
        model = _decoder(is_llama)[1]
        assert decoder_forward_flops(model, 3, length) == 3 * length * per_token
        assert decoder_train_flops(model, 3, length) == 3 * 3 * length * per_token


@pytest.mark.parametrize("attention", ["dense", "xla"])
@pytest.mark.parametrize("llama", [False, True], ids=["gpt", "llama"])
def test_decoder_flops_equal_the_jaxpr_count_of_its_training_forward(llama, attention):
    """The closed form is exactly what matmul_flops counts on the `lm` loss's jaxpr (the same counter as the
    two-tower MFU's; XLA's cost analysis also counts elementwise work and, on GPUs, misses cuBLAS's matmuls), for
    either attention kernel; and it is what benchmarks/train_step.py reports for a decoder."""
    config, model = _decoder(llama, attention)
    batch = {"text": jnp.ones((3, 17), jnp.int32)}
    params = model.init(jax.random.PRNGKey(0), batch["text"][:, :-1])["params"]
    objective = get_objective(config.objective)

    def forward(p, b):
        return objective.loss(p, b, {}, jax.random.PRNGKey(0), model=model, config=config)[0]

    counted = 3 * matmul_flops(forward, params, batch)
    assert counted == decoder_train_flops(model, 3, 16) == _train_step_script().model_flops(config, params, batch)
