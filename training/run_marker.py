"""A marker of a training process in progress, so that a run killed from outside is named by the next one.

A process that Python gets to finish (a clean end, an error, Ctrl-C, a preemption notice) says why
itself (training/guards.py, main.py). SIGKILL — the kernel's out-of-memory killer, a scheduler's hard
kill, a lost machine — ends it with no message at all. Each process therefore keeps
`running.<process index>.json` in the workdir while it trains and removes it on any end it sees; a
marker left behind by a process that no longer exists means that process was killed, and the next run
in the workdir logs one line saying so, with the last step and host memory the dead run recorded.
"""

from __future__ import annotations

import json
import os
import socket
import time

from configs.errors import ConfigError


def marker_path(workdir: str, process_index: int) -> str:
    return os.path.join(workdir, f"running.{process_index}.json")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the existence check
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _last_metrics(workdir: str) -> dict:
    """The last line of the workdir's metrics.jsonl that has train metrics, or {}."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if "train/loss" in record:
            return record
    return {}


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _still_running(previous: dict) -> bool:
    pid = int(previous.get("pid", -1))
    return previous.get("host") == socket.gethostname() and pid != os.getpid() and _alive(pid)


def killed_run_notice(workdir: str, previous: dict) -> str:
    """One sentence about the process that left the marker `previous` behind when it was killed."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(previous.get("started", 0)))
    last = _last_metrics(workdir)
    after = f"after step {last['step']}" if last else "before its first logged step"
    memory = last.get("train/host_peak_memory_gib")
    memory_note = f" at {memory:.1f} GiB peak host memory" if memory is not None else ""
    return (
        f"The previous run in this workdir (pid {previous.get('pid')} on {previous.get('host')}, started "
        f"{started}) was killed without a message {after}{memory_note}: by SIGKILL, most often the kernel's "
        "out-of-memory killer (check `dmesg`; lower config.batch_size or config.data.worker_count), or its "
        "machine was lost; resuming from its last checkpoint."
    )


class RunMarker:
    """`claim()` at the start of training marks this process as running and returns a notice about a killed
    predecessor (or None); `release()` on any end the process sees removes the mark."""

    def __init__(self, workdir: str, process_index: int):
        self.path = marker_path(workdir, process_index)
        self.workdir = workdir

    def claim(self) -> str | None:
        previous = _read(self.path)
        if previous and _still_running(previous):
            raise ConfigError(
                f"Another run (pid {previous['pid']}) is training in {self.workdir!r}; wait for it to end, or "
                "pass another --workdir: two runs in one workdir overwrite each other's checkpoints."
            )
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
        return killed_run_notice(self.workdir, previous) if previous else None

    def release(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
