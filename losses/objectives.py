"""Objectives: each method of METHODS.md is a loss over model outputs, looked up by name.

An objective is a bundle of pure functions:
- `loss(params, batch, extra, rng, *, model, config) -> (scalar, metrics)`;
- `init_extra(params, config, inputs) -> extra` for state not trained by gradients (EMA
  teachers, similarity EMAs, prototypes, memory banks); `{}` when there is none. `inputs` are host
  arrays the trainer prepares before jit for the objectives that need data or files (a frozen
  embedder's checkpoint, memory-bank images): training/objective_inputs.py, so that every loss
  module stays pure; `{}` for the others;
- `update_extra(extra, params, aux) -> extra`, applied after each optimizer step
  to the `aux` outputs the loss returned in its metrics under "aux";
- `batch_fields(record, rng, encode) -> {name: array}` (optional): inputs beyond "image" and
  "text" that the loss reads from the batch, made per example on the host from the data record
  (e.g. tokenized hard negatives or sub-captions); `encode(texts)` gives int32 [len(texts), max_len]
  token ids and `rng` is the example's fresh NumPy generator for this epoch (uCLIP's need the
  input pipeline's second-language encoder: training/objective_inputs.py supplies them);
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


What an objective supports is declared with it, and `check_objective_options` refuses the rest:
- `implementations`: the config.loss.implementation values its contrastive terms run on. A term
  of its own that is O(B H) per example (own hard negatives, prototypes, a shared bank) runs in any
  of them; one that needs the B x B matrix (a top-k over the batch, a pairwise distance) makes the
  objective dense-only; `dense_only(config) -> reason | None` says when an option does so;
- `grad_cache`: config.microbatches > 1 works (it has embed and loss_from_embeddings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from losses import (
    alip,
    captioning,
    ccp,
    climb,
    clip_refine,
    cloc,
    coconut,
    degla,
    denseclip,
    dreamlip,
    hard_negatives,
    language,
    mend,
    pcp,
    phf,
    proclip,
    protoclip,
    salt,
    simcse,
    space2,
    superedit,
    uclip,
    xclip,
)
from losses.contrastive import ALL_IMPLEMENTATIONS, IMPLEMENTATIONS, contrastive_loss, implementation_options
from losses.logit_scale import MAX_LOGIT_SCALE


class Objective(NamedTuple):
    loss: Callable[..., tuple[jax.Array, dict[str, Any]]]
    init_extra: Callable[..., Any] = lambda params, config, inputs=None: {}
    update_extra: Callable[[Any, Any, Any], Any] = lambda extra, params, aux: extra
    batch_fields: Callable[..., dict[str, Any]] | None = None
    embed: Callable[..., dict[str, jax.Array]] | None = None
    loss_from_embeddings: Callable[..., tuple[jax.Array, dict[str, Any]]] | None = None
    validate: Callable[[Any], None] | None = None
    record_fields: tuple[str, ...] = ()
    implementations: tuple[str, ...] = IMPLEMENTATIONS
    dense_only: Callable[[Any], str | None] = lambda config: None
    grad_cache: bool = False


def embed_then_loss(embed: Callable, loss_from_embeddings: Callable) -> Callable:
    """The `loss` of an objective that has `embed` and `loss_from_embeddings`: the one applied to the other's output."""

    def loss(params, batch, extra, rng, *, model, config):
        embeddings = embed(params, batch, extra, rng, model=model, config=config)
        return loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)

    return loss


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
        **implementation_options(config),
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
        **implementation_options(config),
    )
    metrics.update(temperature=1.0 / jnp.exp(logit_scale), logit_bias=scalars["logit_bias"])
    return loss, metrics


def siglip_loss(params, batch, extra, rng, *, model, config):
    embeddings = pair_embeddings(params, batch, extra, rng, model=model, config=config)
    return siglip_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


OBJECTIVES: dict[str, Objective] = {
    # Objectives whose contrastive terms are plain pairs (one or several positives, weights) declare the fused
    # kernels (losses/fused.py) as well; tests/test_objective_implementations.py checks each against dense.
    "clip": Objective(
        loss=clip_loss,
        embed=pair_embeddings,
        loss_from_embeddings=clip_loss_from_embeddings,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "siglip": Objective(
        loss=siglip_loss,
        embed=pair_embeddings,
        loss_from_embeddings=siglip_loss_from_embeddings,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "clip_refine": Objective(
        loss=clip_refine.loss,
        init_extra=clip_refine.init_extra,
        embed=clip_refine.embed,
        loss_from_embeddings=clip_refine.loss_from_embeddings,
        grad_cache=True,
        validate=clip_refine.validate,
    ),
    "degla": Objective(
        loss=degla.loss,
        init_extra=degla.init_extra,
        update_extra=degla.update_extra,
        batch_fields=degla.batch_fields,
        embed=degla.embed,
        loss_from_embeddings=degla.loss_from_embeddings,
        grad_cache=True,
        validate=degla.validate,
        record_fields=("hard_negatives",),
    ),
    "uclip": Objective(
        loss=uclip.loss,
        init_extra=uclip.init_extra,
        embed=uclip.embed,
        validate=uclip.validate,
        loss_from_embeddings=uclip.loss_from_embeddings,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "proclip": Objective(
        loss=proclip.loss,
        init_extra=proclip.init_extra,
        embed=proclip.embed,
        validate=proclip.validate,
        loss_from_embeddings=proclip.loss_from_embeddings,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "dreamlip": Objective(
        loss=dreamlip.dreamlip_loss,
        batch_fields=dreamlip.dreamlip_fields,
        embed=dreamlip.dreamlip_embed,
        loss_from_embeddings=dreamlip.dreamlip_loss_from_embeddings,
        dense_only=dreamlip.dense_only,
        validate=dreamlip.validate,
        record_fields=("long_caption",),
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "alip": Objective(
        loss=alip.alip_loss,
        init_extra=alip.init_extra,
        update_extra=alip.update_extra,
        batch_fields=alip.alip_fields,
        validate=alip.validate,
        record_fields=("raw_caption",),
        embed=alip.alip_embed,
        loss_from_embeddings=alip.alip_objective_from_embeddings,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "protoclip": Objective(
        loss=protoclip.protoclip_loss,
        init_extra=protoclip.init_extra,
        update_extra=protoclip.update_extra,
        validate=protoclip.validate,
        embed=protoclip.protoclip_embed,
        loss_from_embeddings=protoclip.protoclip_loss_from_embeddings,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "clip_hard_negatives": Objective(
        loss=hard_negatives.clip_hard_negatives_loss,
        init_extra=hard_negatives.init_extra,
        batch_fields=hard_negatives.hard_negative_fields,
        embed=hard_negatives.hard_negative_embed,
        loss_from_embeddings=hard_negatives.clip_hard_negatives_loss_from_embeddings,
        dense_only=hard_negatives.dense_only,
        validate=hard_negatives.validate,
        record_fields=("hard_negatives",),
        grad_cache=True,
    ),
    "simcse": Objective(
        loss=simcse.simcse_objective_loss,
        embed=simcse.simcse_embed,
        loss_from_embeddings=simcse.simcse_loss_from_embeddings,
        dense_only=simcse.simcse_dense_only,
        validate=simcse.simcse_validate,
        grad_cache=True,
    ),
    "multicsr": Objective(
        loss=simcse.multicsr_objective_loss,
        init_extra=simcse.multicsr_init_extra,
        embed=simcse.multicsr_embed,
        validate=simcse.multicsr_validate,
        loss_from_embeddings=simcse.multicsr_loss_from_embeddings,
        implementations=("dense",),
        dense_only=lambda config: "the frozen encoder's false-negative mask is pairwise, over the whole B x C matrix",
        grad_cache=True,
    ),
    "cloc": Objective(
        loss=cloc.loss,
        batch_fields=cloc.region_fields,
        embed=cloc.embed,
        loss_from_embeddings=cloc.loss_from_embeddings,
        validate=cloc.validate,
        record_fields=("boxes", "region_captions"),
        grad_cache=True,
    ),
    "denseclip": Objective(
        loss=embed_then_loss(denseclip.embed, denseclip.loss_from_embeddings),
        init_extra=denseclip.init_extra,
        embed=denseclip.embed,
        loss_from_embeddings=denseclip.loss_from_embeddings,
        # No record_fields: its masks are the shapes' or PNGs beside your files
        # (training/method_validation.py OBJECTIVE_CHECKS)
        validate=denseclip.validate,
        grad_cache=True,
        implementations=ALL_IMPLEMENTATIONS,
    ),
    "xclip": Objective(
        loss=xclip.loss,
        batch_fields=xclip.negative_fields,
        embed=xclip.embed,
        loss_from_embeddings=xclip.loss_from_embeddings,
        validate=xclip.validate,
        grad_cache=True,
    ),
    "ccp": Objective(
        loss=ccp.ccp_objective_loss,
        init_extra=ccp.ccp_init_extra,
        update_extra=ccp.ccp_update_extra,
        validate=ccp.validate,
        embed=ccp.ccp_embed,
        loss_from_embeddings=ccp.ccp_loss_from_embeddings,
        grad_cache=True,
    ),
    "space2": Objective(
        loss=space2.loss,
        validate=space2.validate,
        implementations=("dense",),
        dense_only=lambda config: "the soft targets are pairwise tree scores over the whole 2B x 2B matrix",
    ),
    "climb": Objective(
        loss=climb.loss,
        init_extra=climb.init_extra,
        update_extra=climb.update_extra,
        validate=climb.validate,
        implementations=("dense",),
        dense_only=lambda config: "a masked language model has no term over the batch",
    ),
    "coconut": Objective(
        loss=embed_then_loss(coconut.embed, coconut.loss_from_embeddings),
        init_extra=coconut.init_extra,
        embed=coconut.embed,
        loss_from_embeddings=coconut.loss_from_embeddings,
        grad_cache=True,
        batch_fields=coconut.batch_fields,
        validate=coconut.validate,
        # no record_fields: class_label and replay come from the experience's source
        # (input_pipeline/class_incremental.py), not the data
        # CE and L_MM (the shared primitive) run anywhere; L_NSPT's mixed-source mask is a dense term of its own.
        implementations=ALL_IMPLEMENTATIONS,
        dense_only=lambda config: (
            "L_NSPT's positives are the teacher's embeddings and its negatives the student's, a mask per anchor "
            "over two sources of columns that the shared primitive does not express"
            if coconut.uses_teacher(config)
            else None
        ),
    ),
    "pcp": Objective(
        loss=pcp.loss,
        init_extra=pcp.init_extra,
        validate=pcp.validate,
        implementations=("dense",),
        dense_only=lambda config: "a masked language model has no term over the batch",
    ),
    # Language models (models/language_model.py): per-sequence terms only, so "dense" is the one implementation.
    "lm": Objective(loss=language.lm_loss, implementations=("dense",), dense_only=language.no_batch_term),
    "simctg": Objective(
        loss=language.lm_loss,
        validate=language.validate_simctg,
        implementations=("dense",),
        dense_only=language.no_batch_term,
    ),  # fmt: skip
    "salt": Objective(
        loss=salt.salt_loss,
        init_extra=salt.init_extra,
        update_extra=salt.update_extra,
        validate=salt.validate,
        implementations=("dense",),
        dense_only=language.no_batch_term,
    ),
    "phf": Objective(
        loss=phf.phf_loss, validate=phf.validate, implementations=("dense",), dense_only=language.no_batch_term
    ),
    # MEND (models/mend.py): a distiller for a frozen language model, per-sequence terms as well.
    "mend": Objective(
        loss=mend.mend_loss, validate=mend.validate, implementations=("dense",), dense_only=mend.no_batch_term
    ),
    # An editing denoiser's per-example noise errors (models/denoiser.py): no term across the batch either.
    "superedit": Objective(
        loss=superedit.superedit_loss,
        init_extra=superedit.init_extra,
        update_extra=superedit.update_extra,
        batch_fields=superedit.batch_fields,
        validate=superedit.validate,
        record_fields=("target", "hard_negatives"),
        implementations=("dense",),
        dense_only=superedit.no_batch_term,
    ),
    # Captioners (models/captioner.py) through a frozen CLIP run's embeddings: per-sequence terms as well.
    **{
        name: Objective(
            loss=captioning.caption_loss,
            validate=validate,
            implementations=("dense",),
            dense_only=captioning.no_batch_term,
        )
        for name, validate in (("limber", captioning.validate_limber), ("close", captioning.validate_close))
    },
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; set config.objective to one of {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name]


def objective_implementations(name: str, config) -> tuple[tuple[str, ...], str | None]:
    """(the loss implementations objective `name` runs on with `config`, why it is dense-only or None)."""
    objective = get_objective(name)
    reason = objective.dense_only(config)
    return (("dense",), reason) if reason else (objective.implementations, None)


def check_objective_options(config) -> None:
    """Raises ValueError, in one sentence naming the key and the fix, when config.objective does not
    support config.loss.implementation or config.microbatches > 1."""
    name = config.objective
    implementation = implementation_options(config)["implementation"]
    supported, reason = objective_implementations(name, config)
    if implementation not in supported:
        why = f" ({reason})" if reason else ""
        raise ValueError(
            f"config.loss.implementation={implementation!r} is not supported by objective {name!r}{why}; "
            f"set config.loss.implementation to one of {list(supported)}."
        )
    microbatches = config.get("microbatches", 1)
    if microbatches > 1 and not get_objective(name).grad_cache:
        raise ValueError(
            f"config.microbatches={microbatches} needs GradCache, which objective {name!r} does not support; "
            "set config.microbatches to 1."
        )
