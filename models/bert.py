"""BERT-family text tower (BERT, MiniLM, sentence-transformers encoders): post-norm, bidirectional, pooled."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layer_scan import apply_blocks
from models.transformer import MlpBlock


class BertLayer(nn.Module):
    """Post-norm block: x = ln(x + attn(x)); x = ln(x + mlp(x)). `mask` is [B, 1, L, L] boolean.

    With `dropout_rate` > 0 and `deterministic` False: BERT's dropout on attention weights and both branches."""

    heads: int
    mlp_dim: int
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, dtype=self.dtype, dropout_rate=self.dropout_rate, deterministic=self.deterministic,
            name="attn",
        )(x, x, mask=mask)  # fmt: skip
        x = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln1")(x + dropout(y))
        y = MlpBlock(self.mlp_dim, self.activation, dtype=self.dtype, name="mlp")(x)
        return nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln2")(x + dropout(y))


class BertEncoder(nn.Module):
    """Token ids [B, L] (0 = padding, e.g. [CLS] w1 .. wn [SEP] 0 0) -> (pooled [B, width], tokens [B, L, width]).

    `pool` = "mean" averages the non-padding positions (sentence-transformers' mean pooling);
    "first" takes the [CLS] position. BERT's segment embedding of segment 0 is a constant added to
    every position, so converted checkpoints fold it into `pos_embedding` (interop/bert_weights.py).
    """

    vocab_size: int
    width: int
    depth: int
    heads: int
    max_len: int
    mlp_dim: int = 0  # 0 = 4 x width
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    pool: str = "mean"
    remat: bool = False
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0  # BERT's training-mode dropout (SimCSE); 0 = none
    scan_layers: bool = False  # models/layer_scan.py

    @nn.compact
    def __call__(self, tokens: jax.Array, deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
        length = tokens.shape[1]
        x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embedding")(
            tokens
        )
        posemb = self.param("pos_embedding", nn.initializers.normal(0.02), (1, self.max_len, self.width), jnp.float32)
        x = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln_embed")(x + posemb[:, :length]).astype(self.dtype)
        x = nn.Dropout(self.dropout_rate, deterministic=deterministic)(x)
        valid = tokens != 0
        mask = nn.make_attention_mask(valid, valid, dtype=bool)
        options = dict(
            heads=self.heads, mlp_dim=self.mlp_dim or 4 * self.width, activation=self.activation,
            layer_norm_eps=self.layer_norm_eps, dtype=self.dtype, dropout_rate=self.dropout_rate,
            deterministic=deterministic,
        )  # fmt: skip
        dropout = bool(self.dropout_rate) and not deterministic
        x = apply_blocks(
            self, BertLayer, options, self.depth, x, mask, scan=self.scan_layers, remat=self.remat, dropout=dropout
        )
        if self.pool == "first":
            return x[:, 0], x
        weights = valid.astype(x.dtype)[..., None]
        pooled = jnp.sum(x * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        return pooled, x
