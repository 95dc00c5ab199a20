"""Loop-side guards that keep a run from being lost: preemption notices and runs of non-finite steps.

Both are side effects of the loop's edge (signals, host syncs); the jitted step only reports
`skipped` (training/train_step.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import jax
import numpy as np
from absl import logging

from configs.errors import ConfigError
from training.checkpointing import last_good_checkpoint


class PreemptionNotice:
    """Turns SIGTERM (a preemption notice) into a flag that the loop polls after each step.

    The handler only records the signal; the loop then saves a checkpoint and returns. A second
    SIGTERM restores the previous handler and re-sends itself, so an impatient sender still wins
    (also where an exception left this handler installed in a long-lived process). Single-process
    only: with several processes each would poll its own flag and could stop at a different step;
    agreeing on the step first (e.g. orbax's `reached_preemption`) is not done here.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
        self.signal: int | None = None
        self.received_at: float | None = None  # time.monotonic() of the first notice
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = {s: signal.signal(s, self._handle) for s in signals}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame) -> None:
        del frame
        if self.signal is not None:
            self.close()
            os.kill(os.getpid(), signum)
            return
        self.signal, self.received_at = signum, time.monotonic()

    def close(self) -> None:
        """Puts the previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class RunStopped(Exception):
    """A run ended abnormally at `step`; str() is the one line main.py logs and prints, the cause is chained."""

    def __init__(self, step: int, cause: BaseException, checkpoint: str):
        self.step = step
        if isinstance(cause, NonFiniteStepsError):  # already names its step, checkpoint and fixes
            message = str(cause)
        else:
            reason = (str(cause).strip().splitlines() or [""])[0]
            message = (
                f"Run stopped at step {step} by {type(cause).__name__}{': ' + reason if reason else ''}; "
                f"last good checkpoint: {checkpoint}; rerun the same command to resume from it "
                "(the traceback is in the workdir's train.INFO)."
            )
        super().__init__(message)


def stopped_run(error: BaseException, step: int, checkpointer) -> RunStopped:
    """`error` raised while training `step`, as a RunStopped, once the checkpoint writes in flight are done.

    Waiting keeps the last checkpoint usable: an interrupted asynchronous write would leave only a
    temporary folder, and the step before it would be the one to resume from.
    """
    try:
        checkpointer.wait()
    except Exception as wait_error:  # the error that stopped the run may be the checkpoint write itself
        logging.warning("waiting for checkpoint writes failed: %s", wait_error)
    return RunStopped(step, error, last_good_checkpoint(checkpointer))


class NonFiniteStepsError(ConfigError):
    """The run stopped after too many consecutive non-finite steps; the message names the fixes."""


class NonFiniteGuard:
    """Counts consecutive skipped steps from the step's `skipped` metric (0/1 int32 scalars).

    `record` keeps the device scalars without waiting for them; `check` fetches them (call it where
    the loop syncs anyway: log and checkpoint steps) and raises NonFiniteStepsError once
    `max_consecutive` steps in a row were skipped.
    """

    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0
        self._unchecked: list[jax.Array] = []

    def record(self, skipped: jax.Array) -> None:
        self._unchecked.append(skipped)

    def update(self, skipped: np.ndarray) -> int:
        """Folds 0/1 flags, oldest first, into the counts; returns the current run of skips."""
        for flag in np.asarray(skipped).reshape(-1):
            self.consecutive = self.consecutive + 1 if flag else 0
            self.total += int(bool(flag))
        return self.consecutive

    def check(self, step: int, checkpointer) -> bool:
        """True when the latest step was good (a checkpoint may be written).

        After `max_consecutive` skips in a row: waits for `checkpointer`'s writes in flight, then
        raises NonFiniteStepsError naming its latest (good) checkpoint.
        """
        if self._unchecked:
            flags = np.asarray(jax.device_get(self._unchecked))
            self._unchecked = []
            self.update(flags)
            if flags.any():
                logging.warning(
                    "step %d: %d of the last %d steps had a non-finite loss or gradient and were skipped "
                    "(%d in a row, %d in all)", step, int(flags.sum()), flags.size, self.consecutive, self.total,
                )  # fmt: skip
        if self.consecutive >= self.max_consecutive:
            checkpointer.wait()
            kept = last_good_checkpoint(checkpointer)
            raise NonFiniteStepsError(
                f"Stopped at step {step}: the last {self.consecutive} steps had a non-finite loss or gradient and "
                f"were skipped (config.max_consecutive_skipped_steps = {self.max_consecutive}; last good "
                f"checkpoint: {kept}); lower config.optimizer.learning_rate or check the data, then rerun to "
                "resume from that checkpoint."
            )
        return self.consecutive == 0
