"""AdamW with linear warmup + cosine decay, gradient clipping and a weight-decay mask."""

from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    o = config.optimizer
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=o.learning_rate,
        warmup_steps=o.warmup_steps,
        decay_steps=max(config.total_steps, o.warmup_steps + 1),
        end_value=o.learning_rate * o.end_learning_rate_factor,
    )


def weight_decay_mask(params) -> dict:
    """Decay matrices and embeddings only: not biases, norm scales or the temperature (scalars, vectors)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    o = config.optimizer
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip_norm),
        optax.adamw(
            learning_rate_schedule(config),
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            weight_decay=o.weight_decay,
            mask=weight_decay_mask,
        ),
    )
