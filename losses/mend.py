"""MEND (Li et al. 2024, METHODS.md §23): meta demonstration distillation. A distiller turns the demonstrations D
into k vectors S_D (models/mend.py); a frozen language model reads [S_D; x] and is taught to answer as it does
from [D; x].

    L = ce_weight * CE(y | S_D, x) + kd_weight * KL( P_LM(. | D, x_<t) || P_LM(. | S_D, x_<t) )

The KL (temperature 1) is over every next-token position of x and y, the teacher being the same frozen language
model reading D itself (in-context learning); the CE is over the answer y's pieces (and EOS). The paper's stage 2
(meta-training) is ce_weight = kd_weight = 1; its stage 1 on generic text is the KL alone (ce_weight 0), here on
the tasks. Only the distiller and its projection train (configs/mend.py freezes "lm").

Batch (input_pipeline/icl_tasks.py MendTransform): "text" [B, L+1] (BOS, D, x, y, EOS), "query" [B, Q] (BOS, x,
y, EOS), "demos" [B, Ld], "demo_length" [B], "answer_start" [B]. Per sequence, with no term over the batch: any
config.loss.implementation gives the same loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError

DISTILLER_INITS = ("lm", "random")  # a copy of the language model (models/mend.py), or a fresh one


def teacher_logits(full_logits: jax.Array, demo_length: jax.Array, length: int) -> jax.Array:
    """The in-context logits [B, length, V] that predict query tokens 1..length: full_logits [B, L, V] of
    (BOS, D, x, y, ...) at positions demo_length + j (the language model's input (BOS, D) ends at demo_length)."""
    positions = demo_length[:, None] + jnp.arange(length)
    positions = jnp.minimum(positions, full_logits.shape[1] - 1)  # past the text: padding, masked by the targets
    return jnp.take_along_axis(full_logits, positions[..., None], axis=1)


def kl_divergence(teacher: jax.Array, student: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean over weighted positions of KL(softmax(teacher) || softmax(student)); logits [B, T, V], weights [B, T]."""
    log_p, log_q = jax.nn.log_softmax(teacher, axis=-1), jax.nn.log_softmax(student, axis=-1)
    per_position = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return jnp.sum(per_position * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def answer_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean next-token CE of targets [B, T] under logits [B, T, V] over the weighted positions [B, T]."""
    log_q = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_q, targets[..., None], axis=-1)[..., 0]
    return -jnp.sum(picked * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def mend_loss(params, batch, extra, rng, *, model, config):
    """See the module docstring; metrics: answer_loss (the CE), kd_loss (the KL), answer_accuracy (% of answers
    whose first piece is the student's argmax), tokens (the query's targets)."""
    del extra, rng
    query, text = batch["query"], batch["text"]
    student, _ = model.apply({"params": params}, batch["demos"], batch["demo_length"], query[:, :-1])
    full, _ = model.apply({"params": params}, text[:, :-1], method=model.full)
    teacher = jax.lax.stop_gradient(teacher_logits(full["logits"], batch["demo_length"], query.shape[1] - 1))
    targets = query[:, 1:]
    real = (targets != 0).astype(jnp.float32)
    position = jnp.arange(targets.shape[1])[None, :]
    answer = real * (position + 1 >= batch["answer_start"][:, None])  # y's pieces and EOS
    ce = answer_cross_entropy(student["logits"], targets, answer)
    kd = kl_divergence(teacher, student["logits"], real)
    c = config.mend
    first = position + 1 == batch["answer_start"][:, None]
    right = jnp.sum(first * (jnp.argmax(student["logits"], axis=-1) == targets), axis=-1)
    metrics = {"answer_loss": ce, "kd_loss": kd, "answer_accuracy": 100.0 * jnp.mean(right), "tokens": real.sum()}
    return c.ce_weight * ce + c.kd_weight * kd, metrics


def no_batch_term(config) -> str:
    return "MEND's loss is per sequence, with no term over the batch to tile or ring"


def validate(config: ml_collections.ConfigDict) -> None:
    c = config.mend
    if c.virtual_tokens < 1:
        raise ConfigError(
            f"config.mend.virtual_tokens must be at least 1 (the paper's toy uses 4), not {c.virtual_tokens}."
        )
    if c.ce_weight < 0 or c.kd_weight < 0 or c.ce_weight + c.kd_weight == 0:
        raise ConfigError(
            f"config.mend.ce_weight ({c.ce_weight}) and kd_weight ({c.kd_weight}) must be >= 0 and not both 0 "
            "(MEND's meta-training uses 1 and 1); set them so."
        )
    if c.distiller_init not in DISTILLER_INITS:
        raise ConfigError(
            f"Unknown config.mend.distiller_init {c.distiller_init!r}; use one of {list(DISTILLER_INITS)}."
        )
    sizes = lambda d: (d.width, d.depth, d.heads, d.max_len)  # noqa: E731
    d, lm = c.distiller, config.model.decoder
    if c.distiller_init == "lm" and sizes(d) != sizes(lm):
        raise ConfigError(
            "config.mend.distiller_init='lm' copies the language model, so config.mend.distiller's width, depth, heads "
            f"and max_len must be config.model.decoder's ({lm.width}, {lm.depth}, {lm.heads}, {lm.max_len}); set "
            "them so, or distiller_init='random'."
        )
    if not c.lm_workdir:
        raise ConfigError(
            "MEND distils demonstrations for a trained language model; set config.mend.lm_workdir to the --workdir "
            "of a configs/mend.py:stage=icl run."
        )
