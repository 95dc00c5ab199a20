"""The diffusion process of an ε-prediction denoiser (SuperEdit's InstructPix2Pix, METHODS.md §28): the cosine
noise schedule, noising a clean image, and deterministic DDIM sampling. Pure functions of arrays."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

TIMESTEPS = 1000  # T: the discrete steps of the forward process, t in [0, T)


def alpha_bars(timesteps: int = TIMESTEPS) -> jax.Array:
    """float32 [T]: ᾱ_t, the signal share of step t under the cosine schedule (Nichol & Dhariwal 2021, s = 0.008),
    clipped so that β_t <= 0.999 as theirs is."""
    s = 0.008
    f = lambda t: jnp.cos((t / timesteps + s) / (1 + s) * jnp.pi / 2) ** 2  # noqa: E731
    steps = jnp.arange(timesteps + 1, dtype=jnp.float32)
    betas = jnp.clip(1 - f(steps[1:]) / f(steps[:-1]), 0.0, 0.999)
    return jnp.cumprod(1 - betas)


def add_noise(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """z_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε for images x0 [B, H, W, C], noise ε like it, steps t int [B]."""
    a = alpha_bars()[t][:, None, None, None]
    return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * noise


def ddim_sample(
    predict_noise: Callable[[jax.Array, jax.Array], jax.Array],
    noise: jax.Array,
    steps: int,
    bounds: tuple[jax.Array, jax.Array],
) -> jax.Array:
    """DDIM (η = 0) from x_T = `noise` [B, H, W, C] over `steps` evenly spaced steps of T: `predict_noise(z, t)`
    gives ε̂ for z [B, H, W, C] at steps t int [B]. Each step's clean estimate is clipped to `bounds` (low, high,
    broadcast against an image: the range of valid pixels) before the next z is made from it."""
    a_bar = alpha_bars()
    times = jnp.linspace(TIMESTEPS - 1, 0, steps).round().astype(jnp.int32)
    previous = jnp.concatenate([times[1:], jnp.array([-1], jnp.int32)])

    def step(z, ts):
        t, t_prev = ts
        a, a_prev = a_bar[t], jnp.where(t_prev >= 0, a_bar[jnp.maximum(t_prev, 0)], 1.0)
        eps = predict_noise(z, jnp.full(z.shape[:1], t))
        x0 = jnp.clip((z - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a), *bounds)
        eps = (z - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)  # the noise that the clipped estimate implies
        return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps, None

    z, _ = jax.lax.scan(step, noise, (times, previous))
    return z
