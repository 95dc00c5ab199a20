"""A decoder-only language model (GPT-style, pre-norm, tied input/output embeddings) with a key-value cache.

One forward function serves training and generation. The sequence lives in *slots* 0..S-1; a call writes
its chunk of C tokens (or prefix embeddings) into slots [index, index + C) of the cache and attends, for the
token in slot t, to every valid slot <= t. Generation left-pads prompts of different lengths: padding slots
are invalid keys and take no position, so each row's first real token has position 0 wherever its slot is.
Without a cache the chunk is the whole sequence (training); a cached prefill of the prompt followed by one
token per step computes the same logits (tests/test_language_model.py checks it token for token).

The parameter names follow the encoder's (block{i}/ln1, attn/{query,key,value,out}, ln2, mlp/{fc1,fc2},
ln_final), so the sharding rules of training/sharding.py split heads and MLP units over the `model` axis.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from models.transformer import MlpBlock


class Cache(NamedTuple):
    """Per layer `key` / `value` [B, S, heads, head_dim]; `valid` [B, S] bool (slots holding a real token);
    `index` int32 scalar (the next slot to write); `position` [B] int32 (the next position id per row)."""

    key: tuple[jax.Array, ...]
    value: tuple[jax.Array, ...]
    valid: jax.Array
    index: jax.Array
    position: jax.Array


def init_cache(model: DecoderLM, batch: int, slots: int) -> Cache:
    """An empty cache of `slots` slots (at most model.max_len) for `batch` rows."""
    head_dim = model.width // model.heads
    zeros = tuple(jnp.zeros((batch, slots, model.heads, head_dim), model.dtype) for _ in range(model.depth))
    return Cache(
        zeros, zeros, jnp.zeros((batch, slots), bool), jnp.zeros((), jnp.int32), jnp.zeros((batch,), jnp.int32)
    )


class DecoderBlock(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); attention over the cache's valid slots up to each query's own."""

    heads: int
    mlp_dim: int
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, key_cache, value_cache, slots, key_valid):
        """x [B, C, W] at `slots` [C] of the cache (key_cache / value_cache [B, S, H, Dh]; key_valid [B, S])
        -> (x [B, C, W], key_cache, value_cache with the chunk written)."""
        attn = _Attention(self.heads, x.shape[-1] // self.heads, self.dtype, name="attn")
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln1")(x)
        y, key_cache, value_cache = attn(y, key_cache, value_cache, slots, key_valid)
        x = x + y
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln2")(x)
        return x + MlpBlock(self.mlp_dim, dtype=self.dtype, name="mlp")(y), key_cache, value_cache


class _Attention(nn.Module):
    """Multi-head causal attention over a cache; params query/key/value [W, H, Dh], out [H, Dh, W] (as Flax's)."""

    heads: int
    head_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, key_cache, value_cache, slots, key_valid):
        proj = lambda name: nn.DenseGeneral((self.heads, self.head_dim), dtype=self.dtype, name=name)  # noqa: E731
        query, key, value = proj("query")(x), proj("key")(x), proj("value")(x)  # [B, C, H, Dh]
        start = slots[0]
        key_cache = jax.lax.dynamic_update_slice_in_dim(key_cache, key.astype(key_cache.dtype), start, axis=1)
        value_cache = jax.lax.dynamic_update_slice_in_dim(value_cache, value.astype(value_cache.dtype), start, axis=1)
        # Slot t sees slot s when s <= t and s holds a real token (its own slot always does once written).
        allowed = (jnp.arange(key_cache.shape[1])[None, :] <= slots[:, None])[None, None] & key_valid[:, None, None, :]
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key_cache) / jnp.sqrt(self.head_dim).astype(self.dtype)
        scores = jnp.where(allowed, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, value_cache)
        y = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), dtype=self.dtype, name="out")(out)
        return y, key_cache, value_cache


class DecoderLM(nn.Module):
    """Token ids [B, C] (0 = padding) -> {"logits" [B, C, vocab] float32, "hidden" [B, C, width] float32 (after
    the final LayerNorm: SimCTG's and contrastive search's representations)}, and the updated Cache.

    `prefix` [B, P, width]: embeddings placed before the tokens (LiMBeR's and CLOSE's image or text prefix);
    their outputs are dropped, so logits[:, i] still predicts the token after tokens[:, i].
    `mask` [B, C] bool: which tokens are real (default: tokens != 0); padding never serves as a key and takes
    no position. `cache`: None computes the chunk alone (training); a Cache continues it (generation)."""

    vocab_size: int
    width: int
    depth: int
    heads: int
    max_len: int
    mlp_dim: int = 0  # 0 = 4 x width
    layer_norm_eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, *, prefix=None, mask=None, cache: Cache | None = None):
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
        posemb = self.param("pos_embedding", nn.initializers.normal(0.01), (self.max_len, self.width), jnp.float32)
        x = (x + posemb[jnp.clip(positions, 0, self.max_len - 1)]).astype(self.dtype)
        valid = jax.lax.dynamic_update_slice_in_dim(cache.valid, mask, cache.index, axis=1)
        keys, values = [], []
        mlp_dim = self.mlp_dim or 4 * self.width
        for i in range(self.depth):
            block = DecoderBlock(self.heads, mlp_dim, self.layer_norm_eps, self.dtype, name=f"block{i}")
            x, k, v = block(x, cache.key[i], cache.value[i], slots, valid)
            keys.append(k)
            values.append(v)
        hidden = nn.LayerNorm(epsilon=self.layer_norm_eps, name="ln_final")(x).astype(jnp.float32)
        if prefix is not None:
            hidden = hidden[:, prefix.shape[1] :]
        logits = embed.attend(hidden.astype(self.dtype)).astype(jnp.float32)  # tied output embedding
        new_cache = Cache(tuple(keys), tuple(values), valid, cache.index + length, positions[:, -1] + 1)
        return {"logits": logits, "hidden": hidden}, new_cache


def build_language_model(config: ml_collections.ConfigDict, vocab_size: int) -> DecoderLM:
    """The DecoderLM of config.model.decoder (width, depth, heads, max_len, mlp_dim)."""
    d = config.model.decoder
    return DecoderLM(
        vocab_size=vocab_size, width=d.width, depth=d.depth, heads=d.heads, max_len=d.max_len, mlp_dim=d.mlp_dim,
        dtype=jnp.dtype(config.model.dtype),
    )  # fmt: skip
