"""Skipping unusable examples without holes in batches, and counting every skip and repair.

A source returns `cleaning.skipped(kind)` in place of an example it cannot use. `SkipAware` lets
such records pass the per-example transform untouched; `DropSkipped` then removes them from the
stream (before batching, so every batch is full) and adds their counts to the `problems` vector
[len(PROBLEMS)] of the next kept example. Skips and the kept example are consumed in one `next`
call, so nothing is pending between calls and the parent's iterator state is the whole state:
a restored iterator yields exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

import collections
import dataclasses

import grain
import numpy as np

from input_pipeline.cleaning import PROBLEM_INDEX, PROBLEMS

# This many unusable examples in a row means the data, not a few files, is broken.
MAX_CONSECUTIVE_SKIPS = 10_000


@dataclasses.dataclass
class SkipAware(grain.transforms.RandomMap):
    """Applies `transform` to usable records and passes skip records through; keeps `problems`."""

    transform: grain.transforms.RandomMap

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        if "skipped" in record:
            return record
        out = self.transform.random_map(record, rng)
        out["problems"] = record.get("problems", np.zeros(len(PROBLEMS), np.int32))
        return out


class DropSkipped(grain.IterDataset):
    """Yields only usable examples; the skips before each are added to its `problems` counts."""

    def __init__(self, parent: grain.IterDataset, max_consecutive_skips: int = MAX_CONSECUTIVE_SKIPS):
        super().__init__(parent)
        self._max_consecutive_skips = max_consecutive_skips

    def __iter__(self) -> grain.DatasetIterator:
        return _DropSkippedIterator(self._parent.__iter__(), self._max_consecutive_skips)

    def __str__(self) -> str:
        return "DropSkipped"


class _DropSkippedIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, max_consecutive_skips: int):
        super().__init__(parent)
        self._max_consecutive_skips = max_consecutive_skips

    def __next__(self) -> dict:
        skips: collections.Counter[str] = collections.Counter()
        record = next(self._parent)
        while "skipped" in record:
            skips[record["skipped"]] += 1
            if skips.total() >= self._max_consecutive_skips:
                kinds = ", ".join(f"{n} {kind}" for kind, n in skips.most_common())
                raise ValueError(
                    f"The last {skips.total()} examples read were all unusable ({kinds}); check the training "
                    "data files and config.data's path and column keys."
                )
            record = next(self._parent)
        problems = record["problems"].copy()
        for kind, n in skips.items():
            problems[PROBLEM_INDEX[f"skipped_{kind}"]] += n
        return {**record, "problems": problems}

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state) -> None:
        self._parent.set_state(state)


class ProblemCounter:
    """Takes the `problems` field [batch, P] off host batches and sums it until the next `interval_metrics`."""

    def __init__(self):
        self._counts = np.zeros(len(PROBLEMS), np.int64)

    def take(self, batch: dict) -> dict:
        batch = dict(batch)
        self._counts += np.asarray(batch.pop("problems")).sum(axis=0)
        return batch

    def interval_metrics(self) -> dict[str, int]:
        """{"data_skipped": n, "data_repaired": n, "data_<problem>": n for each seen} since the last call."""
        counts, self._counts = self._counts, np.zeros_like(self._counts)
        named = dict(zip(PROBLEMS, counts.tolist(), strict=True))
        metrics = {
            "data_skipped": sum(c for name, c in named.items() if name.startswith("skipped_")),
            "data_repaired": sum(c for name, c in named.items() if name.startswith("repaired_")),
        }
        metrics.update({f"data_{name}": c for name, c in named.items() if c})
        return metrics
