"""ALIP (Yang et al. 2023): bi-path CLIP on raw text and a synthetic caption, with adaptive weights.

One text tower embeds both the raw text t_i (the shapes record's noisy `raw_caption`) and the
synthetic caption c_i (its clean `caption`, the batch's "text"). Per example, without gradient:
    S^T_i = <g(t_i), g(c_i)>,  S^IT_i = <f_i, g(t_i)>,  S^IC_i = <f_i, g(c_i)>,
and EMAs of their batch means (init 1, momentum 0.99) s^T, s^IT, s^IC, updated with this batch
before the weights use them. Gates, lambda = 2:
    language consistency    W^s_i  = min(exp(lambda (S^T_i - s^T)), 1)
    description consistency W^IT_i = exp(lambda (S^IT_i - s^IT)) where W^s_i < 1, else 1 (W^IC alike)
    L = rho mean_i W^s_i W^IT_i l_i(F, G_t) + mean_i W^s_i W^IC_i l_i(F, G_c),
with l_i the per-example symmetric CLIP loss 1/2 (CE_i(image -> texts) + CE_i(text -> images)) and rho the
raw-caption weight (the paper's 1; 0 trains on the synthetic caption alone, still gated by the raw text).

Choice (METHODS.md: the official code leaves the description gate unclipped): W^IT and W^IC are NOT
clipped at 1 by default, as in deepglint/ALIP's Adaptive_loss, so a pair that matches its image
better than average is up-weighted; `alip.clip_pair_weights=True` clips them at 1 like W^s.

Config (configs/alip.py, sub-config `alip`): momentum, gate_power (lambda), clip_pair_weights,
raw_caption_weight (rho).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale

EMA_NAMES = ("text", "image_raw", "image_caption")


def per_example_clip_loss(image_embedding: jax.Array, text_embedding: jax.Array, scale: jax.Array) -> jax.Array:
    """[B, D], [B, D], scalar scale -> [B]: 1/2 (CE of row i + CE of column i) of scale F G^T, dense
    (the definition; the objective takes weighted_clip_loss)."""
    logits = scale * image_embedding @ text_embedding.T
    positives = jnp.diagonal(logits)
    return 0.5 * (jax.nn.logsumexp(logits, axis=1) + jax.nn.logsumexp(logits, axis=0)) - positives


def weighted_clip_loss(
    image_embedding: jax.Array, text_embedding: jax.Array, scale: jax.Array, weights: jax.Array, **options
) -> jax.Array:
    """mean_i weights_i l_i, l_i of per_example_clip_loss; weights [B] without gradient.
    options: contrastive_loss's implementation keywords."""
    loss, _ = contrastive_loss(image_embedding, text_embedding, jnp.log(scale), weights=weights, **options)
    return loss * jnp.sum(weights) / weights.shape[0]


def alip_weights(
    similarities: dict[str, jax.Array], means: dict[str, jax.Array], *, gate_power: float, clip_pair_weights: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example [B] similarities and scalar means (keys EMA_NAMES) -> (W^s, W^IT, W^IC), each [B]."""
    sample = jnp.minimum(jnp.exp(gate_power * (similarities["text"] - means["text"])), 1.0)
    gated = sample < 1.0
    pairs = []
    for name in ("image_raw", "image_caption"):
        weight = jnp.exp(gate_power * (similarities[name] - means[name]))
        if clip_pair_weights:
            weight = jnp.minimum(weight, 1.0)
        pairs.append(jnp.where(gated, weight, 1.0))
    return sample, pairs[0], pairs[1]


def alip_loss_from_embeddings(
    image: jax.Array,
    raw: jax.Array,
    caption: jax.Array,
    scale: jax.Array,
    means: dict[str, jax.Array],
    *,
    momentum: float,
    gate_power: float,
    clip_pair_weights: bool,
    raw_caption_weight: float = 1.0,
    **options,
) -> tuple[jax.Array, dict[str, jax.Array], dict[str, jax.Array]]:
    """image, raw, caption: normalised [B, D]; means: the EMAs before this batch; options:
    contrastive_loss's implementation keywords. Returns (loss, metrics, updated means)."""
    similarities = jax.lax.stop_gradient(
        {
            "text": jnp.sum(raw * caption, axis=-1),
            "image_raw": jnp.sum(image * raw, axis=-1),
            "image_caption": jnp.sum(image * caption, axis=-1),
        }
    )
    new_means = {k: momentum * means[k] + (1.0 - momentum) * jnp.mean(similarities[k]) for k in EMA_NAMES}
    w_sample, w_raw, w_caption = alip_weights(
        similarities, new_means, gate_power=gate_power, clip_pair_weights=clip_pair_weights
    )
    raw_loss = weighted_clip_loss(image, raw, scale, w_sample * w_raw, **options)
    caption_loss = weighted_clip_loss(image, caption, scale, w_sample * w_caption, **options)
    metrics = {
        "raw_loss": raw_loss,
        "caption_loss": caption_loss,
        "gated_fraction": jnp.mean((w_sample < 1.0).astype(jnp.float32)),
        "sample_weight": jnp.mean(w_sample),
        **{f"ema_{k}": v for k, v in new_means.items()},
    }
    return raw_caption_weight * raw_loss + caption_loss, metrics, new_means


def alip_fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"raw_text": int32 [max_len]}: the record's noisy raw caption."""
    del rng
    return {"raw_text": encode([record["raw_caption"]])[0]}


def init_extra(params, config, inputs=None) -> dict[str, jax.Array]:
    del params, config, inputs
    return {k: jnp.ones((), jnp.float32) for k in EMA_NAMES}


def update_extra(extra, params, aux):
    del extra, params
    return aux


def alip_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example [B, D] embeddings of the image, caption and raw text (one text-tower pass)."""
    del extra, rng, config
    batch_size = batch["text"].shape[0]
    out = model.apply({"params": params}, batch["image"], jnp.concatenate([batch["text"], batch["raw_text"]]))
    return {
        "image_embedding": out["image_embedding"],
        "text_embedding": out["text_embedding"][:batch_size],
        "raw_text_embedding": out["text_embedding"][batch_size:],
    }


def alip_objective_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """ALIP's adaptive bi-path loss from alip_embed's embeddings."""
    del batch, rng
    options = config.alip
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    loss, metrics, means = alip_loss_from_embeddings(
        embeddings["image_embedding"],
        embeddings["raw_text_embedding"],
        embeddings["text_embedding"],
        jnp.exp(logit_scale),
        extra,
        momentum=options.momentum,
        gate_power=options.gate_power,
        clip_pair_weights=options.clip_pair_weights,
        raw_caption_weight=options.raw_caption_weight,
        **implementation_options(config),
    )
    metrics.update(temperature=1.0 / jnp.exp(logit_scale), aux=means)
    return loss, metrics


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for an ALIP option out of range."""
    if not 0 <= config.alip.momentum < 1:
        raise ConfigError(f"config.alip.momentum must be in [0, 1), not {config.alip.momentum!r}.")
    if config.alip.raw_caption_weight < 0:
        raise ConfigError(
            f"config.alip.raw_caption_weight must be >= 0 (0 drops the raw-caption term), "
            f"not {config.alip.raw_caption_weight!r}."
        )


def alip_loss(params, batch, extra, rng, *, model, config):
    """ALIP's adaptive bi-path loss; the raw text and caption share one pass of the text tower."""
    embeddings = alip_embed(params, batch, extra, rng, model=model, config=config)
    return alip_objective_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)
