"""Objectives: each method of METHODS.md is a loss over model outputs, looked up by name.

An objective is a bundle of pure functions:
- `loss(params, batch, extra, rng, *, model, config) -> (scalar, metrics)`;
- `init_extra(params, config) -> extra` for state not trained by gradients (EMA
  teachers, similarity EMAs, prototypes, memory banks); `{}` when there is none;
- `update_extra(extra, params, aux) -> extra`, applied after each optimizer step
  to the `aux` outputs the loss returned in its metrics under "aux".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from losses.softmax import softmax_contrastive_loss

MAX_LOGIT_SCALE = float(jnp.log(100.0))


class Objective(NamedTuple):
    loss: Callable[..., tuple[jax.Array, dict[str, Any]]]
    init_extra: Callable[[Any, Any], Any] = lambda params, config: {}
    update_extra: Callable[[Any, Any, Any], Any] = lambda extra, params, aux: extra


def clip_loss(params, batch, extra, rng, *, model, config):
    """Plain CLIP: symmetric InfoNCE between each image and its (possibly rewritten) caption."""
    del extra, rng, config
    out = model.apply({"params": params}, batch["image"], batch["text"])
    logit_scale = jnp.clip(out["logit_scale"], 0.0, MAX_LOGIT_SCALE)
    loss, metrics = softmax_contrastive_loss(out["image_embedding"], out["text_embedding"], logit_scale)
    metrics["temperature"] = 1.0 / jnp.exp(logit_scale)
    return loss, metrics


OBJECTIVES: dict[str, Objective] = {
    "clip": Objective(loss=clip_loss),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; set config.objective to one of {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name]
