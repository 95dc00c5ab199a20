"""The pre-norm transformer encoder shared by the image and text towers."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import flash_attention
from models.layer_scan import apply_blocks


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI CLIP's sigmoid approximation of GELU."""
    return x * nn.sigmoid(1.702 * x)


# MLP activations by config name: `gelu_tanh` is this repo's default, `gelu` (exact, erf) is BERT's and
# open_clip's, `quick_gelu` OpenAI CLIP's; pretrained weights need the one they were trained with.
ACTIVATIONS = {
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),
    "gelu": functools.partial(nn.gelu, approximate=False),
    "quick_gelu": quick_gelu,
}


class MlpBlock(nn.Module):
    mlp_dim: int
    activation: str = "gelu_tanh"
    dtype: jnp.dtype = jnp.float32
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, use_bias=self.use_bias, dtype=self.dtype, name="fc1")(x)
        x = ACTIVATIONS[self.activation](x)
        return nn.Dense(width, use_bias=self.use_bias, dtype=self.dtype, name="fc2")(x)


# Attention kernels by config name (config.model.attention). `dense` is Flax's einsum-softmax-einsum
# with a materialised [B, heads, N, N] mask; `xla` and `cudnn` go through jax.nn.dot_product_attention,
# which takes causality as a flag: `xla` is its portable XLA path (the same math, any backend), `cudnn`
# cuDNN's fused flash attention (NVIDIA GPUs, bf16/fp16, no attention dropout). `pallas` is JAX's Pallas
# flash attention (Triton on NVIDIA GPUs, any float dtype, interpreted on the CPU; models/flash_attention.py).
ATTENTION = ("dense", "xla", "cudnn", "pallas")

# cuDNN's training kernels refused ViT-B/16's 197 tokens on one H200 with JAX 0.11.2 ("Unsupported sequence
# length Q 197, KV 197", 2026-12-04) although no mask or bias was passed; JAX raises that for odd lengths. So
# `cudnn` pads the sequence to a multiple of this and masks the padded keys by length (cuDNN's padding mask,
# not a bias). 64, not 2: the kernels work in 64-row tiles anyway, and the extra attention FLOPs (197 -> 256)
# are ~3% of a ViT-B/16 step.
CUDNN_LENGTH_MULTIPLE = 64


def fused_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    implementation: str,
    causal: bool,
    length_multiple: int | None = None,
    key_lengths: jax.Array | None = None,
) -> jax.Array:
    """q [B, N, heads, head_dim], k, v [B, N, kv_heads, head_dim] (kv_heads divides heads: grouped-query) ->
    [B, N, heads, head_dim] via jax.nn.dot_product_attention (`pallas`: models/flash_attention.py, kv_heads = heads).

    `length_multiple` (default CUDNN_LENGTH_MULTIPLE for `cudnn`, flash_attention.BLOCK for `pallas`, 1 otherwise):
    N is zero-padded up to a multiple of it and the padded keys are masked by length, so the output is the unpadded
    attention's. `key_lengths` [B] (not `pallas`): row b attends to its first key_lengths[b] keys only (a batch
    padded on the right)."""
    if length_multiple is None:
        length_multiple = {"cudnn": CUDNN_LENGTH_MULTIPLE, "pallas": flash_attention.BLOCK}.get(implementation, 1)
    batch, length = query.shape[:2]
    padded = -(-length // length_multiple) * length_multiple
    if padded > length:
        widths = [(0, 0), (0, padded - length), (0, 0), (0, 0)]
        query, key, value = (jnp.pad(x, widths) for x in (query, key, value))
    if implementation == "pallas":
        if key_lengths is not None:
            raise ValueError("The pallas kernel takes no per-row key lengths; use implementation 'xla' or 'cudnn'.")
        out = flash_attention.pallas_flash_attention(query, key, value, length=length, causal=causal)
    else:
        # Padded queries attend to the real keys and are sliced off: only the keys need the length.
        if key_lengths is None and padded > length:
            key_lengths = jnp.full((batch,), length, jnp.int32)
        masking = {} if key_lengths is None else {"key_value_seq_lengths": key_lengths.astype(jnp.int32)}
        out = jax.nn.dot_product_attention(
            query, key, value, is_causal=causal, implementation=implementation, **masking
        )
    return out[:, :length]


class _ProjectionParams(nn.Module):
    """The kernel [W, heads, head_dim] and bias [heads, head_dim] of one of flax's q/k/v DenseGeneral layers,
    created as flax creates them (same names, initialisers, order, so the same values from the same rng)."""

    heads: int
    head_dim: int

    @nn.compact
    def __call__(self, width: int) -> tuple[jax.Array, jax.Array]:
        def kernel_init(rng, shape, dtype=jnp.float32):  # lecun_normal over the flat [W, heads * head_dim]
            return nn.initializers.lecun_normal()(rng, (shape[0], self.heads * self.head_dim), dtype).reshape(shape)

        kernel = self.param("kernel", kernel_init, (width, self.heads, self.head_dim), jnp.float32)
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.heads, self.head_dim), jnp.float32)


class FusedQKVAttention(nn.Module):
    """Self-attention over x [B, N, W] -> [B, N, W] whose query, key and value come from one matmul.

    The parameters are flax MultiHeadDotProductAttention's (query/key/value/out, same shapes, same initial
    values), so checkpoints and converted weights load unchanged; the three kernels are stacked on a new axis
    [W, 3, heads, head_dim] and x is multiplied once, as open_clip's in_proj does: one GEMM reads x once
    forward, and backward x's gradient is one GEMM over 3W, not three summed (XLA:GPU's dot merger would not
    merge them at ViT-B/16's batch 256). Stacked, not concatenated along heads, so heads split over the `model`
    axis stay split (training/sharding.py). `implementation` is a fused_attention kernel (not `dense`)."""

    heads: int
    implementation: str
    causal: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        if width % self.heads:
            raise ValueError(f"Width {width} is not divisible by {self.heads} heads; choose heads that divide it.")
        projections = [
            _ProjectionParams(self.heads, width // self.heads, name=n)(width) for n in ("query", "key", "value")
        ]
        kernel = jnp.stack([k for k, _ in projections], axis=1)  # [W, 3, heads, head_dim]
        bias = jnp.stack([b for _, b in projections], axis=0)  # [3, heads, head_dim]
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        qkv = jnp.einsum("bnw,wthd->bnthd", x, kernel) + bias  # [B, N, 3, heads, head_dim]
        query, key, value = (qkv[:, :, i] for i in range(3))
        out = fused_attention(query, key, value, implementation=self.implementation, causal=self.causal)
        return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, name="out")(out)


class EncoderBlock(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); `causal` lets token i attend only to tokens <= i.

    With `dropout_rate` > 0 and `deterministic` False (training; rng stream "dropout"), dropout on the
    attention weights and on both residual branches, as in BERT; the default 0 changes nothing.
    `layer_norm_dtype` is the LayerNorms' output dtype (statistics are float32 either way)."""

    heads: int
    mlp_dim: int
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0
    deterministic: bool = True
    causal: bool = False
    attention: str = "dense"
    layer_norm_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
        return self._mlp(x + dropout(self._attention(x)), dropout)

    def _attention(self, x: jax.Array) -> jax.Array:
        """attn(ln(x)) [B, N, W], the residual branch of the block's self-attention."""
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln1")(x)
        if self.attention != "dense":
            if self.dropout_rate:
                raise ValueError(f"model.attention={self.attention!r} has no attention dropout; use 'dense'.")
            return FusedQKVAttention(self.heads, self.attention, self.causal, self.dtype, name="attn")(y)
        # `dense` stays flax's own module, the reference the kernels are tested against: its separate q/k/v
        # matmuls sum the biases' gradients in the order the documented CPU runs were trained with.
        return nn.MultiHeadDotProductAttention(
            num_heads=self.heads,
            dtype=self.dtype,
            dropout_rate=self.dropout_rate,
            deterministic=self.deterministic,
            name="attn",
        )(y, y, mask=nn.make_causal_mask(x[..., 0], dtype=bool) if self.causal else None)

    def _mlp(self, x: jax.Array, dropout: nn.Dropout) -> jax.Array:
        """x + mlp(ln(x))."""
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln2")(x)
        return x + dropout(MlpBlock(self.mlp_dim, self.activation, dtype=self.dtype, name="mlp")(y))


class CrossFrameBlock(EncoderBlock):
    """X-CLIP's cross-frame communication block (Ni et al. 2022; official models/cct.py
    CrossFramelAttentionBlock) over x [B T, N, W], the frames of B clips of T = `frames` frames in order.

    Each frame's summary token (`summary`: "first", the class token, or "mean" of the tokens for a tower
    without one) becomes a message m_t = Linear(summary_t); the T messages of a clip exchange information,
    m = m + MSA(LN(m)); frame t's tokens then attend over [tokens_t ; m_t] in the block's own attention,
    m_t is dropped and the MLP follows. An EncoderBlock's parameters (ln1, attn, ln2, mlp) plus
    message_fc, message_ln and message_attn: a CLIP tower's weights load into it unchanged.
    """

    frames: int = 1
    summary: str = "first"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        frames_total, length, width = x.shape
        dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
        summary = x[:, 0] if self.summary == "first" else x.mean(axis=1)
        message = nn.Dense(width, dtype=self.dtype, name="message_fc")(summary).reshape(-1, self.frames, width)
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="message_ln")(message)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, name="message_attn")(y, y)
        message = (message + dropout(y)).reshape(frames_total, 1, width).astype(x.dtype)
        y = self._attention(jnp.concatenate([x, message], axis=1))[:, :length]
        return self._mlp(x + dropout(y), dropout)


class Encoder(nn.Module):
    """`depth` EncoderBlocks and a final LayerNorm: [B, N, width] -> [B, N, width] (EncoderBlock: the options)."""

    depth: int
    heads: int
    mlp_dim: int = 0  # the MLP's hidden width; 0 = 4 x width
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-6
    remat: bool = False
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0
    causal: bool = False
    attention: str = "dense"
    layer_norm_dtype: jnp.dtype = jnp.float32
    scan_layers: bool = False  # models/layer_scan.py

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True, frames: int = 0, summary: str = "first") -> jax.Array:
        """x [B, N, width]; with `frames` = T > 0, x holds the frames of B / T clips in order and the blocks
        are X-CLIP's cross-frame blocks (models/video.py), messages made from each frame's `summary` token."""
        kind, video = (CrossFrameBlock, dict(frames=frames, summary=summary)) if frames else (EncoderBlock, {})
        options = dict(
            heads=self.heads, mlp_dim=self.mlp_dim or 4 * x.shape[-1], activation=self.activation,
            layer_norm_eps=self.layer_norm_eps, dtype=self.dtype, dropout_rate=self.dropout_rate,
            deterministic=deterministic, causal=self.causal, attention=self.attention,
            layer_norm_dtype=self.layer_norm_dtype, **video,
        )  # fmt: skip
        dropout = bool(self.dropout_rate) and not deterministic
        x = apply_blocks(self, kind, options, self.depth, x, scan=self.scan_layers, remat=self.remat, dropout=dropout)
        return nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.layer_norm_dtype, name="ln_final")(x)
