"""COCONUT's ablation (METHODS.md §21, configs/coconut.py) at paired seeds: class-incremental learning of the shapes'
8 classes in 4 experiences with experience replay alone (ER), with NSPT, and with NSPT and MM.

    python benchmarks/coconut_chain.py --seeds=0,1,2 --jobs=2 --workdir=runs/coconut_seeds \\
        [-- --config.coconut.buffer_per_class=5]

Per seed and arm, each experience is a `main.py` run in <workdir>/<arm>_e<k>_seed<seed> (resumed if it finished or
stopped) started from the arm's run of the experience before (ER and NSPT share experience 0, which has no rehearsal
and no teacher; NSPT+MM's adds MM). Overrides after `--` go to every run. Prints, per arm, mean ± sd over the seeds of:
- `average incremental accuracy`: the mean over experiences k of the accuracy on the classes seen after k;
- `final accuracy`: that after the last experience;
- `forgetting`: the mean over the experiences j before the last of the best accuracy on j's classes after any
  experience before the last, minus the accuracy on them after the last (percentage points; lower is better);
and each arm minus ER on the same seeds (mean, 95% CI, seeds higher).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.compare_methods import run, run_all  # noqa: E402
from launch.results import paired_cell  # noqa: E402

CONFIG = "configs/coconut.py"
ARMS = {"er": "ER", "nspt": "ER + NSPT", "nspt_mm": "ER + NSPT + MM"}
FIRST_RUN = {"er": "er", "nspt": "er", "nspt_mm": "nspt_mm"}  # arm -> the arm whose experience-0 run it continues


def run_dir(workdir: str, arm: str, task: int, seed: int) -> str:
    return os.path.join(workdir, f"{FIRST_RUN[arm] if task == 0 else arm}_e{task}_seed{seed}")


def chain_metrics(evals: list[dict]) -> dict[str, float]:
    """evals: the `eval` of each experience's run, in order (incremental/accuracy and incremental/task_<j>, percent)
    -> {"average incremental accuracy", "final accuracy", "forgetting"} (module docstring)."""
    last = len(evals) - 1
    accuracy = [e["incremental/accuracy"] for e in evals]
    drops = [
        max(evals[k][f"incremental/task_{j}"] for k in range(j, last)) - evals[last][f"incremental/task_{j}"]
        for j in range(last)
    ]
    return {
        "average incremental accuracy": float(np.mean(accuracy)),
        "final accuracy": accuracy[last],
        "forgetting": float(np.mean(drops)) if drops else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    parser.add_argument("--workdir", required=True, help="Parent folder of the runs.")
    parser.add_argument("--jobs", type=int, default=1, help="Runs at once, each on its own share of the CPUs.")
    parser.add_argument("--tasks", type=int, default=4, help="Experiences (config.coconut.tasks).")
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"] + [f"--config.coconut.tasks={args.tasks}"]
    workdir, seeds = os.path.abspath(args.workdir), [int(s) for s in args.seeds.split(",")]
    evals: dict[str, dict[int, list[dict]]] = {arm: {s: [] for s in seeds} for arm in ARMS}
    for task in range(args.tasks):  # each experience's runs start from the experience before's
        jobs = {run_dir(workdir, arm, task, seed): (FIRST_RUN[arm] if task == 0 else arm, seed)
                for arm in ARMS for seed in seeds}  # fmt: skip
        tasks = [
            (f"{CONFIG}:task={task},arm={arm}", seed, where,
             overrides + ([f"--config.init_from.workdir={run_dir(workdir, arm, task - 1, seed)}"] if task else []))
            for where, (arm, seed) in jobs.items()
        ]  # fmt: skip
        for (_, _, where, _), summary in zip(tasks, run_all(tasks, args.jobs, run), strict=True):
            for arm, seed in [(a, s) for a in ARMS for s in seeds if run_dir(workdir, a, task, s) == where]:
                evals[arm][seed].append(summary["eval"])
            print(f"done: {os.path.basename(where)}", file=sys.stderr, flush=True)
    metrics = {arm: [chain_metrics(evals[arm][s]) for s in seeds] for arm in ARMS}
    names = list(metrics["er"][0])
    print("| arm | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1))
    for arm, per_seed in metrics.items():
        cells = [f"{np.mean([m[n] for m in per_seed]):.1f} ± {np.std([m[n] for m in per_seed], ddof=1):.1f}"
                 if len(seeds) > 1 else f"{per_seed[0][n]:.1f}" for n in names]  # fmt: skip
        print(f"| {ARMS[arm]} | " + " | ".join(cells) + " |")
    print(f"\nPaired with ER over seeds {args.seeds} (forgetting: lower is better):")
    print("| arm − ER | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1))
    for arm in ("nspt", "nspt_mm"):
        cells = [paired_cell([m[n] for m in metrics[arm]], [m[n] for m in metrics["er"]]) for n in names]
        print(f"| {ARMS[arm]} | " + " | ".join(cells) + " |")
    print("\nPer seed, accuracy after each experience (seen classes, %):")
    for arm in ARMS:
        for s in seeds:
            print(f"  {ARMS[arm]}, seed {s}: " + " / ".join(f"{e['incremental/accuracy']:.1f}" for e in evals[arm][s]))


if __name__ == "__main__":
    main()
