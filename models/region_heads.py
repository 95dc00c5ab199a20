"""CLOC's region heads over the image tower's patch tokens: the promptable region embedding (a box prompt
attends to the patches) and the grounding head (a caption attends to the patches and regresses a box), and the
RoI baseline they are measured against (the patches under the box, averaged by overlap).

Boxes are (x0, y0, x1, y1) in [0, 1] of the image; patch tokens [B, N, W] come from a square grid of
sqrt(N) x sqrt(N) patches, row by row (models/vit.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.transformer import MlpBlock

FOURIER_FREQUENCIES = 6  # sin and cos of 2^k pi c, k < 6, per box coordinate c


def patch_boxes(num_patches: int) -> jax.Array:
    """[N, 4] the box of each patch of a square grid, row by row."""
    side = int(round(num_patches**0.5))
    if side * side != num_patches:
        raise ValueError(f"Region heads need a square patch grid, got {num_patches} patch tokens.")
    row, col = jnp.divmod(jnp.arange(num_patches), side)
    return jnp.stack([col, row, col + 1, row + 1], axis=-1).astype(jnp.float32) / side


def box_features(boxes: jax.Array) -> jax.Array:
    """[..., 4] -> [..., 8 FOURIER_FREQUENCIES]: sin and cos of each coordinate at octave frequencies."""
    angles = boxes[..., None] * (jnp.pi * 2.0 ** jnp.arange(FOURIER_FREQUENCIES))
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*boxes.shape[:-1], -1)


def overlap_weights(boxes: jax.Array, num_patches: int) -> jax.Array:
    """[B, R, 4] -> [B, R, N]: each patch's share of the box's area it covers (rows sum to 1 for boxes of
    positive area)."""
    cells = patch_boxes(num_patches)
    low = jnp.maximum(boxes[..., None, :2], cells[:, :2])
    high = jnp.minimum(boxes[..., None, 2:], cells[:, 2:])
    area = jnp.prod(jnp.clip(high - low, 0.0), axis=-1)
    return area / jnp.maximum(jnp.sum(area, axis=-1, keepdims=True), 1e-12)


def roi_mean(tokens: jax.Array, boxes: jax.Array) -> jax.Array:
    """tokens [B, N, W], boxes [B, R, 4] -> [B, R, W]: the patch tokens under each box, overlap-weighted."""
    return jnp.einsum("brn,bnw->brw", overlap_weights(boxes, tokens.shape[1]), tokens)


class CrossAttentionBlock(nn.Module):
    """queries [B, R, W] attend to tokens [B, N, W]: pre-LayerNorm cross-attention, then an MLP, each residual."""

    heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, queries: jax.Array, tokens: jax.Array) -> jax.Array:
        attention = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, name="attention")
        x = queries + attention(nn.LayerNorm(name="norm_q")(queries), nn.LayerNorm(name="norm_kv")(tokens))
        return x + MlpBlock(self.mlp_dim, dtype=self.dtype, name="mlp")(nn.LayerNorm(name="norm_mlp")(x))


class _PatchAttention(nn.Module):
    """Queries [B, R, W] through `depth` cross-attention blocks over the patch tokens, each token told its
    patch's box (the same Fourier features a box prompt has), then a LayerNorm."""

    depth: int
    heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, queries: jax.Array, tokens: jax.Array) -> jax.Array:
        width = tokens.shape[-1]
        where = nn.Dense(width, dtype=self.dtype, name="patch_position")(box_features(patch_boxes(tokens.shape[1])))
        keys = tokens + where.astype(tokens.dtype)
        for i in range(self.depth):
            queries = CrossAttentionBlock(self.heads, 4 * width, self.dtype, name=f"block{i}")(queries, keys)
        return nn.LayerNorm(name="norm_out")(queries)


class Prompter(nn.Module):
    """(patch tokens [B, N, W], boxes [B, R, 4]) -> region features [B, R, W]: a box prompt attends to the patches."""

    depth: int
    heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, boxes: jax.Array) -> jax.Array:
        prompt = nn.Dense(tokens.shape[-1], dtype=self.dtype, name="box_prompt")(box_features(boxes))
        return _PatchAttention(self.depth, self.heads, self.dtype, name="patches")(prompt, tokens)


class GroundingHead(nn.Module):
    """(patch tokens [B, N, W], caption features [B, R, D]) -> boxes [B, R, 4]: the caption attends to the
    patches and regresses (centre, size), returned as (x0, y0, x1, y1) in [0, 1]."""

    depth: int
    heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, captions: jax.Array) -> jax.Array:
        query = nn.Dense(tokens.shape[-1], dtype=self.dtype, name="caption_query")(captions)
        x = _PatchAttention(self.depth, self.heads, self.dtype, name="patches")(query, tokens)
        centre_size = jax.nn.sigmoid(nn.Dense(4, dtype=jnp.float32, name="box")(x.astype(jnp.float32)))
        centre, size = centre_size[..., :2], centre_size[..., 2:]
        return jnp.clip(jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1), 0.0, 1.0)
