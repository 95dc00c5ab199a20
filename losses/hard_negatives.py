"""Hard-negative mining with false-negative filtering (UniME stage 2), as a loss option for CLIP.

For each image i (the query) the candidates are the batch's captions and, with
`caption_negatives`, its own rule-based hard-negative captions (the shapes data's six perturbations).
Cosine scores S_ij decide, without gradient, which candidates take part:
1. false negatives are dropped: S_ij > S_ii + margin (UniME, margin beta = 0.1;
   losses/false_negatives.py), and with `frozen_threshold` > 0 also in-batch captions that a frozen
   trained text encoder finds equivalent to caption i (MultiCSR: cos > phi);
2. the top_k highest-scoring remaining candidates are the hard negatives (UniME k = 8);
3. loss_i = CE over [positive, top_k hard negatives] only, at scale s = 1/temperature
   (UniME tau = 0.02; temperature 0 uses the model's learnable, clamped scale).
Only image -> text: the hard negatives are captions. The objective `clip_hard_negatives` adds this
term to the CLIP loss: L = clip_weight L_CLIP + weight L_hard (clip_weight 0 is UniME's loss alone).
Fewer than top_k valid candidates: the empty slots are left out of the softmax. top_k = 0 keeps all
remaining candidates (in-batch InfoNCE with false negatives masked, as MultiCSR trains). The frozen
test is not applied to the rule-based negatives, which are false for the image by construction.

Config (configs/clip_hard_negatives.py, sub-config `clip_hard_negatives`): top_k, margin, temperature,
weight, clip_weight, caption_negatives (bool), frozen_threshold (0 = off; needs config.init_from of a
trained CLIP run covering the text tower), mask_mode ("exclude" | "zero", losses/false_negatives.py).

Implementations: the CLIP term runs on losses.contrastive.contrastive_loss in config.loss.implementation.
With top_k = 0, no frozen encoder and mask_mode "exclude" the hard term does too (image -> text only,
`false_negative_margin`, the caption negatives as `hard_negatives`; its metric is then
hard_negative_accuracy alone, the counts needing the B x B scores). Otherwise it is this module's
own term over the whole B x B score matrix (the top-k choice, a frozen encoder's pairwise mask, the
code's "zero" mask), and the objective is dense-only (`dense_only`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.false_negatives import MASK_MODES, frozen_false_negatives, margin_false_negatives, mask_logits
from losses.logit_scale import clamped_logit_scale

NUM_CAPTION_NEGATIVES = 6  # shapes.HARD_NEGATIVE_TYPES


def hard_negative_loss(
    query: jax.Array,
    positives: jax.Array,
    candidates: jax.Array,
    scale: jax.Array,
    *,
    top_k: int,
    margin: float,
    extra_negatives: jax.Array | None = None,
    false_negatives: jax.Array | None = None,
    mask_mode: str = "exclude",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """UniME's filtered top-k CE. query, positives [B, D]; candidates [C, D] (in-batch: row i's positive
    is column i, never a negative); extra_negatives [B, H, D] per-query negatives; false_negatives
    [B, C] bool, in-batch columns to drop as well (e.g. a frozen encoder's). All L2-normalised;
    scale = exp(logit scale). top_k = 0 keeps every candidate instead, and then `mask_mode` says how
    the dropped ones are masked (losses/false_negatives.py); with top_k > 0 dropped candidates are
    never chosen, and slots left empty are excluded. Returns (mean loss, metrics)."""
    batch = query.shape[0]
    positive_scores = jnp.sum(query * positives, axis=-1)
    scores = query @ candidates.T
    is_positive = jnp.arange(batch)[:, None] == jnp.arange(candidates.shape[0])[None, :]
    if false_negatives is None:
        false_negatives = jnp.zeros_like(is_positive)
    if extra_negatives is not None:
        scores = jnp.concatenate([scores, jnp.einsum("bd,bhd->bh", query, extra_negatives)], axis=1)
        pad = ((0, 0), (0, extra_negatives.shape[1]))
        is_positive, false_negatives = jnp.pad(is_positive, pad), jnp.pad(false_negatives, pad)
    dropped = ~is_positive & (false_negatives | margin_false_negatives(scores, positive_scores, margin))
    lowest = jnp.finfo(scores.dtype).min
    if top_k > 0:
        filtered = jnp.where(dropped | is_positive, lowest, jax.lax.stop_gradient(scores))
        top_scores, top_index = jax.lax.top_k(filtered, min(top_k, scores.shape[1]))
        chosen = top_scores > lowest
        negatives = jnp.where(chosen, scale * jnp.take_along_axis(scores, top_index, axis=1), lowest)
    else:
        chosen = ~dropped & ~is_positive
        negatives = jnp.where(is_positive, lowest, mask_logits(scale * scores, dropped, mask_mode))
    logits = jnp.concatenate([scale * positive_scores[:, None], negatives], axis=1)
    loss = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])
    metrics = {
        "hard_negatives_used": jnp.mean(jnp.sum(chosen, axis=1).astype(jnp.float32)),
        "false_negatives_dropped": jnp.mean(jnp.sum(dropped, axis=1).astype(jnp.float32)),
        "hard_negative_accuracy": jnp.mean(jnp.all(negatives < logits[:, :1], axis=1).astype(jnp.float32)),
    }
    return loss, metrics


def hard_negative_fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"hard_negative_text": int32 [6, max_len]}: the record's rule-based hard-negative captions."""
    del rng
    return {"hard_negative_text": encode(list(record["hard_negatives"]))}


def _encode_texts(params, tokens: jax.Array, model) -> jax.Array:
    """int32 [..., L] -> [..., D] normalised text embeddings."""
    flat = tokens.reshape(-1, tokens.shape[-1])
    embedding = model.apply({"params": params}, flat, method=model.encode_text)["text_embedding"]
    return embedding.reshape(*tokens.shape[:-1], embedding.shape[-1])


def init_extra(params, config, inputs=None) -> dict:
    """The frozen encoder (a copy of the initial params) when frozen_threshold > 0, else nothing."""
    del inputs
    if config.clip_hard_negatives.frozen_threshold <= 0:
        return {}
    return {"frozen": jax.tree.map(jnp.copy, params)}


def dense_only(config) -> str | None:
    """Why config.clip_hard_negatives makes the objective dense-only, or None."""
    options = config.clip_hard_negatives
    if options.weight and (options.top_k > 0 or options.frozen_threshold > 0 or options.mask_mode != "exclude"):
        return (
            "its hard-negative term with clip_hard_negatives.top_k > 0, frozen_threshold > 0 or mask_mode='zero' "
            "needs the whole B x B score matrix"
        )
    return None


def hard_negative_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example embeddings: image, caption [B, D]; hard-negative captions [B, 6, D] with
    caption_negatives; the frozen encoder's caption [B, D] with frozen_threshold > 0."""
    del rng
    options = config.clip_hard_negatives
    out = model.apply({"params": params}, batch["image"], batch["text"])
    embeddings = {"image_embedding": out["image_embedding"], "text_embedding": out["text_embedding"]}
    if options.caption_negatives:
        embeddings["hard_negative_embedding"] = _encode_texts(params, batch["hard_negative_text"], model)
    if options.frozen_threshold > 0:
        frozen = _encode_texts(extra["frozen"], batch["text"], model)
        embeddings["frozen_text_embedding"] = jax.lax.stop_gradient(frozen)
    return embeddings


def clip_hard_negatives_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """CLIP loss + UniME hard-negative term (see the module docstring) from hard_negative_embed's embeddings."""
    del batch, extra, rng
    options, implementation = config.clip_hard_negatives, implementation_options(config)
    image, text = embeddings["image_embedding"], embeddings["text_embedding"]
    extra_negatives = embeddings.get("hard_negative_embedding")
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    clip_value, metrics = contrastive_loss(image, text, logit_scale, **implementation)
    if options.temperature > 0:
        hard_logit_scale = jnp.asarray(-np.log(options.temperature), logit_scale.dtype)
    else:
        hard_logit_scale = logit_scale
    if dense_only(config) is None:
        hard_value, primitive_metrics = contrastive_loss(
            image, text, hard_logit_scale, directions="image_to_text", false_negative_margin=options.margin,
            hard_negatives=extra_negatives, **implementation,
        )  # fmt: skip
        hard_metrics = {"hard_negative_accuracy": primitive_metrics["i2t_accuracy"]}
    else:
        false_negatives = None
        if options.frozen_threshold > 0:
            frozen = embeddings["frozen_text_embedding"]
            is_positive = jnp.eye(frozen.shape[0], dtype=bool)
            false_negatives = frozen_false_negatives(frozen, frozen, options.frozen_threshold, is_positive)
        hard_value, hard_metrics = hard_negative_loss(
            image, text, text, jnp.exp(hard_logit_scale), top_k=options.top_k, margin=options.margin,
            extra_negatives=extra_negatives, false_negatives=false_negatives, mask_mode=options.mask_mode,
        )  # fmt: skip
    metrics.update(
        hard_metrics, clip_loss=clip_value, hard_negative_loss=hard_value, temperature=1.0 / jnp.exp(logit_scale)
    )
    return options.clip_weight * clip_value + options.weight * hard_value, metrics


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for an option out of range or a frozen encoder with no run."""
    options = config.clip_hard_negatives
    if options.mask_mode not in MASK_MODES:
        raise ConfigError(
            f"Unknown config.clip_hard_negatives.mask_mode {options.mask_mode!r}; use one of {list(MASK_MODES)}."
        )
    if options.top_k < 0:
        raise ConfigError(f"config.clip_hard_negatives.top_k must be >= 0 (0 keeps all), not {options.top_k!r}.")
    if options.temperature < 0:
        raise ConfigError(
            f"config.clip_hard_negatives.temperature must be >= 0 (0 = the model's), not {options.temperature!r}."
        )
    if options.frozen_threshold > 0 and not config.init_from.workdir:
        raise ConfigError(
            "config.clip_hard_negatives.frozen_threshold > 0 needs a trained frozen encoder: set "
            "config.init_from.workdir to a CLIP run (param_prefixes including 'text_tower' and 'text_projection')."
        )


def clip_hard_negatives_loss(params, batch, extra, rng, *, model, config):
    """CLIP loss + UniME hard-negative term (see the module docstring)."""
    embeddings = hard_negative_embed(params, batch, extra, rng, model=model, config=config)
    return clip_hard_negatives_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)
