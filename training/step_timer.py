"""Training throughput per logging interval, as the trainer logs it: steps/s of training alone, and the share
of that time the loop waited for its input pipeline.

Evaluation, checkpoint writes and the first step's compilation are paused out, as big_vision's chrono does:
counted in, the interval holding an eval, a checkpoint or the compile reads as a slow step rate, and the spread
says nothing about the step (the quick start on an H200 logged 28-61 steps/s). The data-wait share says which side
bounds a run: JAX dispatches steps asynchronously, so an input-bound loop spends its time in `next(data)`, a
device-bound one runs ahead and waits at the interval's metric read instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


class StepTimer:
    """Times the training steps between two `interval` calls (clock: seconds, monotonic)."""

    def __init__(self, step: int, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self.restart(step)

    def restart(self, step: int) -> None:
        """Starts a new interval after `step`, dropping what was timed since the last one."""
        self._start, self._step = self._clock(), step
        self._paused = self._data_wait = 0.0

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Time inside is not training time (evaluation, checkpoint writes)."""
        return self._adding_time_to("_paused")

    def waiting_for_data(self) -> contextlib.AbstractContextManager[None]:
        """Time inside is training time spent waiting for the next batch."""
        return self._adding_time_to("_data_wait")

    @contextlib.contextmanager
    def _adding_time_to(self, total: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            setattr(self, total, getattr(self, total) + self._clock() - start)

    def interval(self, step: int) -> dict[str, float]:
        """{"steps_per_s", "data_wait_fraction"} of the steps since the last call or restart, up to `step`
        ({} when there were none); starts the next interval."""
        steps, training = step - self._step, self._clock() - self._start - self._paused
        rates = {"steps_per_s": steps / training, "data_wait_fraction": self._data_wait / training} if steps else {}
        self.restart(step)
        return rates
