"""The clamp every softmax objective applies to the learnable log temperature (CLIP, open_clip: s <= 100)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MAX_LOGIT_SCALE = math.log(100.0)  # not jnp.log: an op at import would start jax's backend


def clamped_logit_scale(logit_scale: jax.Array) -> jax.Array:
    """log s clipped to [0, log 100]."""
    return jnp.clip(logit_scale, 0.0, MAX_LOGIT_SCALE)
