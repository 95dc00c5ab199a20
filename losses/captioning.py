"""LiMBeR's and CLOSE's objective: a caption's next-token cross-entropy under a decoder LM that reads
`prefix_tokens` embeddings mapped from one frozen CLIP embedding per example (models/captioner.py).

The batch holds "prefix_features" [B, D] (the CLIP run's unit-norm embedding: of the image for `limber`, of the
caption itself for `close`; training/caption_task.py) and "text" [B, L] (BOS, caption, EOS, padding).
- limber (Merullo et al. 2023, METHODS.md §18): the LM is frozen (configs/limber.py freezes "lm"); dropout
  `limber.dropout` on the prefix.
- close (Gu et al. 2023, METHODS.md §19): trained on text embeddings only, with CLOSE's noise adapter
  v' = normalize(v + ε), ε ~ N(0, σ² I), σ = `close.noise_std`; at test time the image embedding, no noise.
Per sequence, with no term over the batch: any config.loss.implementation gives the same loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError
from losses.language import next_token_loss

CAPTION_OBJECTIVES = ("limber", "close")  # the objectives that train a captioner (config.model.kind 'captioner')


def noisy_embedding(embedding: jax.Array, rng: jax.Array, std: float) -> jax.Array:
    """CLOSE's noise adapter: embedding [B, D] (unit norm) -> normalize(embedding + N(0, std²)) [B, D]."""
    noised = embedding + std * jax.random.normal(rng, embedding.shape, embedding.dtype)
    return noised / jnp.sqrt(jnp.sum(jnp.square(noised), axis=-1, keepdims=True) + 1e-12)


def caption_loss(params, batch, extra, rng, *, model, config):
    """Cross-entropy of batch["text"] given the prefix of batch["prefix_features"]; metrics: caption_loss,
    perplexity, tokens."""
    del extra
    noise_rng, dropout_rng = jax.random.split(rng)
    features = batch["prefix_features"].astype(jnp.float32)
    if config.objective == "close" and config.close.noise_std > 0:
        features = noisy_embedding(features, noise_rng, config.close.noise_std)
    tokens = batch["text"]
    out, _ = model.apply(
        {"params": params}, features, tokens[:, :-1], deterministic=False, rngs={"dropout": dropout_rng}
    )
    loss, count = next_token_loss(out["logits"], tokens[:, 1:])
    return loss, {"caption_loss": loss, "perplexity": jnp.exp(loss), "tokens": count}


def no_batch_term(config) -> str:
    return "a captioner's loss has no term over the batch to tile or ring"


def _validate_common(config: ml_collections.ConfigDict) -> None:
    options = config[config.objective]
    if options.prefix_tokens < 1:
        raise ConfigError(f"config.{config.objective}.prefix_tokens must be at least 1, not {options.prefix_tokens}.")


def validate_limber(config: ml_collections.ConfigDict) -> None:
    _validate_common(config)
    if not 0.0 <= config.limber.dropout < 1.0:
        raise ConfigError(f"config.limber.dropout must be in [0, 1) (the paper's is 0.1), not {config.limber.dropout}.")


def validate_close(config: ml_collections.ConfigDict) -> None:
    _validate_common(config)
    if not 0.0 <= config.close.noise_std <= 2.0:
        raise ConfigError(
            f"config.close.noise_std must be in [0, 2] (noise on unit vectors; the paper's captioning value is "
            f"0.12), not {config.close.noise_std}."
        )
