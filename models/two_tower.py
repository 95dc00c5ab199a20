"""The two-tower contrastive model: image and text towers, projection heads, temperature (and bias)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models.text_transformer import TextTransformer
from models.vit import VisionTransformer


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True) + eps)


class TwoTower(nn.Module):
    """CLIP-style model. Call with images and/or tokens; returns a dict of what was asked for.

    Outputs (B = batch, D = embed_dim): `image_embedding` / `text_embedding` [B, D]
    L2-normalised, `image_features` / `text_features` [B, D] before normalisation,
    `image_tokens` [B, N, width], `logit_scale` (log temperature, scalar) and
    `logit_bias` (scalar; SigLIP).
    """

    image: ml_collections.ConfigDict
    text: ml_collections.ConfigDict
    embed_dim: int
    vocab_size: int
    logit_scale_init: float
    logit_bias_init: float = 0.0
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    def setup(self):
        self.image_tower = VisionTransformer(**self.image, remat=self.remat, dtype=self.dtype)
        self.text_tower = TextTransformer(vocab_size=self.vocab_size, **self.text, remat=self.remat, dtype=self.dtype)
        self.image_projection = nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype)
        self.text_projection = nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.logit_scale_init), (), jnp.float32)
        self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.logit_bias_init), (), jnp.float32)

    def encode_image(self, images: jax.Array) -> dict[str, jax.Array]:
        pooled, tokens = self.image_tower(images)
        features = self.image_projection(pooled).astype(jnp.float32)
        return {"image_features": features, "image_embedding": l2_normalize(features), "image_tokens": tokens}

    def encode_text(self, tokens: jax.Array) -> dict[str, jax.Array]:
        pooled, _ = self.text_tower(tokens)
        features = self.text_projection(pooled).astype(jnp.float32)
        return {"text_features": features, "text_embedding": l2_normalize(features)}

    def __call__(self, images: jax.Array | None = None, tokens: jax.Array | None = None) -> dict[str, jax.Array]:
        out = {"logit_scale": self.logit_scale, "logit_bias": self.logit_bias}
        if images is not None:
            out.update(self.encode_image(images))
        if tokens is not None:
            out.update(self.encode_text(tokens))
        return out


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> TwoTower:
    m = config.model
    return TwoTower(
        image=m.image,
        text=m.text,
        embed_dim=m.embed_dim,
        vocab_size=vocab_size,
        logit_scale_init=m.logit_scale_init,
        logit_bias_init=m.logit_bias_init,
        dtype=jnp.dtype(m.dtype),
        remat=m.remat,
    )
