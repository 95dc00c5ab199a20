"""training/step_timer.py: steps/s of training alone and the data-wait share, on a hand-driven clock."""

from __future__ import annotations

import pytest

from training.step_timer import StepTimer


class Clock:
    """A clock that moves only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_evaluation_and_checkpoints_are_paused_out_and_data_waits_counted():
    clock = Clock()
    timer = StepTimer(step=0, clock=clock)
    clock.now += 1.0  # steps 1-5: 1 s of stepping
    with timer.waiting_for_data():
        clock.now += 0.5  # 0.5 s of it waiting for batches
    with timer.paused():
        clock.now += 30.0  # an evaluation: not training time
    clock.now += 0.5
    rates = timer.interval(step=10)
    # 10 steps in 1 + 0.5 + 0.5 = 2 s of training, 0.5 s of it in the data wait.
    assert rates == pytest.approx({"steps_per_s": 5.0, "data_wait_fraction": 0.25})
    clock.now += 4.0  # the next interval starts where this one ended, with nothing carried over
    assert timer.interval(step=12) == pytest.approx({"steps_per_s": 0.5, "data_wait_fraction": 0.0})


def test_restart_drops_the_compiling_step_and_an_interval_without_steps_has_no_rates():
    clock = Clock()
    timer = StepTimer(step=40, clock=clock)
    with timer.waiting_for_data():
        clock.now += 1.0
    clock.now += 60.0  # step 41 compiles
    timer.restart(step=41)
    assert timer.interval(step=41) == {}  # a log at the compiling step itself: nothing timed
    clock.now += 2.0
    assert timer.interval(step=50) == pytest.approx({"steps_per_s": 4.5, "data_wait_fraction": 0.0})


def test_a_pause_that_raises_is_still_paused_out():
    clock = Clock()
    timer = StepTimer(step=0, clock=clock)
    with pytest.raises(OSError), timer.paused():
        clock.now += 10.0
        raise OSError("disk full")
    clock.now += 1.0
    assert timer.interval(step=2)["steps_per_s"] == pytest.approx(2.0)
