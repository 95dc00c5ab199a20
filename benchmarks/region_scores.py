"""Region scores (evaluation/region_eval.py) of trained runs' latest checkpoints, one markdown row per run: the
RoI-pooling baseline of any run (a CLIP run has no prompter), and the prompter and grounding head of a CLOC run.

    python benchmarks/region_scores.py --config=configs/clip.py --workdirs='runs/compare/clip_seed*' \
        [--num_examples=1000]

Reads the checkpoints and writes nothing into the runs. Pass the --config the runs were trained with
(`file.py[:arg]`); runs of several configs take one call each.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere

from configs.errors import ConfigError  # noqa: E402
from evaluation.region_eval import RegionEvaluator  # noqa: E402
from evaluation.run import load_trained_run  # noqa: E402
from launch.sweep import load_config_file  # noqa: E402

COLUMNS = (
    "regions/caption_top1", "regions/roi_caption_top1", "regions/colour_shape", "regions/roi_colour_shape",
    "grounding/iou50", "grounding/roi_iou50", "grounding/roi_ceiling", "grounding/chance",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="The config file the runs were trained with.")
    parser.add_argument("--workdirs", required=True, help="Comma-separated globs of run folders.")
    parser.add_argument(
        "--num_examples", type=int, default=1000, help="Held-out images (the trainer's eval.num_examples)."
    )
    args = parser.parse_args()
    _, config = load_config_file(args.config)
    workdirs = sorted(w for pattern in args.workdirs.split(",") for w in glob.glob(pattern))
    if not workdirs:
        raise SystemExit(f"error: no run folder matches {args.workdirs!r}; pass the --workdir of trained runs.")
    print("| run | step | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for workdir in workdirs:
        try:
            model, tokenizer, params, step = load_trained_run(config, workdir)
        except ConfigError as e:  # the run was trained with another model than --config's
            raise SystemExit(f"error: {e}") from None
        evaluator = RegionEvaluator(
            model, tokenizer, num_examples=args.num_examples, batch_size=config.eval.batch_size,
            image_size=config.data.image_size, max_len=config.model.text.max_len,
        )  # fmt: skip
        metrics = evaluator.evaluate(params)
        cells = " | ".join(f"{100 * metrics[c]:.1f}" if c in metrics else "—" for c in COLUMNS)
        print(f"| {workdir} | {step} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
