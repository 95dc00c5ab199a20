"""Objectives: each method of METHODS.md is a loss over model outputs, looked up by name.

An objective is a bundle of pure functions:
- `loss(params, batch, extra, rng, *, model, config) -> (scalar, metrics)`;
- `init_extra(params, config) -> extra` for state not trained by gradients (EMA
  teachers, similarity EMAs, prototypes, memory banks); `{}` when there is none;
- `update_extra(extra, params, aux) -> extra`, applied after each optimizer step
  to the `aux` outputs the loss returned in its metrics under "aux";
- `batch_fields(record, rng, encode) -> {name: array}` (optional): inputs beyond "image" and
  "text" that the loss reads from the batch, made per example on the host from the data record
  (e.g. tokenized hard negatives or sub-captions); `encode(texts)` gives int32 [len(texts), max_len]
  token ids and `rng` is the example's fresh NumPy generator for this epoch;
- `embed(params, batch, extra, rng, *, model, config) -> {name: [B, ...]}` and
  `loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config) -> (scalar, metrics)`
  (optional, together): `loss` split at the per-example embeddings, so that GradCache gradient
  accumulation (training/grad_cache.py, config.microbatches > 1) can embed micro-batches apart and
  still take the loss over the whole global batch. `embed` must treat examples independently;
- `validate(config)` (optional): raises configs.errors.ConfigError, one sentence naming the key and the
  fix, for a bad value of the method's own options (config.<name>) or a setting it cannot run with;
  training/validation.py calls it before jax starts, after checking the section's keys and types;
- `record_fields`: the data record fields beyond "image" and "caption" that `batch_fields` reads, so
  that the config check refuses data that cannot supply them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from losses import alip, ccp, clip_refine, degla, dreamlip, hard_negatives, proclip, protoclip, simcse, uclip
from losses.contrastive import DEFAULT_TILE_SIZE, contrastive_loss
from losses.logit_scale import MAX_LOGIT_SCALE


class Objective(NamedTuple):
    loss: Callable[..., tuple[jax.Array, dict[str, Any]]]
    init_extra: Callable[[Any, Any], Any] = lambda params, config: {}
    update_extra: Callable[[Any, Any, Any], Any] = lambda extra, params, aux: extra
    batch_fields: Callable[..., dict[str, Any]] | None = None
    embed: Callable[..., dict[str, jax.Array]] | None = None
    loss_from_embeddings: Callable[..., tuple[jax.Array, dict[str, Any]]] | None = None
    validate: Callable[[Any], None] | None = None
    record_fields: tuple[str, ...] = ()


def _loss_implementation(config) -> dict[str, Any]:
    """contrastive_loss keywords from config.loss (dense when absent).

    The objective gets no mesh: distributed implementations take the trainer's mesh from the
    jax.set_mesh context (losses/contrastive.py).
    """
    options = config.get("loss", {})
    return {
        "implementation": options.get("implementation", "dense"),
        "tile_size": options.get("tile_size", DEFAULT_TILE_SIZE),
    }


def pair_embeddings(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """{"image_embedding", "text_embedding"}: [B, D] normalised embeddings of the batch's images and captions."""
    del extra, rng, config
    out = model.apply({"params": params}, batch["image"], batch["text"])
    return {"image_embedding": out["image_embedding"], "text_embedding": out["text_embedding"]}


def clip_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """Plain CLIP: symmetric InfoNCE between each image and its (possibly rewritten) caption."""
    del batch, extra, rng
    logit_scale = jnp.clip(model.apply({"params": params})["logit_scale"], 0.0, MAX_LOGIT_SCALE)
    loss, metrics = contrastive_loss(
        embeddings["image_embedding"],
        embeddings["text_embedding"],
        logit_scale,
        kind="softmax",
        **_loss_implementation(config),
    )
    metrics["temperature"] = 1.0 / jnp.exp(logit_scale)
    return loss, metrics


def clip_loss(params, batch, extra, rng, *, model, config):
    embeddings = pair_embeddings(params, batch, extra, rng, model=model, config=config)
    return clip_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def siglip_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """SigLIP: pairwise sigmoid loss with a learnable temperature and bias (METHODS.md 15a)."""
    del batch, extra, rng
    scalars = model.apply({"params": params})
    # The same clamp as CLIP (open_clip clamps every model's scale at 100; big_vision does not).
    logit_scale = jnp.clip(scalars["logit_scale"], 0.0, MAX_LOGIT_SCALE)
    loss, metrics = contrastive_loss(
        embeddings["image_embedding"],
        embeddings["text_embedding"],
        logit_scale,
        scalars["logit_bias"],
        kind="sigmoid",
        **_loss_implementation(config),
    )
    metrics.update(temperature=1.0 / jnp.exp(logit_scale), logit_bias=scalars["logit_bias"])
    return loss, metrics


def siglip_loss(params, batch, extra, rng, *, model, config):
    embeddings = pair_embeddings(params, batch, extra, rng, model=model, config=config)
    return siglip_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


OBJECTIVES: dict[str, Objective] = {
    "clip": Objective(loss=clip_loss, embed=pair_embeddings, loss_from_embeddings=clip_loss_from_embeddings),
    "siglip": Objective(loss=siglip_loss, embed=pair_embeddings, loss_from_embeddings=siglip_loss_from_embeddings),
    "clip_refine": Objective(loss=clip_refine.loss, init_extra=clip_refine.init_extra, validate=clip_refine.validate),
    "degla": Objective(
        loss=degla.loss,
        init_extra=degla.init_extra,
        update_extra=degla.update_extra,
        batch_fields=degla.batch_fields,
        validate=degla.validate,
        record_fields=("hard_negatives",),
    ),
    "uclip": Objective(
        loss=uclip.loss, init_extra=uclip.init_extra, batch_fields=uclip.batch_fields, validate=uclip.validate
    ),
    "proclip": Objective(loss=proclip.loss, init_extra=proclip.init_extra, validate=proclip.validate),
    "dreamlip": Objective(
        loss=dreamlip.dreamlip_loss,
        batch_fields=dreamlip.dreamlip_fields,
        validate=dreamlip.validate,
        record_fields=("long_caption",),
    ),
    "alip": Objective(
        loss=alip.alip_loss,
        init_extra=alip.init_extra,
        update_extra=alip.update_extra,
        batch_fields=alip.alip_fields,
        validate=alip.validate,
        record_fields=("raw_caption",),
    ),
    "protoclip": Objective(
        loss=protoclip.protoclip_loss,
        init_extra=protoclip.init_extra,
        update_extra=protoclip.update_extra,
        validate=protoclip.validate,
    ),
    "clip_hard_negatives": Objective(
        loss=hard_negatives.clip_hard_negatives_loss,
        init_extra=hard_negatives.init_extra,
        batch_fields=hard_negatives.hard_negative_fields,
        validate=hard_negatives.validate,
        record_fields=("hard_negatives",),
    ),
    "simcse": Objective(loss=simcse.simcse_objective_loss, validate=simcse.simcse_validate),
    "multicsr": Objective(
        loss=simcse.multicsr_objective_loss, init_extra=simcse.multicsr_init_extra, validate=simcse.multicsr_validate
    ),
    "ccp": Objective(
        loss=ccp.ccp_objective_loss,
        init_extra=ccp.ccp_init_extra,
        update_extra=ccp.ccp_update_extra,
        validate=ccp.validate,
    ),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; set config.objective to one of {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name]
