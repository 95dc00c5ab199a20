"""SuperEdit's editing model at toy scale (METHODS.md §28): an InstructPix2Pix-style conditional denoiser that
predicts the noise ε in a noisy edited image z_t given the source image, the step t and the instruction.

The paper's is Stable Diffusion 1.5's UNet on VAE latents, the source latent concatenated to z_t and the
instruction read by cross-attention. Here a two-level convolutional UNet works on pixels: z_t, the source, two
coordinate channels (so that "left" and "top right" have somewhere to land) and the noise z_t would hold if the
edit changed nothing, concatenated; every residual block is modulated (FiLM) by the sum of a step embedding and
the instruction's pooled text-tower features, and the half-resolution features read the instruction's token
states by cross-attention. The output is added to that no-edit noise: the paper's UNet starts from a model that
already denoises, this one starts as the editor that changes nothing (its head is zero) and learns the edit. A
dropped instruction (classifier-free guidance's conditioning dropout) reads a learned null vector instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.diffusion import alpha_bars
from models.text_towers import text_tower

# The no-edit noise is clipped: inside an edit it grows as sqrt(ᾱ_t / (1 - ᾱ_t)) times the change (x155 at t = 0),
# where no true noise value lies; outside one it is the true noise, within ±5 but for 6e-7 of the values.
COPY_CLIP = 5.0


def step_embedding(t: jax.Array, dim: int) -> jax.Array:
    """float32 [B, dim]: sinusoidal features of the integer steps t [B] (the Transformer's position code)."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(10_000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class FilmBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, then scale and shift from the condition, SiLU, 3x3 conv; residual."""

    width: int

    @nn.compact
    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        h = nn.Conv(self.width, (3, 3))(nn.silu(nn.GroupNorm(num_groups=8)(x)))
        scale, shift = jnp.split(nn.Dense(2 * self.width)(nn.silu(condition)), 2, axis=-1)
        h = nn.GroupNorm(num_groups=8)(h) * (1 + scale[:, None, None]) + shift[:, None, None]
        h = nn.Conv(self.width, (3, 3))(nn.silu(h))
        skip = x if x.shape[-1] == self.width else nn.Conv(self.width, (1, 1))(x)
        return skip + h


class CrossAttention(nn.Module):
    """Image features [B, H, W, C] attend to the instruction's token states [B, L, D] where `visible` [B, L];
    residual."""

    heads: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, tokens: jax.Array, visible: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        queries = nn.LayerNorm()(x.reshape(b, h * w, c))
        keys = nn.Dense(c)(nn.LayerNorm()(tokens))
        mask = jnp.broadcast_to(visible[:, None, None, :], (b, 1, h * w, tokens.shape[1]))
        attended = nn.MultiHeadDotProductAttention(self.heads, out_kernel_init=nn.initializers.zeros)(
            queries, keys, mask=mask
        )
        return x + attended.reshape(b, h, w, c)


class EditDenoiser(nn.Module):
    """ε̂ = f(z_t, source, t, instruction): images [B, S, S, 3] (S even), t int [B], tokens int [B, L]."""

    text: Mapping  # config.model.text: the instruction's tower
    vocab_size: int
    width: int = 32

    def setup(self):
        self.text_tower = text_tower(self.text, self.vocab_size, remat=False, dtype=jnp.float32)
        self.null_instruction = self.param("null_instruction", nn.initializers.normal(0.02), (self.text["width"],))
        self.instruction = nn.Dense(4 * self.width)
        self.step_mlp = nn.Sequential([nn.Dense(4 * self.width), nn.silu, nn.Dense(4 * self.width)])
        self.stem = nn.Conv(self.width, (3, 3))
        self.down = [FilmBlock(self.width), FilmBlock(2 * self.width), FilmBlock(2 * self.width)]
        self.downsample = nn.Conv(2 * self.width, (3, 3), strides=(2, 2))
        self.read = CrossAttention()
        self.up = [FilmBlock(2 * self.width), FilmBlock(self.width)]
        self.head_norm = nn.GroupNorm(num_groups=8)
        self.head = nn.Conv(3, (3, 3), kernel_init=nn.initializers.zeros)

    def condition(self, t: jax.Array, tokens: jax.Array, dropped: jax.Array | None = None):
        """([B, 4 width]: the step's embedding plus the instruction's, [B, 1 + L, D] the null vector and the
        instruction's token states, [B, 1 + L] which of them the image may read): where `dropped` [B], the null
        vector in place of the pooled instruction, and the null vector alone to read."""
        pooled, states = self.text_tower(tokens)
        visible = tokens != 0
        if dropped is not None:
            pooled = jnp.where(dropped[:, None], self.null_instruction.astype(pooled.dtype), pooled)
            visible &= ~dropped[:, None]
        null = jnp.broadcast_to(self.null_instruction.astype(states.dtype), (states.shape[0], 1, states.shape[-1]))
        states = jnp.concatenate([null, states], axis=1).astype(jnp.float32)
        visible = jnp.concatenate([jnp.ones_like(visible[:, :1]), visible], axis=1)
        c = self.step_mlp(step_embedding(t, self.width)) + self.instruction(pooled.astype(jnp.float32))
        return c, states, visible

    def __call__(self, noisy: jax.Array, source: jax.Array, t: jax.Array, tokens: jax.Array,
                 dropped: jax.Array | None = None) -> jax.Array:  # fmt: skip
        c, states, visible = self.condition(t, tokens, dropped)
        b, s = noisy.shape[0], noisy.shape[1]
        grid = jnp.linspace(-1.0, 1.0, s)
        coords = jnp.broadcast_to(jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1), (b, s, s, 2))
        a = alpha_bars()[t][:, None, None, None]
        unedited = jnp.clip((noisy - jnp.sqrt(a) * source) / jnp.sqrt(1 - a), -COPY_CLIP, COPY_CLIP)
        x = self.stem(jnp.concatenate([noisy, source, unedited, coords.astype(noisy.dtype)], axis=-1))
        full = self.down[0](x, c)
        h = self.downsample(full)
        h = self.down[2](self.down[1](h, c), c)
        h = self.read(h, states, visible)  # each place reads the instruction's words, as IP2P's UNet does
        h = jax.image.resize(self.up[0](h, c), (b, s, s, h.shape[-1]), "nearest")
        h = self.up[1](jnp.concatenate([h, full], axis=-1), c)
        out = self.head(nn.silu(self.head_norm(h)))
        return unedited + out
