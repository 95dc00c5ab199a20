"""Image-text retrieval through ProCLIP's text path and through the CLIP text tower, for trained runs.

    python benchmarks/proclip_retrieval.py --workdirs='runs/post/clip_continued_seed*,runs/post2/proclip_seed*'

Each workdir's latest checkpoint is evaluated with evaluation/proclip.py on the shapes test images,
with the config recorded in its run_info.json; runs named <name>_seed<k> are folded into one row,
mean ± standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere

import ml_collections  # noqa: E402

from launch.results import mean_std_cell, runs_by_name  # noqa: E402

COLUMNS = ("clip", "proclip")


def evaluate_run(workdir: str, num_examples: int) -> dict[str, float]:
    from evaluation.proclip import proclip_retrieval
    from evaluation.run import restore_params
    from input_pipeline.tokenizer import load_tokenizer
    from models.two_tower import build_model
    from training.objective_inputs import prepare_inputs

    with open(os.path.join(workdir, "run_info.json"), encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f)["config"])
    tokenizer = load_tokenizer(os.path.join(workdir, "tokenizer.model"))
    model = build_model(config, tokenizer.vocab_size)
    params, _ = restore_params(config, workdir, model)
    inputs = prepare_inputs(config, params)  # ProCLIP's embedder, read from proclip.embedder_workdir
    return proclip_retrieval(model, params, config, tokenizer, num_examples=num_examples, inputs=inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdirs", required=True, help="Comma-separated run folders or globs.")
    parser.add_argument("--num_examples", type=int, default=1000, help="Test images (and captions).")
    args = parser.parse_args()
    results = {
        name: [evaluate_run(w, args.num_examples) for w in workdirs]
        for name, workdirs in runs_by_name(args.workdirs).items()
    }
    metrics = ("image_to_text_R@1", "text_to_image_R@1", "text_to_image_R@10")
    header = [f"{c} {m}" for c in COLUMNS for m in metrics]
    print(f"| run | seeds | {' | '.join(header)} |\n|---|---|" + "---|" * len(header))
    for name, runs in results.items():
        cells = []
        for column in COLUMNS:
            for metric in metrics:
                values = [100 * r[f"{column}/{metric}"] for r in runs if f"{column}/{metric}" in r]
                cells.append(mean_std_cell(values, 1))
        print(f"| {name} | {len(runs)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
