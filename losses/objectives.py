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
  token ids and `rng` is the example's fresh NumPy generator for this epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from losses.contrastive import DEFAULT_TILE_SIZE, contrastive_loss
from losses.logit_scale import MAX_LOGIT_SCALE


class Objective(NamedTuple):
    loss: Callable[..., tuple[jax.Array, dict[str, Any]]]
    init_extra: Callable[[Any, Any], Any] = lambda params, config: {}
    update_extra: Callable[[Any, Any, Any], Any] = lambda extra, params, aux: extra
    batch_fields: Callable[..., dict[str, Any]] | None = None


def _loss_implementation(config) -> dict[str, Any]:
    """contrastive_loss keywords from config.loss (dense when absent).

    The objective gets no mesh: distributed implementations take the jax.set_mesh context, else
    training.mesh.make_mesh(), the trainer's mesh (losses/contrastive.py).
    """
    options = config.get("loss", {})
    return {
        "implementation": options.get("implementation", "dense"),
        "tile_size": options.get("tile_size", DEFAULT_TILE_SIZE),
    }


def clip_loss(params, batch, extra, rng, *, model, config):
    """Plain CLIP: symmetric InfoNCE between each image and its (possibly rewritten) caption."""
    del extra, rng
    out = model.apply({"params": params}, batch["image"], batch["text"])
    logit_scale = jnp.clip(out["logit_scale"], 0.0, MAX_LOGIT_SCALE)
    loss, metrics = contrastive_loss(
        out["image_embedding"], out["text_embedding"], logit_scale, kind="softmax", **_loss_implementation(config)
    )
    metrics["temperature"] = 1.0 / jnp.exp(logit_scale)
    return loss, metrics


def siglip_loss(params, batch, extra, rng, *, model, config):
    """SigLIP: pairwise sigmoid loss with a learnable temperature and bias (METHODS.md 15a)."""
    del extra, rng
    out = model.apply({"params": params}, batch["image"], batch["text"])
    # The same clamp as CLIP (open_clip clamps every model's scale at 100; big_vision does not).
    logit_scale = jnp.clip(out["logit_scale"], 0.0, MAX_LOGIT_SCALE)
    loss, metrics = contrastive_loss(
        out["image_embedding"],
        out["text_embedding"],
        logit_scale,
        out["logit_bias"],
        kind="sigmoid",
        **_loss_implementation(config),
    )
    metrics.update(temperature=1.0 / jnp.exp(logit_scale), logit_bias=out["logit_bias"])
    return loss, metrics


OBJECTIVES: dict[str, Objective] = {
    "clip": Objective(loss=clip_loss),
    "siglip": Objective(loss=siglip_loss),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; set config.objective to one of {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name]
