"""One optimisation step, a pure function of (state, batch)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from input_pipeline import transforms
from losses.objectives import Objective
from training.grad_cache import grad_cache_value_and_grad
from training.train_state import TrainState


def keep_unless(ok: jax.Array, new: Any, old: Any) -> Any:
    """`new` where the bool scalar `ok` holds, else `old`, leaf by leaf (same structure, shapes, dtypes)."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


# normalize_image of every uint8 value, per channel: float32 [256, 3].
_PIXEL_TABLE = transforms.normalize_image(np.arange(256, dtype=np.uint8)[:, None].repeat(3, axis=1))


def normalize_pixels(images: jax.Array) -> jax.Array:
    """uint8 [..., 3] -> float32 [..., 3], on the device and bit-identical to the host's
    transforms.normalize_image: a lookup in the table of its 768 possible values. (XLA turns the
    division into a multiplication by the reciprocal, which rounds differently: figures measured with
    host normalisation would move.) Costs as much as the arithmetic on the CPU (BENCHMARKS.md)."""
    return jnp.asarray(_PIXEL_TABLE)[images.astype(jnp.int32), jnp.arange(3)]


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
    """With config.microbatches = k > 1 the gradient is accumulated over k micro-batches by GradCache
    (training/grad_cache.py), equal to the full-batch gradient.

    A step whose loss or any gradient is non-finite (or whose gradient norm overflows) is skipped: params,
    opt_state and extra stay as they were (step and rng still advance, so the next batch and key are fresh)
    and `skipped` is 1."""
    for key in ("image", "video", "target"):  # "target": an editing pair's edited image (SuperEdit)
        if key in batch and batch[key].dtype == jnp.uint8:  # pipeline batches; tests may pass floats
            batch = dict(batch, **{key: normalize_pixels(batch[key])})
    rng, step_rng = jax.random.split(state.rng)

    def loss_fn(params):
        return objective.loss(params, batch, state.extra, step_rng, model=model, config=config)

    microbatches = getattr(config, "microbatches", 1)  # tests may pass config=None
    if microbatches > 1:
        (loss, metrics), grads = grad_cache_value_and_grad(
            objective, state.params, batch, state.extra, step_rng, model=model, config=config, microbatches=microbatches
        )
    else:
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    aux = metrics.pop("aux", None)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = objective.update_extra(state.extra, params, aux)
    # The gradient norm is finite exactly when every gradient element is (and none exceeds ~1e19, whose square
    # overflows float32: such a step is skipped too). One norm the metrics need anyway; a check per leaf made
    # XLA:CPU's optimised step 5x longer and its compile 4.6x slower (tiny towers of 6 blocks on 8 devices).
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    params, opt_state, extra = keep_unless(
        finite, (params, opt_state, extra), (state.params, state.opt_state, state.extra)
    )
    metrics = dict(
        metrics,
        loss=loss,
        grad_norm=grad_norm,
        learning_rate=schedule(state.step),
        skipped=jnp.logical_not(finite).astype(jnp.int32),
    )
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, extra=extra, rng=rng)
    return new_state, jax.tree.map(jnp.asarray, metrics)
