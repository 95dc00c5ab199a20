"""Projection heads on top of the towers' embeddings (ProtoCLIP), trained with the model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchStatNorm(nn.Module):
    """Normalises [B, D] by the statistics of this batch, then a learned scale and shift.

    BatchNorm without running averages: the heads only run inside training (on whole batches and
    on the objective's own feature sweeps), never in evaluation, so no running statistics are kept
    and no mutable collection is needed.
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        mean = jnp.mean(x, axis=0, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=0, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias


class MlpHead(nn.Module):
    """[B, D] -> [B, out_dim]: Linear(hidden) - batch-statistics norm - ReLU - Linear(out_dim)."""

    hidden_dim: int
    out_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x)
        x = nn.relu(BatchStatNorm(name="norm")(x.astype(jnp.float32)))
        return nn.Dense(self.out_dim, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)
