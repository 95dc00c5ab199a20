"""Never lose a run: SIGKILL at a random moment, then SIGTERM at another, then a rerun of the same
command ends with the same checkpoint, bit for bit, and the same metrics as an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 30
TINY = [
    # The quick start's config, with its rewrite warm-up inside the run: what a batch holds depends on the
    # position in the data stream, so a resume that lost it would not end bit-identical.
    "--config=configs/laclip.py",
    "--config.data.rewrite_warmup_steps=20",
    "--config.batch_size=32",
    "--config.data.train_size=256",  # 8 steps an epoch: the run crosses epochs, so reshuffles resume too
    "--config.data.cache_dir=",
    "--config.eval.num_examples=64",
    "--config.eval.batch_size=64",
    "--config.model.image.depth=1",
    "--config.model.text.depth=1",
    "--config.optimizer.warmup_steps=5",
    f"--config.total_steps={TOTAL_STEPS}",
    "--config.log_every_steps=1",  # per-step metrics, comparable whatever step a run resumes from
    "--config.checkpoint_every_steps=3",
    "--config.eval_every_steps=1000",
]
# Vary run to run (and a run's first step after a start or resume compiles, so it has no rates).
SPEED_KEYS = {
    "time", "train/steps_per_s", "train/examples_per_s", "train/data_wait_fraction", "train/host_peak_memory_gib"
}  # fmt: skip


class Run:
    """main.py in a subprocess, its stderr collected line by line as it comes."""

    def __init__(self, workdir, env):
        self.process = subprocess.Popen(
            [sys.executable, "main.py", *TINY, f"--workdir={workdir}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()

    def wait_until(self, condition, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, "the run ended early:\n" + "".join(self.lines[-30:])
            assert time.monotonic() < deadline, "timed out:\n" + "".join(self.lines[-30:])
            time.sleep(0.02)

    def finish(self, timeout: float = 600) -> int:
        returncode = self.process.wait(timeout)
        self._reader.join(timeout=10)
        return returncode

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _steps(workdir) -> list[int]:
    """Complete checkpoints: orbax writes into a temporary folder and renames it to the step when done."""
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def _checkpoint_arrays(workdir) -> dict[str, np.ndarray]:
    """Every array (params, optimizer state, rng, step) of the latest checkpoint, read as NumPy."""
    path = os.path.join(workdir, "checkpoints", str(_steps(workdir)[-1]), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    shapes = checkpointer.metadata(path).item_metadata.tree
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), shapes, is_leaf=lambda x: hasattr(x, "shape"))
    args = ocp.args.PyTreeRestore(item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item))
    restored = checkpointer.restore(path, args=args)
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(restored)[0]}


def _metrics(workdir) -> dict[int, dict]:
    """step -> metrics of the last run that wrote that step (a resumed run rewrites the steps it redoes)."""
    by_step: dict[int, dict] = {}
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        for record in map(json.loads, f):
            kept = {k: v for k, v in record.items() if k not in SPEED_KEYS}
            by_step.setdefault(record["step"], {}).update(kept)
    return by_step


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # A compilation cache shared by this module's runs: same programs, so the same executables, sooner.
    cache = tmp_path_factory.mktemp("jax_cache")
    return dict(
        os.environ,
        # LLVM at -O0: compiling costs these few-step runs more than running them.
        XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, env):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run = Run(workdir, env)
    assert run.finish() == 0, run.stderr[-3000:]
    return workdir


def test_sigkill_then_sigterm_then_rerun_ends_bit_identical(tmp_path, env, uninterrupted):
    seed = random.randrange(10**6)
    moments = random.Random(seed)
    note = f"(random seed {seed})"

    # 1. SIGKILL at a random moment after the first checkpoint: mid-step, mid-write or mid-log.
    killed = Run(tmp_path, env)
    killed.wait_until(lambda: _steps(tmp_path))
    time.sleep(moments.uniform(0.0, 1.0))
    assert killed.process.poll() is None, f"the run finished before the kill {note}"
    killed.process.send_signal(signal.SIGKILL)
    assert killed.finish() == -signal.SIGKILL
    resume_step = _steps(tmp_path)[-1]
    killed_last = max(_metrics(tmp_path))
    assert 0 < resume_step < TOTAL_STEPS, note

    # 2. The same command resumes from the last complete checkpoint; SIGTERM it at a random moment.
    preempted = Run(tmp_path, env)
    preempted.wait_until(lambda: f"Resumed from step {resume_step} in" in preempted.stderr)
    # The kill left no message of its own: the rerun names it, with the last step the killed run logged.
    assert f"was killed without a message after step {killed_last} at " in preempted.stderr, note
    time.sleep(moments.uniform(0.0, 1.0))
    assert preempted.process.poll() is None, f"the run finished before SIGTERM {note}"
    sent = time.monotonic()
    preempted.process.send_signal(signal.SIGTERM)
    assert preempted.finish() == 0, preempted.stderr[-3000:]
    exit_s = time.monotonic() - sent
    print(f"\nSIGKILL left step {resume_step}; SIGTERM to exit {exit_s:.1f} s {note}")
    assert "Traceback" not in preempted.stderr
    saved = _steps(tmp_path)[-1]
    assert f"Preempted (signal 15) at step {saved}: checkpoint saved in" in preempted.stderr, note
    assert resume_step < saved < TOTAL_STEPS, note
    assert exit_s < 120, f"SIGTERM took {exit_s:.0f} s to exit {note}"

    # 3. The same command again runs to the end.
    final = Run(tmp_path, env)
    assert final.finish() == 0, final.stderr[-3000:]
    assert f"Resumed from step {saved} in" in final.stderr
    assert "killed without a message" not in final.stderr  # a preempted run ends as a run that saw its end
    assert not os.path.exists(os.path.join(tmp_path, "running.0.json"))

    got, want = _checkpoint_arrays(tmp_path), _checkpoint_arrays(uninterrupted)
    assert got.keys() == want.keys()
    different = [k for k in want if not (got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]))]
    assert not different, f"{len(different)} arrays differ, e.g. {different[:3]} {note}"
    assert int(got["['step']"]) == TOTAL_STEPS

    got_metrics, want_metrics = _metrics(tmp_path), _metrics(uninterrupted)
    assert sorted(got_metrics) == list(range(1, TOTAL_STEPS + 1))
    for step in range(1, TOTAL_STEPS + 1):
        assert got_metrics[step] == want_metrics[step], f"step {step} {note}"
