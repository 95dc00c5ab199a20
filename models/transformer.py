"""The pre-norm transformer encoder shared by the image and text towers."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI CLIP's sigmoid approximation of GELU."""
    return x * nn.sigmoid(1.702 * x)


# MLP activations by config name: `gelu_tanh` is this repo's default, `gelu` (exact, erf) is BERT's and
# open_clip's, `quick_gelu` OpenAI CLIP's; pretrained weights need the one they were trained with.
ACTIVATIONS = {
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),
    "gelu": functools.partial(nn.gelu, approximate=False),
    "quick_gelu": quick_gelu,
}


class MlpBlock(nn.Module):
    mlp_dim: int
    activation: str = "gelu_tanh"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x)
        x = ACTIVATIONS[self.activation](x)
        return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


# Attention kernels by config name (config.model.attention). `dense` is Flax's einsum-softmax-einsum
# with a materialised [B, heads, N, N] mask; the other two go through jax.nn.dot_product_attention,
# which takes causality as a flag: `xla` is its portable XLA path (the same math, any backend), `cudnn`
# cuDNN's fused flash attention (NVIDIA GPUs, bf16/fp16, no attention dropout).
ATTENTION = ("dense", "xla", "cudnn")


def fused_attention(query: jax.Array, key: jax.Array, value: jax.Array, *, implementation: str, causal: bool):
    """q, k, v [B, N, heads, head_dim] -> [B, N, heads, head_dim] via jax.nn.dot_product_attention."""
    return jax.nn.dot_product_attention(query, key, value, is_causal=causal, implementation=implementation)


class EncoderBlock(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); `causal` lets token i attend only to tokens <= i.

    With `dropout_rate` > 0 and `deterministic` False (training; rng stream "dropout"), dropout on the
    attention weights and on both residual branches, as in BERT; the default 0 changes nothing.
    `layer_norm_dtype` is the LayerNorms' output dtype (statistics are float32 either way)."""

    heads: int
    mlp_dim: int
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0
    deterministic: bool = True
    causal: bool = False
    attention: str = "dense"
    layer_norm_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
        mask, attention_fn = None, nn.dot_product_attention
        if self.attention == "dense":
            mask = nn.make_causal_mask(x[..., 0], dtype=bool) if self.causal else None
        else:
            if self.dropout_rate:
                raise ValueError(f"model.attention={self.attention!r} has no attention dropout; use 'dense'.")
            attention_fn = functools.partial(fused_attention, implementation=self.attention, causal=self.causal)
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads,
            dtype=self.dtype,
            dropout_rate=self.dropout_rate,
            deterministic=self.deterministic,
            attention_fn=attention_fn,
            name="attn",
        )(y, y, mask=mask)
        x = x + dropout(y)
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln2")(x)
        return x + dropout(MlpBlock(self.mlp_dim, self.activation, dtype=self.dtype, name="mlp")(y))


class Encoder(nn.Module):
    """`depth` EncoderBlocks and a final LayerNorm: [B, N, width] -> [B, N, width] (EncoderBlock: the options)."""

    depth: int
    heads: int
    mlp_dim: int = 0  # the MLP's hidden width; 0 = 4 x width
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    remat: bool = False
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0
    causal: bool = False
    attention: str = "dense"
    layer_norm_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        mlp_dim = self.mlp_dim or 4 * x.shape[-1]
        for i in range(self.depth):
            x = block(
                self.heads, mlp_dim, self.activation, self.layer_norm_eps, dtype=self.dtype,
                dropout_rate=self.dropout_rate, deterministic=deterministic, causal=self.causal,
                attention=self.attention, layer_norm_dtype=self.layer_norm_dtype, name=f"block{i}",
            )(x)  # fmt: skip
        return nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln_final")(x)
