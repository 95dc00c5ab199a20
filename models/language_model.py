"""A decoder-only language model with a key-value cache: GPT-style by default (pre-norm LayerNorm, learned
positions, GELU MLP, biases, tied input/output embeddings), Llama-style by switches (RMSNorm, rotary positions,
SwiGLU, grouped-query attention, no biases, its own output matrix), the architecture of Llama 2 and 1.5-Pints.

One forward function serves training and generation. The sequence lives in *slots* 0..S-1; a call writes
its chunk of C tokens (or prefix embeddings) into slots [index, index + C) of the cache and attends, for the
token in slot t, to every valid slot <= t. Generation left-pads prompts of different lengths: padding slots
are invalid keys and take no position, so each row's first real token has position 0 wherever its slot is.
Without a cache the chunk is the whole sequence (training); a cached prefill of the prompt followed by one
token per step computes the same logits (tests/test_language_model.py checks it token for token).

The parameter names follow the encoder's (block{i}/ln1, attn/{query,key,value,out}, ln2, mlp/{fc1,fc2},
ln_final); SwiGLU adds mlp/gate (fc1 is its "up" projection, fc2 its "down") and an untied model adds lm_head,
so the sharding rules of training/sharding.py split heads and MLP units over the `model` axis. The Llama-style
model computes what Hugging Face's LlamaForCausalLM computes from the same weights (interop/llama_weights.py,
tests/test_llama_decoder.py).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models.transformer import MlpBlock, fused_attention

NORMS = ("layer_norm", "rms_norm")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "swiglu")


class Cache(NamedTuple):
    """Per layer `key` / `value` [B, S, kv_heads, head_dim] (rotated, with rotary positions); `valid` [B, S] bool
    (slots holding a real token); `index` int32 scalar (the next slot to write); `position` [B] int32 (the next
    position id per row)."""

    key: tuple[jax.Array, ...]
    value: tuple[jax.Array, ...]
    valid: jax.Array
    index: jax.Array
    position: jax.Array


def init_cache(model: DecoderLM, batch: int, slots: int) -> Cache:
    """An empty cache of `slots` slots (at most model.max_len) for `batch` rows."""
    shape = (batch, slots, model.kv_heads or model.heads, model.width // model.heads)
    zeros = tuple(jnp.zeros(shape, model.dtype) for _ in range(model.depth))
    return Cache(
        zeros, zeros, jnp.zeros((batch, slots), bool), jnp.zeros((), jnp.int32), jnp.zeros((batch,), jnp.int32)
    )


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """x [B, C, heads, Dh] rotated by its positions [B, C] (RoPE, Su et al. 2021), in the half-split layout of
    Hugging Face's Llama: dimension i turns with dimension i + Dh/2 at frequency theta^(-2i/Dh)."""
    half = x.shape[-1] // 2
    inverse_frequency = theta ** (-jnp.arange(half, dtype=jnp.float32) * 2 / x.shape[-1])
    angles = positions.astype(jnp.float32)[..., None] * inverse_frequency  # [B, C, Dh/2]
    cos, sin = (jnp.concatenate([f(angles)] * 2, axis=-1)[:, :, None, :].astype(x.dtype) for f in (jnp.cos, jnp.sin))
    turned = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + turned * sin


class SwiGluBlock(nn.Module):
    """x [..., W] -> fc2(silu(gate(x)) * fc1(x)) [..., W] (Shazeer 2020; Llama's gate/up/down projections)."""

    mlp_dim: int
    use_bias: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = lambda name, width: nn.Dense(width, use_bias=self.use_bias, dtype=self.dtype, name=name)  # noqa: E731
        return dense("fc2", x.shape[-1])(nn.silu(dense("gate", self.mlp_dim)(x)) * dense("fc1", self.mlp_dim)(x))


class DecoderBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)); attention over the cache's valid slots up to each query's own.
    The switches are DecoderLM's."""

    heads: int
    mlp_dim: int
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    kv_heads: int = 0
    norm: str = "layer_norm"
    mlp: str = "gelu"
    bias: bool = True
    rope_theta: float = 0.0  # 0: no rotary positions
    attention: str = "dense"  # the kernel of a whole right-padded sequence (training); a cache's chunk: dense

    @nn.compact
    def __call__(self, x, key_cache, value_cache, slots, key_valid, positions):
        """x [B, C, W] at `slots` [C] and `positions` [B, C] of the cache (key_cache / value_cache [B, S, KV, Dh];
        key_valid [B, S]) -> (x [B, C, W], key_cache, value_cache with the chunk written)."""
        norm = _norm_layer(self.norm, self.layer_norm_eps, self.bias)
        attn = _Attention(
            self.heads, x.shape[-1] // self.heads, self.kv_heads or self.heads, self.bias, self.rope_theta,
            self.dtype, self.attention, name="attn",
        )  # fmt: skip
        y, key_cache, value_cache = attn(norm(name="ln1")(x), key_cache, value_cache, slots, key_valid, positions)
        x = x + y
        if self.mlp == "swiglu":
            mlp = SwiGluBlock(self.mlp_dim, self.bias, self.dtype, name="mlp")
        else:
            mlp = MlpBlock(self.mlp_dim, dtype=self.dtype, use_bias=self.bias, name="mlp")
        return x + mlp(norm(name="ln2")(x)), key_cache, value_cache


def _norm_layer(kind: str, eps: float, bias: bool):
    """The pre-norm layer class of `kind` (NORMS), to be called with a name."""
    if kind == "rms_norm":
        return lambda name: nn.RMSNorm(epsilon=eps, name=name)
    return lambda name: nn.LayerNorm(epsilon=eps, use_bias=bias, name=name)


class _Attention(nn.Module):
    """Causal attention over a cache, `heads` query heads sharing `kv_heads` key-value heads (grouped-query:
    query head h reads key-value head h // (heads / kv_heads), as Llama's repeat_kv). Params query [W, H, Dh],
    key / value [W, KV, Dh], out [H, Dh, W] (Flax's DenseGeneral layouts)."""

    heads: int
    head_dim: int
    kv_heads: int
    bias: bool = True
    rope_theta: float = 0.0
    dtype: jnp.dtype = jnp.float32
    attention: str = "dense"

    @nn.compact
    def __call__(self, x, key_cache, value_cache, slots, key_valid, positions):
        def project(name, heads):
            return nn.DenseGeneral((heads, self.head_dim), use_bias=self.bias, dtype=self.dtype, name=name)(x)

        query, key, value = project("query", self.heads), project("key", self.kv_heads), project("value", self.kv_heads)
        if self.rope_theta:
            query, key = rotary(query, positions, self.rope_theta), rotary(key, positions, self.rope_theta)
        start = slots[0]
        key_cache = jax.lax.dynamic_update_slice_in_dim(key_cache, key.astype(key_cache.dtype), start, axis=1)
        value_cache = jax.lax.dynamic_update_slice_in_dim(value_cache, value.astype(value_cache.dtype), start, axis=1)
        if self.attention != "dense":  # the whole sequence, padded on the right: causal, keys cut at each row's end
            lengths = key_valid.sum(axis=-1)
            out = fused_attention(query, key, value, implementation=self.attention, causal=True, key_lengths=lengths)
        else:
            out = self._dense(query, key_cache, value_cache, slots, key_valid)
        y = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), use_bias=self.bias, dtype=self.dtype, name="out")(out)
        return y, key_cache, value_cache

    def _dense(self, query, key_cache, value_cache, slots, key_valid):
        """Softmax attention of query [B, C, H, Dh] at `slots` over the cache's valid slots -> [B, C, H, Dh]."""
        # Slot t sees slot s when s <= t and s holds a real token (its own slot always does once written).
        allowed = (jnp.arange(key_cache.shape[1])[None, :] <= slots[:, None])[None, None] & key_valid[:, None, None, :]
        # Each key-value head serves its group of query heads; the cache keeps one copy (what grouping saves).
        keys, values = (jnp.repeat(c, self.heads // self.kv_heads, axis=2) for c in (key_cache, value_cache))
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, keys) / jnp.sqrt(self.head_dim).astype(self.dtype)
        scores = jnp.where(allowed, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        return jnp.einsum("bhqk,bkhd->bqhd", weights, values)


class DecoderLM(nn.Module):
    """Token ids [B, C] (0 = padding) -> {"logits" [B, C, vocab] float32, "hidden" [B, C, width] float32 (after
    the final norm: SimCTG's and contrastive search's representations)}, and the updated Cache.

    `prefix` [B, P, width]: embeddings placed before the tokens (LiMBeR's and CLOSE's image or text prefix);
    their outputs are dropped, so logits[:, i] still predicts the token after tokens[:, i].
    `mask` [B, C] bool: which tokens are real (default: tokens != 0); padding never serves as a key and takes
    no position. `cache`: None computes the chunk alone (training); a Cache continues it (generation).

    `attention` (models/transformer.py ATTENTION but `pallas`): the kernel of a call with tokens alone, padded on
    the right (training's, and the evaluators' scoring of right-padded text); every other call is `dense`.

    Switches (the defaults are GPT-2's shape; Llama's: norm "rms_norm", position "rope", mlp "swiglu", kv_heads
    a divisor of heads, bias False, tie_embeddings False): `norm` (NORMS) with epsilon `layer_norm_eps`;
    `position` (POSITIONS) learned embeddings of max_len positions or rotary ones of base `rope_theta`; `mlp`
    (MLPS); `kv_heads` (0 = heads); `bias` on every projection and LayerNorm; `tie_embeddings`: the output
    matrix is the token embedding's transpose, else its own `lm_head`."""

    vocab_size: int
    width: int
    depth: int
    heads: int
    max_len: int
    mlp_dim: int = 0  # 0 = 4 x width for gelu, 8/3 x width (the same parameters) rounded up to 8 for swiglu
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    kv_heads: int = 0
    norm: str = "layer_norm"
    position: str = "learned"
    mlp: str = "gelu"
    bias: bool = True
    tie_embeddings: bool = True
    rope_theta: float = 10_000.0
    remat: bool = False  # recompute each block in the backward pass (config.model.remat): activations of one block
    attention: str = "dense"  # training's kernel (models/transformer.py ATTENTION but pallas); generation: dense

    @nn.compact
    def __call__(self, tokens, *, prefix=None, mask=None, cache: Cache | None = None):
        # `attention`'s kernel computes a call of tokens alone, padded on the right as every training batch is (its
        # mask is tokens != 0); a prefix, a given mask (left-padded prompts) or a cache take the dense path.
        whole = cache is None and prefix is None and mask is None
        embed = nn.Embed(
            self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embedding"
        )
        x = embed(tokens)
        mask = tokens != 0 if mask is None else mask
        if prefix is not None:
            x = jnp.concatenate([prefix.astype(x.dtype), x], axis=1)
            mask = jnp.concatenate([jnp.ones(prefix.shape[:2], bool), mask], axis=1)
        batch, length = mask.shape
        if cache is None:
            cache = init_cache(self, batch, length)
        slots = cache.index + jnp.arange(length)
        positions = cache.position[:, None] + jnp.cumsum(mask, axis=1) - 1  # padding repeats its left neighbour's
        if self.position == "learned":
            posemb = self.param("pos_embedding", nn.initializers.normal(0.01), (self.max_len, self.width), jnp.float32)
            x = x + posemb[jnp.clip(positions, 0, self.max_len - 1)]
        x = x.astype(self.dtype)
        valid = jax.lax.dynamic_update_slice_in_dim(cache.valid, mask, cache.index, axis=1)
        keys, values = [], []
        options = dict(
            kv_heads=self.kv_heads, norm=self.norm, mlp=self.mlp, bias=self.bias,
            rope_theta=self.rope_theta if self.position == "rope" else 0.0,
            attention=self.attention if whole else "dense",
        )  # fmt: skip
        layer = nn.remat(DecoderBlock) if self.remat else DecoderBlock
        for i in range(self.depth):
            block = layer(self.heads, self.mlp_width, self.layer_norm_eps, self.dtype, **options, name=f"block{i}")
            x, k, v = block(x, cache.key[i], cache.value[i], slots, valid, positions)
            keys.append(k)
            values.append(v)
        hidden = _norm_layer(self.norm, self.layer_norm_eps, self.bias)("ln_final")(x).astype(jnp.float32)
        if prefix is not None:
            hidden = hidden[:, prefix.shape[1] :]
        if self.tie_embeddings:
            logits = embed.attend(hidden.astype(self.dtype))
        else:
            logits = nn.Dense(self.vocab_size, use_bias=False, dtype=self.dtype, name="lm_head")(hidden)
        new_cache = Cache(tuple(keys), tuple(values), valid, cache.index + length, positions[:, -1] + 1)
        return {"logits": logits.astype(jnp.float32), "hidden": hidden}, new_cache

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: mlp_dim, or its default for the MLP kind."""
        if self.mlp_dim:
            return self.mlp_dim
        return 4 * self.width if self.mlp == "gelu" else -(-8 * self.width // 3 // 8) * 8


def build_language_model(config: ml_collections.ConfigDict, vocab_size: int) -> DecoderLM:
    """The DecoderLM of config.model.decoder (sizes and switches: DecoderLM) for a tokenizer of `vocab_size` ids."""
    d = config.model.decoder
    if d.vocab_size and d.vocab_size < vocab_size:
        raise ValueError(
            f"config.model.decoder.vocab_size ({d.vocab_size}) is smaller than the tokenizer's vocabulary "
            f"({vocab_size}); raise it, or set it to 0 to take the tokenizer's."
        )
    return DecoderLM(
        vocab_size=d.vocab_size or vocab_size, width=d.width, depth=d.depth, heads=d.heads, max_len=d.max_len,
        mlp_dim=d.mlp_dim, dtype=jnp.dtype(config.model.dtype), kv_heads=d.kv_heads, norm=d.norm,
        position=d.position, mlp=d.mlp, bias=d.bias, tie_embeddings=d.tie_embeddings, rope_theta=d.rope_theta,
        layer_norm_eps=d.norm_eps, remat=config.model.remat, attention=config.model.attention,
    )  # fmt: skip
