"""Text transformer tower (CLIP-style: causal, pooled at the end-of-text token; or SigLIP's)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.transformer import Encoder


class TextTransformer(nn.Module):
    """Token ids [B, L] (0 = padding, EOS last non-pad) -> (pooled [B, width], tokens [B, L, width]).

    `pool` = "last" reads the last non-padding position (this repo's tokenizers end with EOS);
    "argmax" reads the position of the highest id (OpenAI CLIP: its end-of-text id is the largest,
    and its id 0 is the real token "!", not padding); "eos" the first position of `eos_token_id`
    (position 0 if there is none: transformers' CLIPTextTransformer for an eos_token_id other than 2);
    "final" the last position, padding included (SigLIP, whose captions are padded to max_len).
    `causal` = False lets every token attend to every other, padding included (SigLIP).
    """

    vocab_size: int
    width: int
    depth: int
    heads: int
    max_len: int
    mlp_dim: int = 0  # 0 = 4 x width
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    pool: str = "last"  # TEXT_POOLING
    eos_token_id: int = 0  # read by pool = "eos"
    causal: bool = True
    remat: bool = False
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0  # BERT-style dropout in training (SimCSE's augmentation); 0 = none
    attention: str = "dense"  # models/transformer.py: ATTENTION
    layer_norm_dtype: jnp.dtype = jnp.float32
    scan_layers: bool = False  # models/layer_scan.py

    @nn.compact
    def __call__(
        self, tokens: jax.Array, deterministic: bool = True, context: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """`context` [B, P, width] (DenseCLIP's prompt) goes in as P embeddings right after the first token (the
        start of text), so that L + P <= max_len; pooling reads the same token, P positions later."""
        x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embedding")(
            tokens
        )
        shift = 0 if context is None else context.shape[1]
        if shift:
            x = jnp.concatenate([x[:, :1], context.astype(x.dtype), x[:, 1:]], axis=1)
        length = x.shape[1]
        posemb = self.param("pos_embedding", nn.initializers.normal(0.01), (1, self.max_len, self.width), jnp.float32)
        x = (x + posemb[:, :length]).astype(self.dtype)
        x = nn.Dropout(self.dropout_rate, deterministic=deterministic)(x)
        x = Encoder(
            self.depth, self.heads, self.mlp_dim, self.activation, self.layer_norm_eps, self.remat, self.dtype,
            self.dropout_rate, causal=self.causal, attention=self.attention, layer_norm_dtype=self.layer_norm_dtype,
            scan_layers=self.scan_layers, name="encoder",
        )(x, deterministic)  # fmt: skip
        # The causal mask makes the end-of-text position a summary of the whole caption.
        if self.pool == "argmax":
            eot = jnp.argmax(tokens, axis=1)
        elif self.pool == "eos":
            eot = jnp.argmax(tokens == self.eos_token_id, axis=1)  # the first match, or 0
        elif self.pool == "final":
            eot = jnp.full(tokens.shape[:1], length - 1)
        else:
            eot = jnp.maximum(jnp.sum(tokens != 0, axis=1) - 1, 0)
        eot = eot if self.pool == "final" else eot + shift
        pooled = jnp.take_along_axis(x, eot[:, None, None], axis=1)[:, 0]
        return pooled, x
