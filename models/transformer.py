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


class EncoderBlock(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); `mask` is [B, 1, N, N] boolean (True = attend).

    With `dropout_rate` > 0 and `deterministic` False (training; rng stream "dropout"), dropout on the
    attention weights and on both residual branches, as in BERT; the default 0 changes nothing."""

    heads: int
    mlp_dim: int
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads,
            dtype=self.dtype,
            dropout_rate=self.dropout_rate,
            deterministic=self.deterministic,
            name="attn",
        )(y, y, mask=mask)
        x = x + dropout(y)
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln2")(x)
        return x + dropout(MlpBlock(self.mlp_dim, self.activation, dtype=self.dtype, name="mlp")(y))


class Encoder(nn.Module):
    """`depth` EncoderBlocks and a final LayerNorm: [B, N, width] -> [B, N, width]."""

    depth: int
    heads: int
    mlp_ratio: int = 4
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    remat: bool = False
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, deterministic: bool = True) -> jax.Array:
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        mlp_dim = self.mlp_ratio * x.shape[-1]
        for i in range(self.depth):
            x = block(
                self.heads, mlp_dim, self.activation, self.layer_norm_eps, dtype=self.dtype,
                dropout_rate=self.dropout_rate, deterministic=deterministic, name=f"block{i}",
            )(x, mask)  # fmt: skip
        return nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln_final")(x)
