"""DenseCLIP's modules (Rao et al. 2022, "Language-Guided Dense Prediction with Context-Aware Prompting";
METHODS.md 16): the context decoder that lets text attend to the image's dense tokens, the pixel-text score map,
and a light FPN segmentation head over the image tower's dense tokens and conv-stem stages.

Grids are channels-last: dense features [B, h, w, C] with h w the image tower's patch tokens, row by row.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.region_heads import CrossAttentionBlock

PROMPTINGS = ("none", "post", "pre")  # no context decoder; it updates the text embeddings; it makes the prompt
GAMMA_INIT = 1e-4  # the post-model update's learnable per-channel scale starts here (the official code)


class DenseSettings(NamedTuple):
    """DenseCLIP's architecture (config.denseclip): `classes` K, `context_tokens` P learnable prompt vectors shared
    by all classes, the context decoder's `prompting` (PROMPTINGS), depth, width and heads, the segmentation
    head's width, and whether the score map is concatenated to the dense features the head reads."""

    classes: int
    context_tokens: int = 8
    prompting: str = "post"
    decoder_depth: int = 1
    decoder_width: int = 64
    decoder_heads: int = 4
    head_width: int = 64
    score_concat: bool = True


def interpolation_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] linear interpolation weights, half-pixel centres, edges clamped."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(int)
    weights = np.zeros((size_out, size_in), np.float32)
    np.add.at(weights, (np.arange(size_out), low), 1 - (source - low))
    np.add.at(weights, (np.arange(size_out), np.minimum(low + 1, size_in - 1)), source - low)
    return weights


def upsample(x: jax.Array, height: int, width: int) -> jax.Array:
    """[B, h, w, C] -> [B, height, width, C], bilinear with half-pixel centres and clamped edges (mmseg's resize,
    align_corners=False; jax.image.resize's "bilinear" when upsampling), as two small matrix products: they
    compile in a fraction of jax.image.resize's time."""
    rows, cols = interpolation_weights(x.shape[1], height), interpolation_weights(x.shape[2], width)
    return jnp.einsum("Hh,Ww,bhwc->bHWc", rows.astype(x.dtype), cols.astype(x.dtype), x)


def score_map(dense: jax.Array, text: jax.Array) -> jax.Array:
    """s_{k,hw} = <normalize(z_hw), normalize(t_k)>: dense [B, h, w, D], text [B, K, D] -> [B, h, w, K]."""
    normalize = lambda x: x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-6)  # noqa: E731
    return jnp.einsum("bhwd,bkd->bhwk", normalize(dense), normalize(text))


class DecoderLayer(nn.Module):
    """queries [B, Q, W], memory [B, N, W] -> [B, Q, W]: self-attention among the queries, then cross-attention
    to the memory and an MLP (4x), each pre-LayerNorm and residual."""

    heads: int

    @nn.compact
    def __call__(self, queries: jax.Array, memory: jax.Array) -> jax.Array:
        y = nn.LayerNorm(name="norm_self")(queries)
        x = queries + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="self_attention")(y, y)
        return CrossAttentionBlock(self.heads, 4 * x.shape[-1], name="cross")(x, memory)


class ContextDecoder(nn.Module):
    """(queries [B, Q, Cq], visual context [B, N, Cv]) -> [B, Q, out_dim]: DenseCLIP's ContextDecoder. Both sides
    are LayerNorm + Dense to `width` (the memory LayerNormed again), `depth` DecoderLayers, then LayerNorm + Dense to
    `out_dim`. The official code's dropout (0.1) is left out: the toy runs are short and deterministic."""

    depth: int
    width: int
    heads: int
    out_dim: int

    @nn.compact
    def __call__(self, queries: jax.Array, context: jax.Array) -> jax.Array:
        memory = nn.LayerNorm(name="memory_norm_out")(
            nn.Dense(self.width, name="memory_proj")(nn.LayerNorm(name="memory_norm_in")(context))
        )
        x = nn.Dense(self.width, name="query_proj")(nn.LayerNorm(name="query_norm")(queries))
        for i in range(self.depth):
            x = DecoderLayer(self.heads, name=f"layer{i}")(x, memory)
        return nn.Dense(self.out_dim, name="out_proj")(nn.LayerNorm(name="out_norm")(x))


class SegmentationHead(nn.Module):
    """(top [B, h, w, C], stages: finer maps [B, h_i, w_i, C_i], finest first) -> logits [B, h_0, w_0, classes]
    at the finest map's resolution (the top's without stages): a light top-down FPN (Lin et al. 2017; DenseCLIP
    uses Semantic FPN): a 1x1 lateral to `width` per level, 2x bilinear upsampling and sum from the top down,
    a 3x3 conv with ReLU, a 1x1 classifier."""

    width: int
    classes: int

    @nn.compact
    def __call__(self, top: jax.Array, stages: tuple[jax.Array, ...]) -> jax.Array:
        x = nn.Dense(self.width, name="lateral_top")(top)
        for i in reversed(range(len(stages))):
            stage = stages[i]
            x = upsample(x, *stage.shape[1:3]) + nn.Dense(self.width, name=f"lateral{i}")(stage)
        x = nn.relu(nn.Conv(self.width, (3, 3), padding=1, name="smooth")(x))
        return nn.Dense(self.classes, name="classifier")(x)
