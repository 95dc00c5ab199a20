"""SALT (Rawat et al. 2024, METHODS.md §24): a language model that learns from a small language model's soft
labels early in training, then from the data alone.

For the first `kd_steps` steps the loss is (1 - w) CE(y, p) + w CE(q, p), q the frozen small model's next-token
distribution and p the model's; after them it is CE(y, p), next-token cross-entropy alone. kd_steps >= the
run's total steps distils throughout (the paper's "KD all the way"); w = 0 is plain maximum likelihood.
The small model is another decoder run of this project (config.salt.teacher_workdir; its sizes are
config.salt.teacher, checked against that run before jax starts); its params ride in the train state's `extra`,
read on the host by training/objective_inputs.py, with a counter of the steps taken.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError
from losses.language import next_token_loss
from losses.pacing import count_step
from models.language_model import DecoderLM


def teacher_model(config: ml_collections.ConfigDict, vocab_size: int) -> DecoderLM:
    """The small model of config.salt.teacher (width, depth, heads, max_len, mlp_dim), in float32."""
    t = config.salt.teacher
    return DecoderLM(
        vocab_size=vocab_size, width=t.width, depth=t.depth, heads=t.heads, max_len=t.max_len, mlp_dim=t.mlp_dim
    )


def distillation_loss(logits: jax.Array, teacher_logits: jax.Array, targets: jax.Array) -> jax.Array:
    """logits, teacher_logits [B, L, V], targets [B, L] int (0 = no target) -> the mean over real targets of
    CE(q, p) = -sum_v q_v log p_v, q = softmax(teacher_logits), p = softmax(logits)."""
    weights = (targets != 0).astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    q = jax.nn.softmax(teacher_logits.astype(jnp.float32), axis=-1)
    per_token = -jnp.sum(q * log_p, axis=-1)
    return jnp.sum(per_token * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def kd_weight(step: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """w while `step` (steps taken before this one) < config.salt.kd_steps, then 0."""
    return jnp.where(step < config.salt.kd_steps, config.salt.weight, 0.0)


def salt_loss(params, batch, extra, rng, *, model, config):
    """(1 - w) next-token CE + w CE to the teacher on batch["text"]; metrics: lm_loss (the CE term), perplexity
    (of it), kd_loss, kd_weight, tokens."""
    del rng
    tokens = batch["text"]
    out, _ = model.apply({"params": params}, tokens[:, :-1])
    teacher_out, _ = teacher_model(config, model.vocab_size).apply({"params": extra["teacher"]}, tokens[:, :-1])
    targets = tokens[:, 1:]
    ce, count = next_token_loss(out["logits"], targets)
    kd = distillation_loss(out["logits"], jax.lax.stop_gradient(teacher_out["logits"]), targets)
    weight = kd_weight(extra["step"], config)
    loss = (1.0 - weight) * ce + weight * kd
    return loss, {"lm_loss": ce, "perplexity": jnp.exp(ce), "kd_loss": kd, "kd_weight": weight, "tokens": count}


def init_extra(params, config, inputs=None):
    """The teacher's params (inputs["teacher"], training/objective_inputs.py) and the steps taken (0)."""
    del params, config
    if not inputs or "teacher" not in inputs:
        raise ValueError(
            "SALT needs the small model's params: make them with training.objective_inputs.prepare_inputs and pass "
            "them to init_extra."
        )
    return {"teacher": inputs["teacher"], "step": jnp.zeros((), jnp.int32)}


update_extra = count_step  # the steps taken: the distillation window's clock


def validate(config: ml_collections.ConfigDict) -> None:
    s = config.salt
    if not 0.0 <= s.weight <= 1.0:
        raise ConfigError(f"config.salt.weight={s.weight} is outside [0, 1] (the paper's toy uses 0.5); set it there.")
    if s.kd_steps < 0:
        raise ConfigError(f"config.salt.kd_steps={s.kd_steps} is negative; set it to 0 or more.")
    if not s.teacher_workdir:
        raise ConfigError(
            "SALT distils from a trained small language model; set config.salt.teacher_workdir to the --workdir of "
            "a configs/salt.py:stage=teacher run."
        )
