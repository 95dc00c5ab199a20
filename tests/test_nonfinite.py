"""Non-finite steps: skipped by the jitted train step, counted by the loop, and a run of them stops training."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from losses.objectives import Objective
from training.guards import NonFiniteGuard, NonFiniteStepsError
from training.train_state import TrainState
from training.train_step import train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNING_RATE = 0.1


def _loss(params, batch, extra, rng, *, model, config):
    """sum(w * x) + sum(sqrt(|b|)): a NaN/inf in x poisons the loss; b = 0 poisons only the gradient."""
    del extra, rng, model, config
    return jnp.sum(params["w"] * batch["x"]) + jnp.sum(jnp.sqrt(jnp.abs(params["b"]))), {"aux": batch["x"]}


OBJECTIVE = Objective(
    loss=_loss,
    init_extra=lambda params, config, inputs=None: {"seen": jnp.zeros((), jnp.int32)},
    update_extra=lambda extra, params, aux: {"seen": extra["seen"] + 1},
)
STEP = jax.jit(
    functools.partial(
        train_step,
        model=None,
        objective=OBJECTIVE,
        optimizer=optax.sgd(LEARNING_RATE, momentum=0.9),
        schedule=optax.constant_schedule(LEARNING_RATE),
        config=None,
    )
)


def _state(b: float) -> TrainState:
    params = {"w": jnp.asarray([1.0, -2.0, 3.0]), "b": jnp.asarray([b, 4.0])}
    optimizer = optax.sgd(LEARNING_RATE, momentum=0.9)
    return TrainState(
        step=jnp.asarray(7, jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        extra=OBJECTIVE.init_extra(params, None),
        rng=jax.random.PRNGKey(0),
    )


def _assert_same(got, want):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype and np.array_equal(g, w)


def test_a_finite_step_is_applied():
    state = _state(b=1.0)
    x = np.asarray([0.5, 1.0, -1.0], np.float32)
    new, metrics = STEP(state, {"x": jnp.asarray(x)})
    # SGD with momentum from zero: the first update is -lr * grad; d/dw = x, d/db = 0.5 / sqrt(|b|) * sign(b).
    np.testing.assert_allclose(new.params["w"], np.asarray([1.0, -2.0, 3.0]) - LEARNING_RATE * x, rtol=1e-6)
    np.testing.assert_allclose(new.params["b"], [1.0 - LEARNING_RATE * 0.5, 4.0 - LEARNING_RATE * 0.25], rtol=1e-6)
    assert int(metrics["skipped"]) == 0 and int(new.step) == 8 and int(new.extra["seen"]) == 1


@pytest.mark.parametrize(
    "b, x",
    [
        (1.0, [np.nan, 1.0, 1.0]),  # NaN loss and gradient
        (1.0, [np.inf, 1.0, 1.0]),  # infinite loss and gradient
        (0.0, [1.0, 1.0, 1.0]),  # finite loss (3 + 2), NaN gradient of sqrt(|b|) at b = 0
        # Finite loss (1e20 + 0 - 0 + 3) and gradient (d/dw = x), but the gradient's norm overflows float32
        # (its square is 1e40 > 3.4e38): skipped too, as the guard reads the norm (training/train_step.py).
        (1.0, [1e20, 0.0, 0.0]),
    ],
)
def test_a_non_finite_step_leaves_params_optimizer_and_extra_unchanged(b, x):
    state = _state(b)
    expected = jax.device_get(state)  # the step's input buffers are not donated here
    new, metrics = STEP(state, {"x": jnp.asarray(x, jnp.float32)})
    assert int(metrics["skipped"]) == 1
    _assert_same(new.params, expected.params)
    _assert_same(new.opt_state, expected.opt_state)
    _assert_same(new.extra, expected.extra)
    # The step counter and the key still advance: the next step sees the next batch and a fresh key.
    assert int(new.step) == 8
    assert not np.array_equal(new.rng, expected.rng)


def test_a_large_finite_gradient_is_applied():
    state = _state(b=1.0)
    x = np.asarray([1e18, 0.0, 0.0], np.float32)  # norm^2 = 1e36: representable
    new, metrics = STEP(state, {"x": jnp.asarray(x)})
    assert int(metrics["skipped"]) == 0
    np.testing.assert_allclose(new.params["w"][0], 1.0 - LEARNING_RATE * 1e18, rtol=1e-6)


def test_guard_counts_runs_and_stops_at_the_limit():
    guard = NonFiniteGuard(max_consecutive=3)
    assert guard.update(np.asarray([0, 1, 1, 0, 1])) == 1 and guard.total == 3
    assert guard.update(np.asarray([1])) == 2


class _FakeCheckpointer:
    directory = "/runs/x/checkpoints"
    waited = False

    def wait(self):
        self.waited = True

    def latest_step(self):
        return 40


def test_guard_check_reads_recorded_flags_and_raises_with_the_last_checkpoint():
    guard, checkpointer = NonFiniteGuard(max_consecutive=2), _FakeCheckpointer()
    guard.record(jnp.int32(1))
    assert guard.check(41, checkpointer) is False  # one skip: keep going, but do not checkpoint
    guard.record(jnp.int32(1))
    with pytest.raises(NonFiniteStepsError) as error:
        guard.check(42, checkpointer)
    message = str(error.value)
    assert checkpointer.waited and "\n" not in message
    assert "config.max_consecutive_skipped_steps = 2" in message and "step 40 in /runs/x/checkpoints" in message


def test_a_run_of_non_finite_steps_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    # lr 1e30 with a 1-step warmup: step 1 has lr 0, step 2 blows the params up to ~1e30, and from
    # step 3 on every forward pass overflows, so every later step is skipped.
    args = [
        "--config=configs/clip.py", f"--workdir={tmp_path}", "--config.batch_size=16", "--config.data.train_size=64",
        "--config.data.cache_dir=", "--config.model.image.depth=1", "--config.model.text.depth=1",
        "--config.optimizer.learning_rate=1e30", "--config.optimizer.warmup_steps=1", "--config.total_steps=40",
        "--config.log_every_steps=1", "--config.checkpoint_every_steps=1", "--config.max_consecutive_skipped_steps=3",
    ]  # fmt: skip
    # LLVM at -O0: compiling costs these few-step runs more than running them.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0")
    result = subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "error: Stopped at step 5: the last 3 steps had a non-finite loss or gradient" in result.stderr
    assert "last good checkpoint: step 2 in" in result.stderr
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 2
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/skipped"] for r in lines if "train/skipped" in r] == [0, 0, 1, 1, 1]
