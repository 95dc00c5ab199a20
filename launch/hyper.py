"""Sweep algebra for a config's `get_hyper(hyper)`, in the style of big_vision and XManager's `hyper`.

A sweep is a list of runs; a run is a dict {"config.key.path": value} of config overrides:

    def get_hyper(hyper):
        return hyper.product([
            hyper.sweep("config.optimizer.learning_rate", [1e-3, 2e-3]),
            hyper.zipit([hyper.sweep("config.batch_size", [64, 128]), hyper.sweep("config.total_steps", [2400, 1200])]),
        ])  # 4 runs

`hyper.product([])` is one run with no overrides (the config as it is).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

Run = dict[str, Any]


def sweep(name: str, values: Iterable[Any]) -> list[Run]:
    """One run per value of the config key `name` ("config.a.b" or "a.b")."""
    return [{name: value} for value in values]


def discrete(values: Iterable[Any]) -> list[Any]:
    """The values as a list (XManager spells a finite domain this way: sweep(name, discrete([...])))."""
    return list(values)


def fixed(name: str, value: Any, length: int = 1) -> list[Run]:
    """`length` runs that all set `name` to `value` (to zip or multiply with other sweeps)."""
    return [{name: value} for _ in range(length)]


def _merge(parts: Sequence[Run], how: str) -> Run:
    merged: Run = {}
    for part in parts:
        repeated = sorted(set(merged) & set(part))
        if repeated:
            raise ValueError(f"hyper.{how} sets {repeated} in more than one of its sweeps; set each key in one only.")
        merged.update(part)
    return merged


def product(sweeps: Sequence[list[Run]]) -> list[Run]:
    """Every combination of one run from each sweep (the first sweep varies slowest)."""
    return [_merge(parts, "product") for parts in itertools.product(*sweeps)]


def zipit(sweeps: Sequence[list[Run]]) -> list[Run]:
    """Run i of every sweep merged into one run; all sweeps must have the same length."""
    lengths = [len(s) for s in sweeps]
    if len(set(lengths)) > 1:
        raise ValueError(f"hyper.zipit needs sweeps of equal length, got lengths {lengths}; make them equal.")
    return [_merge(parts, "zipit") for parts in zip(*sweeps, strict=True)]


def chainit(sweeps: Sequence[list[Run]]) -> list[Run]:
    """The runs of every sweep, one sweep after another."""
    return [dict(run) for s in sweeps for run in s]
