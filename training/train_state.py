"""The train state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
    """`step` int32 scalar; `params` and `opt_state` pytrees; `extra` is the objective's
    non-gradient state (teachers, EMAs, banks); `rng` a raw uint32[2] PRNG key."""

    step: jax.Array
    params: Any
    opt_state: Any
    extra: Any
    rng: jax.Array
