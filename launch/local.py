"""Runs a config's sweep on this machine, N runs at a time, then prints the summary table.

    python -m launch.local --config=configs/clip.py --workdir=runs/clip_sweep [--parallel=2] [--only=0,3] \
        [-- --config.total_steps=600 ...]

Run i trains with `main.py` in <workdir>/<its name> (see `python -m launch.sweep --list`), its output
in <workdir>/<name>/launch.log. Finished runs are skipped; stopped ones resume from their last
checkpoint. SIGTERM (a preemption notice) is passed on to the running runs, which checkpoint and
exit; runs not yet started are left for the next launch. On a multi-GPU machine, --gpus_per_run=K
gives each concurrent run its own K GPUs (CUDA_VISIBLE_DEVICES); without it every run sees every device.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from configs.errors import ConfigError
from launch import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def slot_environment(slot: int, gpus_per_run: int) -> dict[str, str]:
    """Environment additions of the run in concurrency slot `slot`: its own GPUs, if it gets some."""
    if not gpus_per_run:
        return {}
    first = slot * gpus_per_run
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(first, first + gpus_per_run))}


def run_command(spec: str, run: sweep.Run, workdir: str, common_flags: list[str]) -> list[str]:
    """The main.py command line of one run."""
    return [sys.executable, os.path.join(ROOT, "main.py"), *sweep.main_flags(spec, run, workdir, common_flags)]


def _last_line(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1] if lines else "(no output)"


class _Launcher:
    """Trains runs in subprocesses, `parallel` at once; SIGTERM is passed on to the running ones."""

    def __init__(self, spec: str, workdir: str, common_flags: list[str], parallel: int, gpus_per_run: int):
        self.spec, self.workdir, self.common_flags, self.gpus_per_run = spec, workdir, common_flags, gpus_per_run
        self.slots: queue.Queue[int] = queue.Queue()
        for slot in range(parallel):
            self.slots.put(slot)
        self.running: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def stop(self, signum: int, frame) -> None:
        """Each running main.py checkpoints and exits (its SIGTERM handling); no new run starts."""
        del frame
        with self.lock:
            self.stopping = True
            for process in self.running:
                process.send_signal(signum)
        print("SIGTERM: the running runs checkpoint and stop; rerun the same command to resume.", flush=True)

    def train(self, run: sweep.Run) -> int | None:
        """main.py's exit status, or None if the launcher was stopped before the run started."""
        slot = self.slots.get()
        try:
            run_dir = os.path.join(self.workdir, run.name)
            os.makedirs(run_dir, exist_ok=True)
            log_path = os.path.join(run_dir, "launch.log")
            env = dict(os.environ, **slot_environment(slot, self.gpus_per_run))
            command = run_command(self.spec, run, self.workdir, self.common_flags)
            with open(log_path, "a", encoding="utf-8") as log, self.lock:
                if self.stopping:
                    return None
                process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                self.running.add(process)
            print(f"[{run.index}] started  {run.name}", flush=True)
            start = time.time()
            code = process.wait()
            with self.lock:
                self.running.discard(process)
            if code:
                outcome = f"FAILED (exit {code}): {_last_line(log_path)}"
            else:
                outcome = "finished" if sweep.finished(run, self.workdir) else "stopped (resumes on relaunch)"
            print(f"[{run.index}] {outcome}  {run.name}  ({(time.time() - start) / 60:.1f} min)", flush=True)
            return code
        finally:
            self.slots.put(slot)


def launch(
    spec: str, workdir: str, runs: list[sweep.Run], common_flags: list[str], parallel: int, gpus_per_run: int
) -> list[sweep.Run]:
    """Trains `runs` (at most `parallel` at once) and returns those whose main.py failed."""
    launcher = _Launcher(spec, workdir, common_flags, parallel, gpus_per_run)
    previous = signal.signal(signal.SIGTERM, launcher.stop)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            codes = list(pool.map(launcher.train, runs))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return [run for run, code in zip(runs, codes, strict=True) if code not in (0, None)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="Config file with get_hyper, optionally with ':arg=val'.")
    parser.add_argument("--workdir", required=True, help="Parent folder of the runs' workdirs.")
    parser.add_argument("--parallel", type=int, default=1, help="Runs trained at the same time.")
    parser.add_argument("--only", default="", help="Comma-separated run indices to train (default: all).")
    parser.add_argument("--gpus_per_run", type=int, default=0, help="GPUs per concurrent run; 0: all visible.")
    args, common = parser.parse_known_args(argv)
    common = [flag for flag in common if flag != "--"]
    if args.parallel < 1 or args.gpus_per_run < 0:
        sys.exit("error: --parallel must be at least 1 and --gpus_per_run at least 0.")
    workdir = os.path.abspath(args.workdir)
    try:
        runs = sweep.expand(args.config, common)
        chosen = sweep.select(runs, args.only)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    todo = [run for run in chosen if not sweep.finished(run, workdir)]
    print(f"{len(chosen)} runs of {args.config} in {workdir}: {len(chosen) - len(todo)} already finished.", flush=True)
    failed = launch(args.config, workdir, todo, common, args.parallel, args.gpus_per_run)
    print(sweep.sweep_table(chosen, workdir), flush=True)
    if failed:
        logs = ", ".join(os.path.join(workdir, run.name, "launch.log") for run in failed)
        sys.exit(f"error: {len(failed)} of {len(todo)} runs failed; their output is in {logs}.")


if __name__ == "__main__":
    main()
