"""PHF — pretraining with human preferences (Korbak et al. 2023, METHODS.md §25): a language model trained on
text scored sentence by sentence, by one of the paper's objectives (config.phf.objective):

- `mle`: next-token cross-entropy on everything (the baseline);
- `filtering`: the same, on the documents with no misaligned sentence (the data source drops the rest);
- `conditional`: the same, on text whose every sentence follows its control token <|aligned|> or <|misaligned|>
  (the source inserts them); sampling then starts from <|aligned|> with both tokens banned;
- `unlikelihood`: cross-entropy on the aligned sentences' tokens and α · −log(1 − p(token)) on the misaligned
  ones' (α = config.phf.unlikelihood_weight, the paper's 1).

A batch has "text" (BOS, tokens, EOS, padding 0) and "misaligned" (1 on the tokens of misaligned sentences;
input_pipeline/preference_text.py). Every term is per sequence: no term over the batch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError

OBJECTIVES = ("mle", "filtering", "conditional", "unlikelihood")


def token_losses(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """logits [B, L, V], targets [B, L] -> (−log p(target), −log(1 − p(target))), each [B, L] float32."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    log_p = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    # log(1 - p) = log(-expm1(log p)), finite while p < 1; p is clipped below 1 so a certain token costs ~16.
    unlikely = -jnp.log(-jnp.expm1(jnp.minimum(log_p, -1e-7)))
    return -log_p, unlikely


def phf_loss(params, batch, extra, rng, *, model, config):
    """The objective of config.phf.objective on batch["text"]; metrics: lm_loss and perplexity (cross-entropy
    of the aligned tokens), unlikelihood (its term, 0 unless used), misaligned_tokens (their share), tokens."""
    del extra, rng
    tokens = batch["text"]
    out, _ = model.apply({"params": params}, tokens[:, :-1])
    targets = tokens[:, 1:]
    real = targets != 0
    bad = real & (batch["misaligned"][:, 1:] != 0)
    good = real & ~bad
    nll, unlikely = token_losses(out["logits"], targets)
    count = jnp.maximum(jnp.sum(real), 1).astype(jnp.float32)
    aligned_ce = jnp.sum(nll * good) / jnp.maximum(jnp.sum(good), 1)
    if config.phf.objective == "unlikelihood":
        ul = jnp.sum(unlikely * bad) / count
        loss = jnp.sum(nll * good) / count + config.phf.unlikelihood_weight * ul
    else:
        ul = jnp.zeros(())
        loss = jnp.sum(nll * real) / count
    metrics = {
        "lm_loss": aligned_ce, "perplexity": jnp.exp(aligned_ce), "unlikelihood": ul,
        "misaligned_tokens": jnp.sum(bad) / count, "tokens": jnp.sum(real).astype(jnp.float32),
    }  # fmt: skip
    return loss, metrics


def validate(config: ml_collections.ConfigDict) -> None:
    p = config.phf
    if p.objective not in OBJECTIVES:
        raise ConfigError(f"Unknown config.phf.objective {p.objective!r}; use one of {list(OBJECTIVES)}.")
    if not math.isfinite(p.threshold):
        raise ConfigError(f"config.phf.threshold={p.threshold} is not a number; set your scorer's threshold t.")
    if not 0.0 <= p.misaligned_rate < 1.0:
        raise ConfigError(
            f"config.phf.misaligned_rate={p.misaligned_rate} is outside [0, 1) (METHODS.md's toy uses 0.05); set it "
            "there."
        )
    if p.unlikelihood_weight < 0:
        raise ConfigError(f"config.phf.unlikelihood_weight={p.unlikelihood_weight} is negative; set it to 0 or more.")
