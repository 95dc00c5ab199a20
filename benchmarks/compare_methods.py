"""Trains several configs over several seeds and prints their final metrics as a markdown table.

    python benchmarks/compare_methods.py --configs=configs/clip.py,configs/laclip.py --seeds=0,1,2 \
        --workdir=runs/compare [-- --config.total_steps=600 ...]

Each (config, seed) trains in <workdir>/<config name>_seed<seed> with `main.py` (resuming
if it already finished or stopped), and the table shows mean ± standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = {
    "zero-shot shape+colour": "zero_shot/shape_colour",
    "zero-shot shape": "zero_shot/shape",
    "zero-shot colour": "zero_shot/colour",
    "I→T R@1": "retrieval/image_to_text_R@1",
    "T→I R@1": "retrieval/text_to_image_R@1",
    "I→T R@1 (paraphrases)": "retrieval_rewrites/image_to_text_R@1",
    "T→I R@1 (paraphrases)": "retrieval_rewrites/text_to_image_R@1",
}


def run(config: str, seed: int, workdir: str, overrides: list[str]) -> dict:
    summary_path = os.path.join(workdir, "summary.json")
    command = [sys.executable, "main.py", f"--config={config}", f"--workdir={workdir}", f"--config.seed={seed}"]
    subprocess.run(command + overrides, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(summary_path, encoding="utf-8") as f:
        return json.load(f)


def table(results: dict[str, list[dict]]) -> str:
    header = "| config | seeds | minutes | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 3)]
    for name, summaries in results.items():
        cells = []
        for key in COLUMNS.values():
            values = 100 * np.array([s["eval"][key] for s in summaries])
            cells.append(f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0:.1f}")
        minutes = np.mean([s["wall_time_s"] for s in summaries]) / 60
        lines.append(f"| {name} | {len(summaries)} | {minutes:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", required=True, help="Comma-separated config files.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    parser.add_argument("--workdir", required=True, help="Parent folder of the runs.")
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"]
    results: dict[str, list[dict]] = {}
    for config in args.configs.split(","):
        name = os.path.splitext(os.path.basename(config.split(":")[0]))[0]
        for seed in (int(s) for s in args.seeds.split(",")):
            workdir = os.path.join(os.path.abspath(args.workdir), f"{name}_seed{seed}")
            results.setdefault(name, []).append(run(config, seed, workdir, overrides))
            print(f"done: {name} seed {seed}", file=sys.stderr, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
