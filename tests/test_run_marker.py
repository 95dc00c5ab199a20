"""A run killed from outside is named by the next run in its workdir; a live run keeps others out of it."""

import json
import os
import socket
import subprocess
import sys

import pytest

from configs.errors import ConfigError
from training.run_marker import RunMarker, marker_path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leave_marker(workdir, pid: int, host: str | None = None) -> None:
    with open(marker_path(str(workdir), 0), "w", encoding="utf-8") as f:
        json.dump({"pid": pid, "host": host or socket.gethostname(), "started": 0.0}, f)


def test_a_clean_run_claims_and_releases_its_marker(tmp_path):
    marker = RunMarker(str(tmp_path), 0)
    assert marker.claim() is None
    assert json.load(open(marker_path(str(tmp_path), 0)))["pid"] == os.getpid()
    marker.release()
    assert not os.path.exists(marker_path(str(tmp_path), 0))
    assert RunMarker(str(tmp_path), 0).claim() is None  # released: the next run hears nothing


def test_a_marker_of_a_dead_process_is_reported_with_its_last_step_and_memory(tmp_path):
    pid = _dead_pid()
    _leave_marker(tmp_path, pid)
    with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps({"step": 350, "train/loss": 1.2, "train/host_peak_memory_gib": 2.44}) + "\n")
        f.write(json.dumps({"step": 400, "eval/zero_shot/shape": 0.5}) + "\n")  # not a training line
        f.write('{"step": 400, "train/lo')  # the line the kill cut
    notice = RunMarker(str(tmp_path), 0).claim()
    assert notice.startswith(f"The previous run in this workdir (pid {pid} on {socket.gethostname()}")
    assert "killed without a message after step 350 at 2.4 GiB peak host memory" in notice
    assert "out-of-memory killer" in notice
    assert json.load(open(marker_path(str(tmp_path), 0)))["pid"] == os.getpid()  # now this run's


def test_a_run_killed_before_logging_says_so(tmp_path):
    _leave_marker(tmp_path, _dead_pid())
    assert "before its first logged step:" in RunMarker(str(tmp_path), 0).claim()


def test_a_live_run_in_the_workdir_is_refused_and_keeps_its_marker(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _leave_marker(tmp_path, sleeper.pid)
        with pytest.raises(ConfigError, match=rf"Another run \(pid {sleeper.pid}\) is training in .*another --workdir"):
            RunMarker(str(tmp_path), 0).claim()
        assert json.load(open(marker_path(str(tmp_path), 0)))["pid"] == sleeper.pid
        # Another process index (a multi-process run on one host) has its own marker.
        assert RunMarker(str(tmp_path), 1).claim() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_marker_from_another_host_is_reported_not_refused(tmp_path):
    # Its pid means nothing here: the other machine was lost or its process killed.
    _leave_marker(tmp_path, os.getpid(), host="another-host")
    assert "(pid " in RunMarker(str(tmp_path), 0).claim()
