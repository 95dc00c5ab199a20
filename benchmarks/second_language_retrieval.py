"""Image retrieval from English and second-language captions for trained runs (uCLIP's measure).

    python benchmarks/second_language_retrieval.py --workdirs='runs/post/clip_seed*,runs/post/uclip_seed*'

Each workdir's latest checkpoint is evaluated with evaluation/second_language.py on the shapes test
images, with the config recorded in its run_info.json; runs named <name>_seed<k> are folded into
one row, mean ± standard deviation over seeds.
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

COLUMNS = ("clip_english", "clip_second", "uclip_english", "uclip_second")


def evaluate_run(workdir: str, num_examples: int) -> dict[str, float]:
    from evaluation.run import restore_params
    from evaluation.second_language import second_language_retrieval
    from input_pipeline.tokenizer import load_tokenizer
    from models.two_tower import build_model

    with open(os.path.join(workdir, "run_info.json"), encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f)["config"])
    tokenizer = load_tokenizer(os.path.join(workdir, "tokenizer.model"))
    model = build_model(config, tokenizer.vocab_size)
    params, _ = restore_params(config, workdir, model)
    mismatch = config.uclip.mismatch if "uclip" in config else 0.5
    return second_language_retrieval(
        model,
        params,
        tokenizer,
        num_examples=num_examples,
        image_size=config.data.image_size,
        max_len=config.model.text.max_len,
        mismatch=mismatch,
    )


def table(results: dict[str, list[dict[str, float]]], metric: str) -> str:
    lines = [f"| run | seeds | {' | '.join(f'{c} {metric}' for c in COLUMNS)} |", "|---|---|" + "---|" * len(COLUMNS)]
    for name, runs in results.items():
        cells = []
        for column in COLUMNS:
            values = [100 * r[f"{column}/{metric}"] for r in runs if f"{column}/{metric}" in r]
            cells.append(mean_std_cell(values, 1))
        lines.append(f"| {name} | {len(runs)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdirs", required=True, help="Comma-separated run folders or globs.")
    parser.add_argument("--num_examples", type=int, default=1000, help="Test images (and captions).")
    args = parser.parse_args()
    results = {
        name: [evaluate_run(w, args.num_examples) for w in workdirs]
        for name, workdirs in runs_by_name(args.workdirs).items()
    }
    for metric in ("text_to_image_R@1", "text_to_image_R@10"):
        print(table(results, metric) + "\n")


if __name__ == "__main__":
    main()
