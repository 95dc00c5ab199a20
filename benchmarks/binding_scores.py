"""Binding scores (evaluation/binding_eval.py) of trained runs' latest checkpoints, one markdown row per run.

    python benchmarks/binding_scores.py --config=configs/laclip.py --workdirs='runs/compare/laclip_seed*' \
        [--per_kind=500]

Reads the checkpoints and writes nothing into the runs (a finished run rerun by compare_methods.py or
`--mode=eval` scores the same splits too, but evaluates everything else as well). Pass the --config the
runs were trained with (`file.py[:arg]`); runs of several configs, or trained with model overrides, take
`--mode=eval` or one call each.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere

from configs.errors import ConfigError  # noqa: E402
from evaluation import binding_eval  # noqa: E402
from evaluation.run import ModelEncoders, load_trained_run  # noqa: E402
from input_pipeline.binding import KINDS  # noqa: E402
from launch.sweep import load_config_file  # noqa: E402

COLUMNS = [f"binding/{k}" for k in (*KINDS, "mean", "image_blind")] + ["binding_rewrites/mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="The config file the runs were trained with.")
    parser.add_argument("--workdirs", required=True, help="Comma-separated globs of run folders.")
    parser.add_argument(
        "--per_kind", type=int, default=500, help="Images per kind (the trainer: eval.num_examples // 2)."
    )
    args = parser.parse_args()
    _, config = load_config_file(args.config)
    workdirs = sorted(w for pattern in args.workdirs.split(",") for w in glob.glob(pattern))
    if not workdirs:
        raise SystemExit(f"error: no run folder matches {args.workdirs!r}; pass the --workdir of trained runs.")
    data = binding_eval.binding_set(args.per_kind, config.data.image_size)
    print("| run | step | " + " | ".join(COLUMNS) + " | seconds |")
    print("|" + "---|" * (len(COLUMNS) + 3))
    for workdir in workdirs:
        start = time.time()
        try:
            step, metrics = score_run(config, workdir, data)
        except ConfigError as e:  # the run was trained with another model than --config's
            raise SystemExit(f"error: {e}") from None
        cells = " | ".join(f"{100 * metrics[c]:.1f}" for c in COLUMNS)
        print(f"| {workdir} | {step} | {cells} | {time.time() - start:.0f} |", flush=True)


def score_run(config, workdir: str, data: binding_eval.BindingSet) -> tuple[int, dict[str, float]]:
    """(step, binding metrics) of the latest checkpoint of `workdir`."""
    model, tokenizer, params, step = load_trained_run(config, workdir)
    encoders = ModelEncoders(model, params, tokenizer, config.model.text.max_len, config.eval.batch_size)
    return step, binding_eval.evaluate_binding(data, lambda x: encoders.images(x)[1], encoders.texts)


if __name__ == "__main__":
    main()
