"""X-CLIP's video modules over the image tower (Ni et al. 2022, "Expanding Language-Image Pretrained Models for
General Video Recognition"; official microsoft/VideoX X-CLIP, models/mit.py and models/prompt.py). The third,
cross-frame communication, is inside the tower: models/transformer.py CrossFrameBlock.

- MultiFrameIntegration: frame embeddings [B, T, D] + a temporal position embedding through MIT_DEPTH pre-LN
  transformer blocks, plus the input (a residual around the whole), averaged over T -> the video [B, D];
- VideoSpecificPrompt: text features [B, C, D] attend to the clip's visual tokens [B, N, D] (PROMPT_DEPTH
  cross-attention blocks) and come out scaled by a learnt per-channel alpha (initially PROMPT_ALPHA); the
  model adds that to the text features.
Both run in the joint embedding space, with max(1, D // 64) heads as the official code's D // 64.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.region_heads import CrossAttentionBlock
from models.transformer import EncoderBlock

MIT_DEPTH = 1
PROMPT_DEPTH = 2
PROMPT_ALPHA = 0.1


def heads_of(width: int) -> int:
    return max(1, width // 64)


class MultiFrameIntegration(nn.Module):
    """[B, T, D] frame embeddings -> [B, D]: the official MultiframeIntegrationTransformer (no final LayerNorm)."""

    frames: int
    activation: str = "gelu_tanh"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, frames: jax.Array) -> jax.Array:
        batch, count, width = frames.shape
        if count != self.frames:
            raise ValueError(
                f"X-CLIP was built for clips of {self.frames} frames (config.model.video_frames), got {count}."
            )
        position = self.param("temporal_embedding", nn.initializers.normal(0.02), (1, count, width), jnp.float32)
        x = frames + position
        for i in range(MIT_DEPTH):
            x = EncoderBlock(heads_of(width), 4 * width, self.activation, dtype=self.dtype, name=f"block{i}")(x)
        return (x.astype(jnp.float32) + frames).mean(axis=1)


class VideoSpecificPrompt(nn.Module):
    """(text features [B, C, D], visual tokens [B, N, D]) -> the prompt [B, C, D] added to the text features.

    The official layer norms the visual tokens once and the text query per layer; CLOC's CrossAttentionBlock,
    reused here, norms both per layer, and its MLP's GELU is the tanh form where the official is QuickGELU."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, text: jax.Array, visual: jax.Array) -> jax.Array:
        width = text.shape[-1]
        visual = nn.LayerNorm(name="norm_visual")(visual)
        for i in range(PROMPT_DEPTH):
            text = CrossAttentionBlock(heads_of(width), 4 * width, self.dtype, name=f"block{i}")(text, visual)
        alpha = self.param("alpha", nn.initializers.constant(PROMPT_ALPHA), (width,), jnp.float32)
        return alpha * text.astype(jnp.float32)
