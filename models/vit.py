"""Vision Transformer image tower with an optional convolutional stem."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.transformer import Encoder, MlpBlock

# Image poolings (config.model.image.pool): the class token (CLIP), the mean of the tokens, or a
# multihead attention-pooling head (SigLIP, big_vision's "MAP"); only `cls` adds a class token.
IMAGE_POOLING = ("cls", "gap", "map")


class MapHead(nn.Module):
    """Multihead attention pooling: a learned probe attends to the tokens [B, N, W], then a residual
    LayerNorm-MLP on the result -> [B, W] (big_vision's MAPHead, transformers' SiglipMultiheadAttentionPoolingHead)."""

    heads: int
    mlp_dim: int
    activation: str
    layer_norm_eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, _, width = x.shape
        probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, width), jnp.float32)
        probe = jnp.broadcast_to(probe.astype(x.dtype), (batch, 1, width))
        x = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, name="attn")(probe, x)
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln")(x)
        x = x + MlpBlock(self.mlp_dim, self.activation, dtype=self.dtype, name="mlp")(y)
        return x[:, 0]


class VisionTransformer(nn.Module):
    """Images [B, H, W, 3] -> (pooled [B, width], patch tokens [B, (H/p)*(W/p), width]).

    With `conv_stem_depth` = k > 0 the first k factors of 2 of the patch size are
    3x3 stride-2 convolutions ("Early convolutions help transformers see better",
    Xiao et al. 2021): on tiny images they learn shapes far faster than a linear
    patchifier, at no cost to the rest of the tower. Pixels beyond the last whole patch
    are dropped (as by CLIP's and SigLIP's patch convolutions). `ln_pre` = False drops the
    LayerNorm before the encoder (SigLIP has none). Called with `frames` = T > 0 on the frames of B / T clips
    [B, H, W, 3], in order, its blocks are X-CLIP's cross-frame blocks (models/transformer.py CrossFrameBlock);
    the default 0 is the image tower.
    """

    width: int
    depth: int
    heads: int
    patch_size: int
    conv_stem_depth: int = 0
    mlp_dim: int = 0  # 0 = 4 x width
    pool: str = "cls"  # IMAGE_POOLING
    ln_pre: bool = True
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    remat: bool = False
    dtype: jnp.dtype = jnp.float32
    attention: str = "dense"  # models/transformer.py: ATTENTION
    layer_norm_dtype: jnp.dtype = jnp.float32  # also the residual stream's dtype: ln_pre's output starts it
    scan_layers: bool = False  # models/layer_scan.py

    @nn.compact
    def __call__(self, images: jax.Array, frames: int = 0, stages: bool = False) -> tuple:
        """`stages` adds a third output: the conv stem's feature maps [B, H / 2^(i+1), W / 2^(i+1), C_i], finest
        first (() without a stem), for dense heads (DenseCLIP's FPN)."""
        x = images.astype(self.dtype)
        patch = self.patch_size
        stem = []
        for i in range(self.conv_stem_depth):
            channels = self.width // 2 ** (self.conv_stem_depth - 1 - i)  # the last conv is `width` wide
            x = nn.Conv(channels, (3, 3), strides=2, padding=1, dtype=self.dtype, name=f"stem_conv{i}")(x)
            x = nn.gelu(nn.LayerNorm(name=f"stem_ln{i}")(x))
            stem.append(x)
            patch //= 2
        x = nn.Conv(self.width, (patch, patch), strides=patch, padding="VALID", dtype=self.dtype, name="patchify")(x)
        batch, h, w, _ = x.shape
        x = x.reshape(batch, h * w, self.width)
        posemb = self.param("pos_embedding", nn.initializers.normal(0.02), (1, h * w, self.width), jnp.float32)
        x = x + posemb.astype(self.dtype)
        if self.pool == "cls":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width), jnp.float32)
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.width)), x], axis=1)
        if self.ln_pre:
            x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln_pre")(x)
        else:
            x = x.astype(self.layer_norm_dtype)
        x = Encoder(
            self.depth, self.heads, self.mlp_dim, self.activation, self.layer_norm_eps, self.remat, self.dtype,
            attention=self.attention, layer_norm_dtype=self.layer_norm_dtype, scan_layers=self.scan_layers,
            name="encoder",
        )(x, frames=frames, summary="first" if self.pool == "cls" else "mean")  # fmt: skip
        if self.pool == "cls":
            pooled, x = x[:, 0], x[:, 1:]
        elif self.pool == "map":
            head = MapHead(self.heads, self.mlp_dim or 4 * self.width, self.activation, self.layer_norm_eps, self.dtype,
                           name="map_head")  # fmt: skip
            pooled = head(x)
        else:
            pooled = x.mean(axis=1)
        return (pooled, x, tuple(stem)) if stages else (pooled, x)
