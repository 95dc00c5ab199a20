"""One optimisation step, a pure function of (state, batch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from losses.objectives import Objective
from training.train_state import TrainState


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model,
    objective: Objective,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    config: ml_collections.ConfigDict,
) -> tuple[TrainState, dict[str, jax.Array]]:
    rng, step_rng = jax.random.split(state.rng)

    def loss_fn(params):
        return objective.loss(params, batch, state.extra, step_rng, model=model, config=config)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    aux = metrics.pop("aux", None)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = objective.update_extra(state.extra, params, aux)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads), learning_rate=schedule(state.step))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, extra=extra, rng=rng)
    return new_state, jax.tree.map(jnp.asarray, metrics)
