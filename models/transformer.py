"""The pre-norm transformer encoder shared by the image and text towers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class MlpBlock(nn.Module):
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x)
        x = nn.gelu(x)
        return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


class EncoderBlock(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); `mask` is [B, 1, N, N] boolean (True = attend)."""

    heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        y = nn.LayerNorm(name="ln1")(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, name="attn")(y, y, mask=mask)
        x = x + y
        y = nn.LayerNorm(name="ln2")(x)
        return x + MlpBlock(self.mlp_dim, dtype=self.dtype, name="mlp")(y)


class Encoder(nn.Module):
    """`depth` EncoderBlocks and a final LayerNorm: [B, N, width] -> [B, N, width]."""

    depth: int
    heads: int
    mlp_ratio: int = 4
    remat: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        for i in range(self.depth):
            x = block(self.heads, self.mlp_ratio * x.shape[-1], dtype=self.dtype, name=f"block{i}")(x, mask)
        return nn.LayerNorm(name="ln_final")(x)
