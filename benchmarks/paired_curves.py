"""One eval metric over training steps, each config minus the baseline on the same seeds, and when each config
first reaches the baseline's final value: the tables for claims of the form "reaches it earlier".

    python benchmarks/paired_curves.py --configs=configs/salt.py:kd=none,configs/salt.py,configs/salt.py:kd=all \
        --seeds=0,1,2,3,4 --workdir=runs/salt_seeds --metric=language/token_loss --lower_is_better
    python benchmarks/paired_curves.py --configs=configs/clip.py,configs/laclip.py --seeds=0,1,2,3,4 \
        --workdir=runs/b3000 --metric=zero_shot/shape_colour --scale=100 --decimals=1

Reads the runs benchmarks/compare_methods.py trained (<workdir>/<config name>_seed<seed>/metrics.jsonl, the
eval/<metric> rows written every config.eval_every_steps); the first config is the baseline. A seed whose
runs are missing is left out, and the tables say which seeds they pair.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere

from launch.results import paired_cell, run_name, split_configs  # noqa: E402


def eval_curve(workdir: str, metric: str, scale: float = 1.0) -> dict[int, float]:
    """{step: scale x value} of eval/<metric> in a run's metrics.jsonl ({} when the run has none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        return {}
    curve = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if f"eval/{metric}" in row:
                curve[int(row["step"])] = scale * float(row[f"eval/{metric}"])
    return curve


def first_step_reaching(curve: dict[int, float], target: float, lower_is_better: bool) -> int | None:
    """The first step whose value is at least as good as `target`, None when no step is."""
    good = [step for step, value in sorted(curve.items()) if (value <= target if lower_is_better else value >= target)]
    return good[0] if good else None


def curve_tables(curves: dict[str, list[dict[int, float]]], lower_is_better: bool, decimals: int = 4) -> str:
    """curves: config name -> per-seed curves (the same seeds in each list), the baseline first."""
    names = list(curves)
    baseline = curves[names[0]]
    steps = sorted(set.intersection(*(set(c) for runs in curves.values() for c in runs)))
    header = f"| step | {names[0]} (mean) | " + " | ".join(f"{n} − {names[0]}" for n in names[1:]) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for step in steps:
        base = [c[step] for c in baseline]
        cells = [paired_cell([c[step] for c in curves[n]], base, decimals) for n in names[1:]]
        lines.append(f"| {step:,} | {np.mean(base):.{decimals}f} | " + " | ".join(cells) + " |")
    final = steps[-1]
    reach = [f"| config | first step at the baseline's step-{final:,} value, per seed | seeds reaching it |"]
    reach.append("|---|---|---|")
    for name in names:
        targets = [b[final] for b in baseline]
        firsts = [first_step_reaching(c, t, lower_is_better) for c, t in zip(curves[name], targets, strict=True)]
        shown = ", ".join("never" if s is None else f"{s:,}" for s in firsts)
        reach.append(f"| {name} | {shown} | {sum(s is not None for s in firsts)}/{len(firsts)} |")
    return "\n".join(lines) + "\n\n" + "\n".join(reach)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", required=True, help="comma-separated config files, the baseline first")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default="runs/compare", help="compare_methods.py's --workdir")
    parser.add_argument("--metric", required=True, help="an eval metric, e.g. language/token_loss")
    parser.add_argument("--lower_is_better", action="store_true", help="e.g. for a loss or a perplexity")
    parser.add_argument("--scale", type=float, default=1.0, help="e.g. 100 for accuracies in percent")
    parser.add_argument("--decimals", type=int, default=4)
    args = parser.parse_args()
    names = [run_name(config) for config in split_configs(args.configs)]
    curves, seeds = {name: [] for name in names}, []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs = [eval_curve(os.path.join(args.workdir, f"{name}_seed{seed}"), args.metric, args.scale) for name in names]
        if all(runs):
            seeds.append(seed)
            for name, curve in zip(names, runs, strict=True):
                curves[name].append(curve)
    if not seeds:
        raise SystemExit(
            f"No seed has eval/{args.metric} in every config's run under {args.workdir}; train them first."
        )
    print(f"eval/{args.metric}, paired over seeds {','.join(map(str, seeds))}:\n")
    print(curve_tables(curves, args.lower_is_better, args.decimals))


if __name__ == "__main__":
    main()
