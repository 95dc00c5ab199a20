"""The towers' attention kernels (config.model.attention) and LayerNorm dtype (config.model.layer_norm_dtype)."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import VOCAB, batch, tiny_config

from configs.errors import ConfigError
from models.transformer import CUDNN_LENGTH_MULTIPLE, EncoderBlock, fused_attention
from models.two_tower import build_model
from training.validation import validate_config


def _numpy_attention(q, k, v, causal):
    """Softmax(q k^T / sqrt(d)) v per head in float64; q, k, v [B, N, heads, d]."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if causal:
        n = q.shape[1]
        logits = np.where(np.tril(np.ones((n, n), bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", weights, v)


@pytest.mark.parametrize("causal", [False, True])
def test_fused_attention_xla_matches_numpy(causal):
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 7, 3, 8)).astype(np.float32) for _ in range(3))  # odd length, as ViT's 197
    out = fused_attention(q, k, v, implementation="xla", causal=causal)
    np.testing.assert_allclose(out, _numpy_attention(q, k, v, causal), atol=1e-5)


def _jnp_attention(q, k, v, causal):
    """The textbook softmax attention in jnp, to differentiate: q, k, v [B, N, heads, d]."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if causal:
        logits = jnp.where(jnp.tril(jnp.ones(logits.shape[-2:], bool)), logits, -jnp.inf)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("multiple", [4, 64])
def test_padding_to_a_length_multiple_leaves_values_and_gradients_unchanged(causal, multiple):
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 7, 3, 8)), jnp.float32) for _ in range(3))
    padded = fused_attention(q, k, v, implementation="xla", causal=causal, length_multiple=multiple)
    assert padded.shape == q.shape
    np.testing.assert_allclose(padded, _numpy_attention(q, k, v, causal), atol=1e-5)
    kernel = functools.partial(fused_attention, implementation="xla", causal=causal, length_multiple=multiple)
    _assert_gradients_match_jnp(kernel, q, k, v, causal, rng)


def _assert_gradients_match_jnp(kernel, q, k, v, causal, rng):
    """d <kernel(q, k, v), c> / d (q, k, v) equal the textbook attention's, for a random cotangent c."""
    cotangent = jnp.asarray(rng.normal(size=q.shape), jnp.float32)

    def grads(attention):
        return jax.grad(lambda *qkv: jnp.sum(attention(*qkv) * cotangent), argnums=(0, 1, 2))(q, k, v)

    for got, want in zip(grads(kernel), grads(functools.partial(_jnp_attention, causal=causal)), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_pallas_flash_attention_matches_numpy_and_its_gradients_at_an_odd_length(causal):
    """7 tokens padded to the kernel's 64-row blocks, the padding masked by segment ids (interpreted on the CPU)."""
    rng = np.random.default_rng(3)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 7, 3, 8)), jnp.float32) for _ in range(3))
    out = fused_attention(q, k, v, implementation="pallas", causal=causal)
    assert out.shape == q.shape
    np.testing.assert_allclose(out, _numpy_attention(q, k, v, causal), atol=1e-5)
    _assert_gradients_match_jnp(functools.partial(fused_attention, implementation="pallas", causal=causal), q, k, v,
                                causal, rng)  # fmt: skip


def test_pallas_attention_lowers_to_triton_for_a_gpu_from_this_host():
    """ViT-B/16's 197 tokens, bf16: forward and backward as Triton calls on 256 padded tokens with segment ids; the CPU
    lowering of the same step interprets them. Compiled by OpenAI Triton for sm_90 (not installed in CI), the
    kernels use 127-139 registers and spill nothing (BENCHMARKS.md)."""

    def loss(q, k, v):
        return jnp.sum(fused_attention(q, k, v, implementation="pallas", causal=False).astype(jnp.float32))

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    args = [jax.ShapeDtypeStruct((2, 197, 12, 64), jnp.bfloat16)] * 3
    checks = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
    cuda = jax.export.export(step, platforms=["cuda"], disabled_checks=checks)(*args).mlir_module()
    calls = [line for line in cuda.splitlines() if "stablehlo.custom_call @__gpu$xla.gpu.triton" in line]
    names = sorted(re.search(r'name = "(\w+)", num_stages', line).group(1) for line in calls)
    assert names == ["mha_backward", "mha_forward", "mha_preprocess_backward"]
    forward = next(line for line in calls if '"mha_forward"' in line).split("} : (")[-1]
    assert forward.startswith("tensor<2x256x12x64xbf16>, tensor<2x256x12x64xbf16>, tensor<2x256x12x64xbf16>, "
                              "tensor<2x256xi32>)")  # fmt: skip
    assert "xla.gpu.triton" not in step.trace(*args).lower().as_text()


def test_cudnn_kernel_is_given_a_padded_sequence_and_the_true_length(monkeypatch):
    """ViT-B/16's 197 tokens reach cuDNN as 256 with a length mask (the kernel itself stands in as XLA's here)."""
    calls, original = [], jax.nn.dot_product_attention

    def recording(query, key, value, **kwargs):
        calls.append((query.shape, kwargs))
        return original(query, key, value, **dict(kwargs, implementation="xla"))

    monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
    rng = np.random.default_rng(2)
    q, k, v = (rng.normal(size=(2, 197, 2, 8)).astype(np.float32) for _ in range(3))
    out = fused_attention(q, k, v, implementation="cudnn", causal=False)
    ((shape, kwargs),) = calls
    assert CUDNN_LENGTH_MULTIPLE == 64 and shape == (2, 256, 2, 8) and kwargs["implementation"] == "cudnn"
    np.testing.assert_array_equal(kwargs["key_value_seq_lengths"], [197, 197])
    np.testing.assert_allclose(out, _numpy_attention(q, k, v, False), atol=1e-5)
    calls.clear()
    fused_attention(q[:, :128], k[:, :128], v[:, :128], implementation="cudnn", causal=True)  # a multiple: as is
    assert calls[0][0] == (2, 128, 2, 8) and "key_value_seq_lengths" not in calls[0][1]


def _embeddings(config, params=None):
    model = build_model(config, VOCAB)
    data = batch(config, size=4)
    if params is None:
        params = model.init(jax.random.PRNGKey(0), data["image"], data["text"])
    out = model.apply(params, data["image"], data["text"])
    return params, out


@pytest.mark.parametrize("kernel", ["xla", "pallas"])
def test_fused_attention_gives_the_dense_towers_outputs_with_the_same_params(kernel):
    params, dense = _embeddings(tiny_config())
    fused_params, _ = _embeddings(tiny_config(**{"model.attention": kernel}))
    # Same parameter tree: checkpoints move between kernels.
    assert jax.tree.structure(params) == jax.tree.structure(fused_params)
    _, fused = _embeddings(tiny_config(**{"model.attention": kernel}), params)
    for key in ("image_embedding", "text_embedding", "image_tokens"):
        np.testing.assert_allclose(fused[key], dense[key], atol=2e-5)
    # And the same gradients (the train step differentiates through the kernel), to float32 rounding: the two
    # kernels sum in different orders.
    grads = [_similarity_grads(tiny_config(**{"model.attention": k}), params) for k in ("dense", kernel)]
    jax.tree.map(lambda d, x: np.testing.assert_allclose(x, d, rtol=1e-6, atol=1e-5), *grads)


def _dot_operand_shapes(jaxpr) -> list[tuple[tuple[int, ...], ...]]:
    """The operand shapes of every dot_general in `jaxpr` and in the jaxprs its equations call."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            shapes.append(tuple(tuple(v.aval.shape) for v in eqn.invars))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    shapes += _dot_operand_shapes(inner)
    return shapes


@pytest.mark.parametrize("causal", [False, True])
def test_kernel_paths_multiply_by_query_key_value_once(causal):
    """A block with a fused kernel keeps flax's attention parameters, bit for bit from the same rng (checkpoints
    move between kernels), gives flax's outputs, and multiplies by one stacked [W, 3, heads, head_dim] kernel:
    once forward, once for x's gradient, where flax multiplies by three [W, heads, head_dim] kernels each time."""
    x = np.random.default_rng(0).normal(size=(2, 5, 32)).astype(np.float32)
    blocks = {a: EncoderBlock(heads=2, mlp_dim=64, attention=a, causal=causal) for a in ("dense", "xla")}
    params = {a: block.init(jax.random.PRNGKey(1), x) for a, block in blocks.items()}
    jax.tree.map(np.testing.assert_array_equal, params["xla"], params["dense"])
    outputs = {a: block.apply(params["dense"], x) for a, block in blocks.items()}
    np.testing.assert_allclose(outputs["xla"], outputs["dense"], atol=1e-5)

    def dots(attention, kernel_shape):
        loss = lambda p: jnp.sum(blocks[attention].apply(p, x) ** 2)  # noqa: E731
        return sum(
            kernel_shape in operands
            for operands in _dot_operand_shapes(jax.make_jaxpr(jax.grad(loss))(params[attention]).jaxpr)
        )

    separate, stacked = (32, 2, 16), (32, 3, 2, 16)
    assert (dots("dense", separate), dots("dense", stacked)) == (6, 0)
    assert (dots("xla", separate), dots("xla", stacked)) == (0, 2)


def _similarity_grads(config, params):
    """Gradients of the summed image-text similarities of a random batch with respect to every parameter."""
    model, data = build_model(config, VOCAB), batch(config, size=4)

    def similarity(p):
        out = model.apply(p, data["image"], data["text"])
        return jnp.sum(out["image_embedding"] @ out["text_embedding"].T)

    return jax.grad(similarity)(params)


@pytest.mark.parametrize("kernel", ["xla", "pallas"])
def test_text_tower_stays_causal_with_the_fused_kernel(kernel):
    """Changing the last token must leave every earlier position of the text tower unchanged."""
    config = tiny_config(**{"model.attention": kernel})
    model = build_model(config, VOCAB)
    tokens = batch(config, size=2)["text"]
    changed = tokens.copy()
    changed[:, -1] = np.where(tokens[:, -1] == 1, 2, 1)
    params = model.init(jax.random.PRNGKey(0), None, tokens)
    states, new_states = (model.apply(params, t, method=lambda m, t: m.text_tower(t)[1]) for t in (tokens, changed))
    np.testing.assert_allclose(new_states[:, :-1], states[:, :-1], atol=1e-6)
    assert np.abs(new_states[:, -1] - states[:, -1]).max() > 1e-3


def test_bfloat16_layer_norms_carry_the_vit_residual_stream_in_bfloat16():
    config = tiny_config(**{"model.dtype": "bfloat16"})
    params, mixed = _embeddings(config)
    assert mixed["image_tokens"].dtype == jnp.float32  # ln_final's output: fp32 stream by default
    config.model.layer_norm_dtype = "bfloat16"
    _, low = _embeddings(config, params)
    assert low["image_tokens"].dtype == jnp.bfloat16
    # The embeddings agree to bf16's precision (8 mantissa bits) and are not bit-equal.
    for key in ("image_embedding", "text_embedding"):
        np.testing.assert_allclose(low[key], mixed[key], atol=3e-2)
    assert not np.array_equal(low["image_embedding"], mixed["image_embedding"])


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="set config.model.dtype=bfloat16"):
        validate_config(tiny_config(**{"model.attention": "cudnn"}))
    with pytest.raises(ConfigError, match="config.model.text.dropout_rate=0"):
        validate_config(tiny_config(**{"model.attention": "xla", "model.text.dropout_rate": 0.1}))
    with pytest.raises(ConfigError, match="attention kernel 'flash'"):
        validate_config(tiny_config(**{"model.attention": "flash"}))


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the message shown off a GPU")
def test_cudnn_attention_off_a_gpu_says_what_to_set():
    config = tiny_config(**{"model.attention": "cudnn", "model.dtype": "bfloat16"})
    with pytest.raises(ValueError, match="needs an NVIDIA GPU.*set config.model.attention='dense'"):
        build_model(config, VOCAB)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN's and Triton's flash attention need an NVIDIA GPU")
@pytest.mark.parametrize("kernel", ["cudnn", "pallas"])
@pytest.mark.parametrize(("length", "causal"), [(197, False), (77, True)])  # ViT-B/16's tokens, CLIP's captions
def test_flash_attention_matches_numpy_on_a_gpu(length, causal, kernel):
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(4, length, 12, 64)).astype(np.float32) for _ in range(3))
    out = fused_attention(*(jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)), implementation=kernel, causal=causal)
    np.testing.assert_allclose(np.asarray(out, np.float32), _numpy_attention(q, k, v, causal), atol=3e-2)
