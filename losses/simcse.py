"""SimCSE (Gao, Yao, Chen 2021) and MultiCSR's training stage (Wang et al. 2024): text-only InfoNCE.

Unsupervised (`config.simcse.mode = "unsup"`): each sentence goes through the text tower twice in
training mode, and the two dropout masks make the two views; sentence i must pick its second view
among the batch's second views:
    l_i = -log exp(cos(h_i, h_i+)/tau) / sum_j exp(cos(h_i, h_j+)/tau),   tau = 0.05.
Supervised ("sup"): triples (x, x+ = entailment, x- = contradiction); every in-batch entailment and
every in-batch contradiction is a candidate, and `hard_negative_weight` is added (as a log weight)
to the anchor's own contradiction logit only, as SimCSE's `--hard_negative_weight` (0 = weight 1).
The batch is stacked into one forward pass, so every row draws its own dropout mask.
Training uses the text tower's training-only head when the model has one (`model.text_mlp_head`),
SimCSE's `--mlp_only_train`; evaluation reads the embedding before it.

MultiCSR stage 3 (objective "multicsr"): a frozen encoder (the params this run starts from, i.e. the
run of `init_from`, normally an unsupervised SimCSE run) marks in-batch candidates whose frozen
cosine to the anchor exceeds `threshold` (0.95) as false negatives (losses/false_negatives.py).
!! Paper vs official code: the paper leaves false negatives out of the contrastive softmax; the
official code multiplies their logits by a weight of 0 (so each still adds exp(0) = 1 to the
denominator) and trains with a per-entry binary cross-entropy on the softmax probabilities,
mean over all B x C entries of -[y log p + (1 - y) log(1 - p)], instead of cross-entropy. The default
here is the paper's (`mask_mode = "exclude"`, `loss = "ce"`); `mask_mode = "zero"` and
`loss = "bce"` give the code's behaviour, for reproducing its numbers.

Implementations: SimCSE's cross-entropy runs on losses.contrastive.contrastive_loss in
config.loss.implementation (one direction; the batch's contradictions as a shared `text_bank`, row-local
work). A non-zero `hard_negative_weight` (a per-pair logit offset) and all of MultiCSR (a frozen
encoder's pairwise mask, not a group or a margin; the code's "zero" mask and BCE) need the whole
similarity matrix: dense only. GradCache embeds every view per example; with dropout, micro-batches
draw their own masks (fresh dropout, not the full batch's draw).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.extra_negatives import NegativeBank
from losses.false_negatives import MASK_MODES, frozen_false_negatives, mask_logits

MODES = ("unsup", "sup")
LOSSES = ("ce", "bce")
BCE_LOG_FLOOR = -100.0  # torch.nn.BCELoss clamps its logs at -100, which the official code relies on


def simcse_logits(
    anchors: jax.Array,
    positives: jax.Array,
    temperature: float,
    negatives: jax.Array | None = None,
    hard_negative_weight: float = 0.0,
) -> jax.Array:
    """[B, D] anchors, [B, D] positives, optional [B, D] negatives (all L2-normalised) -> [B, C] logits,
    C = B (+ B): cos / tau against every positive (then every negative), plus `hard_negative_weight`
    on each anchor's own negative."""
    candidates = positives if negatives is None else jnp.concatenate([positives, negatives], axis=0)
    logits = anchors @ candidates.T / temperature
    if negatives is not None:
        batch = anchors.shape[0]
        own_negative = jnp.arange(batch)[:, None] + batch == jnp.arange(2 * batch)[None, :]
        logits = logits + hard_negative_weight * own_negative
    return logits


def simcse_loss(
    logits: jax.Array,
    false_negatives: jax.Array | None = None,
    mask_mode: str = "exclude",
    loss: str = "ce",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """[B, C] logits whose label for row i is column i -> (scalar loss, metrics).

    `false_negatives` [B, C] bool (never on column i) are excluded or zeroed (`mask_mode`); `loss` =
    "ce" (cross-entropy) or "bce" (MultiCSR code: mean binary cross-entropy of every softmax entry).
    """
    if loss not in LOSSES:
        raise ValueError(f"Unknown SimCSE loss {loss!r}; use one of {list(LOSSES)}.")
    batch = logits.shape[0]
    labels = jnp.arange(batch)
    if false_negatives is not None:
        logits = mask_logits(logits, false_negatives, mask_mode)
    log_probs = jax.nn.log_softmax(logits, axis=1)
    if loss == "ce":
        value = -jnp.mean(log_probs[labels, labels])
    else:
        target = labels[:, None] == jnp.arange(logits.shape[1])[None, :]
        log_not = jnp.log1p(-jnp.exp(log_probs))
        entries = jnp.where(target, jnp.maximum(log_probs, BCE_LOG_FLOOR), jnp.maximum(log_not, BCE_LOG_FLOOR))
        value = -jnp.mean(entries)
    metrics = {"accuracy": jnp.mean((jnp.argmax(logits, axis=1) == labels).astype(jnp.float32))}
    if false_negatives is not None:
        metrics["false_negatives_masked"] = jnp.mean(jnp.sum(false_negatives, axis=1).astype(jnp.float32))
    return value, metrics


def encode_train(params, tokens: jax.Array, rng: jax.Array, *, model) -> jax.Array:
    """int32 [N, L] -> [N, D] normalised text embeddings in training mode (dropout, training-only head)."""
    out = model.apply({"params": params}, tokens, deterministic=False, method=model.encode_text, rngs={"dropout": rng})
    return out["text_embedding"]


def _views(params, batch, rng, mode: str, *, model) -> tuple[jax.Array, jax.Array, jax.Array | None, list[jax.Array]]:
    """(anchors, positives, negatives or None, token arrays in order) of one stacked training forward."""
    if mode == "unsup":
        parts = [batch["text"], batch["text"]]
    else:
        parts = [batch["text"], batch["positive"]] + ([batch["negative"]] if "negative" in batch else [])
    embeddings = jnp.split(encode_train(params, jnp.concatenate(parts), rng, model=model), len(parts))
    return embeddings[0], embeddings[1], embeddings[2] if len(parts) == 3 else None, parts


def simcse_dense_only(config) -> str | None:
    """Why config.simcse makes the objective dense-only, or None."""
    options = config.simcse
    if options.mode == "sup" and options.hard_negative_weight:
        return "simcse.hard_negative_weight offsets single logits of the whole similarity matrix"
    return None


def _embed(params, batch, rng, mode: str, *, model) -> dict[str, jax.Array]:
    anchors, positives, negatives, _ = _views(params, batch, rng, mode, model=model)
    embeddings = {"anchor": anchors, "positive": positives}
    return embeddings if negatives is None else embeddings | {"negative": negatives}


def simcse_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example [B, D] training-mode embeddings of the anchors, positives (and negatives)."""
    del extra
    return _embed(params, batch, rng, config.simcse.mode, model=model)


def simcse_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """Unsupervised or supervised SimCSE from simcse_embed's embeddings (see the module docstring)."""
    del params, batch, extra, rng, model
    options = config.simcse
    anchors, positives, negatives = embeddings["anchor"], embeddings["positive"], embeddings.get("negative")
    if simcse_dense_only(config):
        logits = simcse_logits(anchors, positives, options.temperature, negatives, options.hard_negative_weight)
        value, metrics = simcse_loss(logits)
    else:
        bank = None if negatives is None else NegativeBank(negatives)
        logit_scale = jnp.asarray(-math.log(options.temperature), anchors.dtype)
        value, primitive_metrics = contrastive_loss(
            anchors, positives, logit_scale, directions="image_to_text", text_bank=bank,
            **implementation_options(config),
        )  # fmt: skip
        metrics = {"accuracy": primitive_metrics["i2t_accuracy"]}
    metrics["positive_cosine"] = jnp.mean(jnp.sum(anchors * positives, axis=1))
    return value, metrics


def simcse_objective_loss(params, batch, extra, rng, *, model, config):
    """Unsupervised or supervised SimCSE on the batch's text fields (see the module docstring)."""
    embeddings = simcse_embed(params, batch, extra, rng, model=model, config=config)
    return simcse_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def multicsr_init_extra(params, config, inputs=None) -> dict:
    """The frozen encoder: a copy of the params the run starts from (init_from's, normally unsup SimCSE)."""
    del config, inputs
    return {"frozen": jax.tree.map(jnp.copy, params)}


def multicsr_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """simcse_embed's views and the frozen encoder's [B, D] embeddings of the same texts (frozen_*)."""
    anchors, positives, negatives, parts = _views(params, batch, rng, config.multicsr.mode, model=model)
    embeddings = {"anchor": anchors, "positive": positives} | ({} if negatives is None else {"negative": negatives})
    frozen_out = model.apply({"params": extra["frozen"]}, jnp.concatenate(parts), method=model.encode_text)
    frozen = jnp.split(jax.lax.stop_gradient(frozen_out["text_embedding"]), len(parts))
    return embeddings | {
        f"frozen_{name}": x for name, x in zip(("anchor", "positive", "negative")[: len(parts)], frozen, strict=True)
    }


def multicsr_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """SimCSE whose in-batch false negatives, by the frozen encoder's cosine, are masked (module docstring)."""
    del params, batch, extra, rng, model
    options = config.multicsr
    anchors, positives, negatives = embeddings["anchor"], embeddings["positive"], embeddings.get("negative")
    logits = simcse_logits(anchors, positives, options.temperature, negatives, options.hard_negative_weight)
    candidates = [embeddings[f"frozen_{name}"] for name in ("positive", "negative") if f"frozen_{name}" in embeddings]
    is_positive = jnp.arange(anchors.shape[0])[:, None] == jnp.arange(logits.shape[1])[None, :]
    false_negatives = frozen_false_negatives(
        embeddings["frozen_anchor"], jnp.concatenate(candidates), options.threshold, is_positive
    )
    value, metrics = simcse_loss(logits, false_negatives, options.mask_mode, options.loss)
    metrics["positive_cosine"] = jnp.mean(jnp.sum(anchors * positives, axis=1))
    return value, metrics


TRIPLE_DATASETS = ("nli", "shape_sentences")  # the data names whose batches hold "positive" (and "negative")


def _validate_views(config, section: str) -> None:
    options = config[section]
    if options.mode not in MODES:
        raise ConfigError(f"Unknown config.{section}.mode {options.mode!r}; use one of {list(MODES)}.")
    if options.mode == "sup" and config.data.name not in TRIPLE_DATASETS:
        raise ConfigError(
            f"config.{section}.mode='sup' needs (sentence, entailment[, contradiction]) triples, which "
            f"config.data.name={config.data.name!r} does not hold; set it to 'nli' (with config.data.path) "
            "or 'shape_sentences'."
        )
    if options.temperature <= 0:
        raise ConfigError(f"config.{section}.temperature must be positive, not {options.temperature!r}.")


def simcse_validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a SimCSE option or data it cannot train on."""
    _validate_views(config, "simcse")


def multicsr_validate(config) -> None:
    """SimCSE's checks on config.multicsr, its masking options, and the trained frozen encoder it needs."""
    _validate_views(config, "multicsr")
    options = config.multicsr
    if options.mask_mode not in MASK_MODES:
        raise ConfigError(f"Unknown config.multicsr.mask_mode {options.mask_mode!r}; use one of {list(MASK_MODES)}.")
    if options.loss not in LOSSES:
        raise ConfigError(f"Unknown config.multicsr.loss {options.loss!r}; use one of {list(LOSSES)}.")
    if not config.init_from.workdir:
        raise ConfigError(
            "MultiCSR masks false negatives with a trained frozen encoder: set config.init_from.workdir to an "
            "unsupervised SimCSE run and config.init_from.param_prefixes to ('text_tower', 'text_projection')."
        )


def multicsr_objective_loss(params, batch, extra, rng, *, model, config):
    """SimCSE whose in-batch false negatives, by the frozen encoder's cosine, are masked (module docstring)."""
    embeddings = multicsr_embed(params, batch, extra, rng, model=model, config=config)
    return multicsr_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)
