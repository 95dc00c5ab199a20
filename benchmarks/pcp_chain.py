"""PCP's comparison (METHODS.md §22, configs/pcp.py) at paired seeds: prompt-based fine-tuning of the pretrained MLM
straight away, after TAPT, after PCP, and after PCP with random pseudo-labels (the control that should not help).

    python benchmarks/pcp_chain.py --seeds=0,1,2 --jobs=2 --workdir=runs/pcp_seeds [-- --config.total_steps=...]

Per seed, each stage a `main.py` run of configs/pcp.py in <workdir>/<arm>_seed<seed> (resumed if it finished or
stopped), started from the run before it:
    pretrain -> prompt (the labeller) ; pretrain -> tapt -> prompt ; pretrain -> pcp (labels of `prompt`) -> prompt ;
    pretrain -> pcp (random labels) -> prompt
Overrides after `--` go to every run. Prints the fine-tuned arms' held-out claims (mean ± sd), each arm minus
plain prompt-based fine-tuning on the same seeds (mean, 95% CI, seeds higher), the continued-pretrained models'
own accuracy at the prompt before any fine-tuning, and how many pseudo-labels agree with the gold labels.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.compare_methods import run, run_all  # noqa: E402
from launch.results import paired_table, results_table  # noqa: E402

CONFIG = "configs/pcp.py"
# arm -> (stage, the arm it starts from, the labeller arm for stage pcp or 'random')
ARMS = {
    "pretrain": ("pretrain", "", ""),
    "prompt": ("prompt", "pretrain", ""),
    "tapt": ("tapt", "pretrain", ""),
    "pcp": ("pcp", "pretrain", "prompt"),
    "pcp_random": ("pcp", "pretrain", "random"),
    "tapt_prompt": ("prompt", "tapt", ""),
    "pcp_prompt": ("prompt", "pcp", ""),
    "pcp_random_prompt": ("prompt", "pcp_random", ""),
}
FINE_TUNED = {"prompt": "prompt FT", "tapt_prompt": "TAPT → prompt FT", "pcp_prompt": "PCP → prompt FT",
              "pcp_random_prompt": "PCP, random labels → prompt FT"}  # fmt: skip
CONTINUED = {"tapt": "TAPT", "pcp": "PCP", "pcp_random": "PCP, random labels"}


def waves() -> list[list[str]]:
    """The arms in order of dependence: each wave's arms start from earlier waves' only."""
    done, order = set(), []
    while len(done) < len(ARMS):
        wave = [a for a, (_, start, labeller) in ARMS.items() if a not in done and {start, labeller} - {"", "random"}
                <= done]  # fmt: skip
        order.append(wave)
        done.update(wave)
    return order


def arm_overrides(arm: str, workdir: str, seed: int) -> list[str]:
    _, start, labeller = ARMS[arm]
    flags = [f"--config.init_from.workdir={os.path.join(workdir, f'{start}_seed{seed}')}"] if start else []
    if labeller:
        where = labeller if labeller == "random" else os.path.join(workdir, f"{labeller}_seed{seed}")
        flags.append(f"--config.pcp.labeller={where}")
    return flags


def pseudo_label_agreement(run_dir: str) -> float:
    """The % of a stage=pcp run's pseudo-labels equal to the gold labels (training/pseudo_labels.py; its labeller
    labels the pool again, as the run did)."""
    from training.pseudo_labels import pseudo_labelled_pool
    from training.trained_runs import run_config

    return pseudo_labelled_pool(run_config(run_dir))[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    parser.add_argument("--workdir", required=True, help="Parent folder of the runs.")
    parser.add_argument("--jobs", type=int, default=1, help="Runs at once, each on its own share of the CPUs.")
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"]
    workdir, seeds = os.path.abspath(args.workdir), [int(s) for s in args.seeds.split(",")]
    summaries: dict[str, dict[int, dict]] = {}
    for wave in waves():
        tasks = [
            (f"{CONFIG}:stage={ARMS[arm][0]}", seed, os.path.join(workdir, f"{arm}_seed{seed}"),
             overrides + arm_overrides(arm, workdir, seed))
            for arm in wave for seed in seeds
        ]  # fmt: skip
        for (_, seed, run_dir, _), summary in zip(tasks, run_all(tasks, args.jobs, run), strict=True):
            summaries.setdefault(os.path.basename(run_dir).rsplit("_seed", 1)[0], {})[seed] = summary
            print(f"done: {os.path.basename(run_dir)}", file=sys.stderr, flush=True)
    tuned = {name: [summaries[arm][s] for s in seeds] for arm, name in FINE_TUNED.items()}
    print(results_table(tuned, name_header="arm"))
    print()
    print(paired_table(tuned, FINE_TUNED["prompt"], seeds))
    print()
    print("Before fine-tuning (each continued-pretrained model read at the prompt's slot as it is):")
    print(results_table({name: [summaries[arm][s] for s in seeds] for arm, name in CONTINUED.items()}, "model"))
    print()
    agreement = [pseudo_label_agreement(os.path.join(workdir, f"pcp_seed{s}")) for s in seeds]
    print("pseudo-labels equal to the gold labels (%, per seed): " + ", ".join(f"{a:.1f}" for a in agreement))


if __name__ == "__main__":
    main()
