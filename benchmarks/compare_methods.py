"""Trains several configs over several seeds and prints their final metrics as a markdown table.

    python benchmarks/compare_methods.py --configs=configs/clip.py,configs/laclip.py --seeds=0,1,2 \
        --workdir=runs/compare [-- --config.total_steps=600 ...]
    python benchmarks/compare_methods.py --configs=configs/clip_continued.py,configs/clip_refine.py \
        --init_from=runs/compare/clip_seed{seed} --workdir=runs/post   # post-pretraining from those runs

Each (config, seed) trains in <workdir>/<config name>_seed<seed> with `main.py` (resuming
if it already finished or stopped); a config's arguments join its name (`configs/simcse.py:mode=sup`
runs as `simcse_mode=sup`), and `{seed}` in an override is replaced by the run's seed (e.g.
`--config.text.tokenizer_path=runs/text/simcse_mode=unsup_seed{seed}/tokenizer.model`). The first
table shows mean ± standard deviation over seeds; the second, each config minus the baseline
(`--baseline`, default the first config) on the same seeds: the mean paired difference, its 95%
confidence interval and on how many seeds the config is higher. Every config of a seed starts from the
same initial parameters where their models match, and reads the same data order (both follow config.seed).

`--jobs=N` trains N runs at once, each pinned to its own share of this process's CPUs (Linux), with its
stderr in <workdir>/<config name>_seed<seed>.log: on a many-core CPU host, N one-share runs finish sooner
than N runs one after another on all cores, since small models use few cores well.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import queue
import subprocess
import sys
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere

from launch.results import (  # noqa: E402
    decoder_table,
    paired_table,
    read_summary,
    results_table,
    run_name,
    split_configs,
)


def run(config: str, seed: int, workdir: str, overrides: list[str], cpus: set[int] | None = None) -> dict:
    """Trains (or resumes) one run and returns its summary; `cpus`: pin it to these, its stderr to <workdir>.log."""
    command = [sys.executable, "main.py", f"--config={config}", f"--workdir={workdir}", f"--config.seed={seed}"]
    if cpus is None:
        subprocess.run(command + overrides, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        return read_summary(workdir)
    log = f"{workdir}.log"
    returncode = run_pinned(command + overrides, cpus, log)
    if returncode:
        raise SystemExit(f"{os.path.basename(workdir)} failed (exit {returncode}); its log is {log}.")
    return read_summary(workdir)


def run_pinned(command: list[str], cpus: set[int], log: str) -> int:
    """Runs `command` in ROOT on `cpus` only, its stderr to the file `log`; returns its exit status."""
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        # Pinned from outside (a preexec_fn is not safe beside threads) while Python starts, long before
        # jax sizes its thread pools from the affinity; threads started later inherit it.
        os.sched_setaffinity(process.pid, cpus)
        return process.wait()


def cpu_groups(jobs: int, cpus: set[int] | None = None) -> list[set[int]]:
    """`cpus` (default: those this process may run on) in `jobs` disjoint groups of consecutive ids whose
    sizes differ by at most one."""
    cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if not 1 <= jobs <= len(cpus):
        raise SystemExit(f"--jobs={jobs} must be between 1 and the {len(cpus)} CPUs this process may use.")
    size, extra = divmod(len(cpus), jobs)
    bounds = [i * size + min(i, extra) for i in range(jobs + 1)]
    return [set(cpus[bounds[i] : bounds[i + 1]]) for i in range(jobs)]


def run_all(tasks: list[tuple], jobs: int, runner: Callable[..., dict], groups: list[set[int]] | None = None) -> list:
    """runner(*task) for each task, in order; with jobs > 1, `jobs` at a time, each call given a CPU group of
    its own (keyword `cpus`) that returns to the pool when it ends. Results come back in the order of `tasks`."""
    if jobs == 1:
        return [runner(*task) for task in tasks]
    free: queue.Queue = queue.Queue()
    for group in groups or cpu_groups(jobs):
        free.put(group)

    def pinned(task):
        group = free.get()
        try:
            return runner(*task, cpus=group)
        finally:
            free.put(group)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(pinned, tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", required=True, help="Comma-separated config files.")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="Comma-separated seeds.")
    parser.add_argument("--baseline", default="", help="Config name the others are paired with; '' = the first.")
    parser.add_argument("--workdir", required=True, help="Parent folder of the runs.")
    parser.add_argument(
        "--init_from",
        default="",
        help="Workdir each run starts from (config.init_from.workdir); {seed} is replaced by the run's seed, "
        "e.g. runs/compare/clip_seed{seed} for post-pretraining methods.",
    )
    parser.add_argument("--jobs", type=int, default=1, help="Runs at once, each on its own share of the CPUs.")
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"]
    results: dict[str, list[dict]] = {}
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks, names = [], []
    for config in split_configs(args.configs):
        name = run_name(config)
        for seed in seeds:
            workdir = os.path.join(os.path.abspath(args.workdir), f"{name}_seed{seed}")
            init = [f"--config.init_from.workdir={os.path.abspath(args.init_from.format(seed=seed))}"]
            seeded = [o.replace("{seed}", str(seed)) for o in overrides]
            tasks.append((config, seed, workdir, seeded + init * bool(args.init_from)))
            names.append(name)

    def announced(config, seed, workdir, overrides, **pinning):
        summary = run(config, seed, workdir, overrides, **pinning)
        print(f"done: {os.path.basename(workdir)}", file=sys.stderr, flush=True)
        return summary

    for name, summary in zip(names, run_all(tasks, args.jobs, announced), strict=True):
        results.setdefault(name, []).append(summary)
    print(results_table(results))
    if len(results) > 1:
        print()
        print(paired_table(results, args.baseline or next(iter(results)), seeds))
    if decoders := decoder_table(results, seeds):
        print()
        print(decoders)


if __name__ == "__main__":
    main()
