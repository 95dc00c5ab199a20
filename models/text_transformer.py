"""Causal text transformer tower (CLIP-style: pooled at the end-of-text token)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.transformer import Encoder


class TextTransformer(nn.Module):
    """Token ids [B, L] (0 = padding, EOS last non-pad) -> (pooled [B, width], tokens [B, L, width])."""

    vocab_size: int
    width: int
    depth: int
    heads: int
    max_len: int
    mlp_ratio: int = 4
    remat: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        length = tokens.shape[1]
        x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embedding")(
            tokens
        )
        posemb = self.param("pos_embedding", nn.initializers.normal(0.01), (1, self.max_len, self.width), jnp.float32)
        x = (x + posemb[:, :length]).astype(self.dtype)
        causal = nn.make_causal_mask(tokens, dtype=bool)
        x = Encoder(self.depth, self.heads, self.mlp_ratio, remat=self.remat, dtype=self.dtype, name="encoder")(
            x, causal
        )
        # The causal mask makes the end-of-text position a summary of the whole caption.
        eot = jnp.maximum(jnp.sum(tokens != 0, axis=1) - 1, 0)
        pooled = jnp.take_along_axis(x, eot[:, None, None], axis=1)[:, 0]
        return pooled, x
