"""CLIMB's pacing functions (Diehl Martinez et al. 2023, METHODS.md §26): how much of the data or the vocabulary a
training step may use.

`pacing(step, schedule)` is the difficulty d in [first, 1] at a step: `first` until `start` of the run's steps,
then rising to 1 at `end` along one of CLIMB's curves (src/data_curriculum/pacing_fn.py: linear, quad, root, exp
and log with c = 10, and `step`, a jump at `end`), 1 after. It takes NumPy or jax numbers (`xp`), so that the loss
(the vocabulary curriculum, losses/climb.py) and the host pipeline (the data curriculum,
input_pipeline/curriculum.py) read the same curve. `count_step` is the clock such a loss reads: the `update_extra`
of objectives whose loss depends on the step (CLIMB's curricula, SALT's distillation window), so that it stays pure.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

PACING_CURVES = ("linear", "quad", "root", "exp", "log", "step")
_C = 10.0  # CLIMB's growth constant of the exp and log curves


def count_step(extra: dict, params, aux) -> dict:
    """An objective's `update_extra`: extra["step"] + 1 after each optimizer step (the rest of extra kept)."""
    del params, aux
    return {**extra, "step": extra["step"] + 1}


class Schedule(NamedTuple):
    """A pacing function over `total_steps`: `first` (the difficulty d until `start` x total_steps) rising along
    `curve` to 1 at `end` x total_steps."""

    curve: str
    total_steps: int
    start: float = 0.0625
    end: float = 0.875
    first: float = 0.1


def pacing(step, schedule: Schedule, xp=np):
    """Difficulty d in [first, 1] at `step` (a number or array; `xp` is np or jax.numpy)."""
    s = schedule
    begin, stop = s.start * s.total_steps, s.end * s.total_steps
    span = max(stop - begin, 1.0)
    rise = 1.0 - s.first
    t = xp.maximum(xp.asarray(step, dtype=xp.float32) - begin, 0.0)  # steps since the rise began
    if s.curve == "linear":
        d = s.first + rise * t / span
    elif s.curve == "quad":
        d = s.first + rise * (t / span) ** 2
    elif s.curve == "root":
        d = s.first + rise * xp.sqrt(t / span)
    elif s.curve == "exp":
        d = s.first + rise * (xp.exp(_C * t / span) - 1.0) / math.expm1(_C)
    elif s.curve == "log":
        d = s.first + rise * (1.0 + xp.log(t / span + math.exp(-_C)) / _C)
    elif s.curve == "step":
        d = xp.where(xp.asarray(step, dtype=xp.float32) < stop, s.first, 1.0)
    else:
        raise ValueError(f"Unknown pacing curve {s.curve!r}; use one of {list(PACING_CURVES)}.")
    return xp.minimum(d, 1.0)
