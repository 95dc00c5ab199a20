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
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

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


def run(config: str, seed: int, workdir: str, overrides: list[str]) -> dict:
    command = [sys.executable, "main.py", f"--config={config}", f"--workdir={workdir}", f"--config.seed={seed}"]
    subprocess.run(command + overrides, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return read_summary(workdir)


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
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"]
    results: dict[str, list[dict]] = {}
    seeds = [int(s) for s in args.seeds.split(",")]
    for config in split_configs(args.configs):
        name = run_name(config)
        for seed in seeds:
            workdir = os.path.join(os.path.abspath(args.workdir), f"{name}_seed{seed}")
            init = [f"--config.init_from.workdir={os.path.abspath(args.init_from.format(seed=seed))}"]
            seeded = [o.replace("{seed}", str(seed)) for o in overrides]
            results.setdefault(name, []).append(run(config, seed, workdir, seeded + init * bool(args.init_from)))
            print(f"done: {name} seed {seed}", file=sys.stderr, flush=True)
    print(results_table(results))
    if len(results) > 1:
        print()
        print(paired_table(results, args.baseline or next(iter(results)), seeds))
    if decoders := decoder_table(results, seeds):
        print()
        print(decoders)


if __name__ == "__main__":
    main()
