"""A run that dies says why: one line with the step in train.INFO and on stderr, and a usable checkpoint."""

import os
import subprocess
import sys

import pytest

from training.checkpointing import Checkpointer
from training.guards import NonFiniteStepsError, RunStopped, stopped_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# main.py, run as `python main.py ...` would, with the data iterator failing on its 4th batch (as a
# grain worker's exception or a decode error that escapes the skipping reaches the loop).
FAILING_DATA = """
import runpy, sys
import training.loop as loop
make = loop.make_train_iterator
def failing(*args, **kwargs):
    inner = make(*args, **kwargs)
    class Failing:
        calls = 0
        def __next__(self):
            self.calls += 1
            if self.calls == 4:
                raise RuntimeError("worker 1 died: image decoding failed\\nsecond line of detail")
            return next(inner)
        def get_state(self):
            return inner.get_state()
        def set_state(self, state):
            inner.set_state(state)
    return Failing()
loop.make_train_iterator = failing
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""

TINY = [
    "--config=configs/clip.py", "--config.batch_size=16", "--config.data.train_size=64", "--config.data.cache_dir=",
    "--config.model.image.depth=1", "--config.model.text.depth=1", "--config.total_steps=6",
    "--config.log_every_steps=1", "--config.checkpoint_every_steps=1", "--config.eval.num_examples=32",
]  # fmt: skip


def _run(args, tmp_path, script=None):
    # LLVM at -O0: compiling costs these few-step runs more than running them.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0")
    command = [sys.executable, "-c", script] if script else [sys.executable, "main.py"]
    return subprocess.run(
        [*command, *TINY, f"--workdir={tmp_path}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_an_exception_in_the_loop_leaves_one_line_with_the_step_and_a_checkpoint_to_resume_from(tmp_path):
    result = _run([], tmp_path, FAILING_DATA)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "Run stopped" in line]
    expected = (
        f"error: Run stopped at step 4 by RuntimeError: worker 1 died: image decoding failed; last good checkpoint: "
        f"step 3 in {tmp_path}/checkpoints; rerun the same command to resume from it"
    )
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    with open(tmp_path / "train.INFO", encoding="utf-8") as f:
        log = f.read()
    assert expected in log and "Traceback" in log and "second line of detail" in log

    # The checkpoint the line names is complete: rerunning the command resumes from it
    # (tests/test_main.py and tests/test_resume.py prove resuming itself).
    checkpointer = Checkpointer(str(tmp_path), keep=2)
    assert checkpointer.latest_step() == 3
    checkpointer.close()


def test_a_native_crash_leaves_the_fatal_error_and_the_python_stack_in_train_info(tmp_path):
    crash = FAILING_DATA.replace(
        'raise RuntimeError("worker 1 died: image decoding failed\\nsecond line of detail")',
        "import faulthandler; faulthandler._sigsegv()",
    )
    result = _run([], tmp_path, crash)
    assert result.returncode != 0
    with open(tmp_path / "train.INFO", encoding="utf-8") as f:
        log = f.read()
    assert "Fatal Python error: Segmentation fault" in log and "in __next__" in log, log[-3000:]
    # A write cut short leaves only orbax's temporary folder: the latest complete checkpoint is step 2 or 3.
    checkpointer = Checkpointer(str(tmp_path), keep=2)
    assert checkpointer.latest_step() in (2, 3)
    checkpointer.close()


class _Checkpointer:
    directory = "/runs/x/checkpoints"

    def __init__(self, latest, fail_wait=False):
        self.latest, self.fail_wait, self.waited = latest, fail_wait, False

    def wait(self):
        self.waited = True
        if self.fail_wait:
            raise OSError("disk full")

    def latest_step(self):
        return self.latest


@pytest.mark.parametrize(
    "error, checkpointer, expected",
    [
        (
            MemoryError(),
            _Checkpointer(None),
            "Run stopped at step 7 by MemoryError; last good checkpoint: none yet; rerun the same command",
        ),
        (
            OSError("disk full"),
            _Checkpointer(400, fail_wait=True),
            "Run stopped at step 7 by OSError: disk full; last good checkpoint: step 400 in /runs/x/checkpoints;",
        ),
        (NonFiniteStepsError("Stopped at step 7: the last 10 steps ..."), _Checkpointer(5), "Stopped at step 7: the"),
    ],
)
def test_stopped_run_waits_for_checkpoint_writes_and_names_step_and_checkpoint(error, checkpointer, expected):
    stopped = stopped_run(error, 7, checkpointer)
    assert isinstance(stopped, RunStopped) and stopped.step == 7 and checkpointer.waited
    assert str(stopped).startswith(expected) and "\n" not in str(stopped)
