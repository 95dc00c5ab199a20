"""`python main.py --mode=eval`: restore a run's latest checkpoint, run the suite, write results and a report."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence

import ml_collections
from absl import logging

from configs.errors import ConfigError
from evaluation import report, results
from evaluation.digits import digits_dataset
from evaluation.eval_data import shapes_dataset
from evaluation.evaluators import Evaluators
from evaluation.suite import Result, run_suite
from evaluation.user_files import user_dataset
from input_pipeline.tokenizer import load_tokenizer
from models.two_tower import build_model
from training.trained_runs import (  # noqa: F401 (restore_params, ModelEncoders: the names tools import from here)
    ModelEncoders,
    _latest_step,
    check_config_matches_run,
    load_trained_run,
    restore_params,
    run_tokenizer_path,
)

# module -> the pip package that provides it (all in the `eval` extra)
EVAL_PACKAGES = {"matplotlib": "matplotlib", "sklearn": "scikit-learn", "PIL": "pillow"}


def check_eval_dependencies() -> None:
    missing = [package for module, package in EVAL_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"--mode=eval needs {', '.join(missing)}; install them with pip install -e '.[eval]'.")


def model_name(config: ml_collections.ConfigDict) -> str:
    image, text = config.model.image, config.model.text
    return (
        f"ViT-w{image.width}-d{image.depth}-p{image.patch_size}-{config.data.image_size}px"
        f"-text-w{text.width}-d{text.depth}-e{config.model.embed_dim}"
    )


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, data_paths: Sequence[str] = ()) -> dict:
    """Evaluates the latest checkpoint of `workdir` on shapes, digits and `data_paths` (.npz files or folders).

    Writes <workdir>/eval/step_<N>/: results/*.json (CLIP_benchmark layout), results.csv,
    results.txt (the combined table, also printed) and report/index.html with its plots.
    Returns {"step", "records", "table", "output_dir", "report"}.
    """
    start = time.time()
    if config.model.kind != "two_tower":
        raise ConfigError(
            f"--mode=eval scores a two-tower model, not a {config.model.kind}; rerun the training command instead: "
            "a finished run evaluates its config.evals again and prints its summary."
        )
    check_eval_dependencies()
    if _latest_step(workdir, config.keep_checkpoints) is None:
        raise ConfigError(
            f"{workdir} holds no checkpoint to evaluate; train first with the same command without --mode=eval."
        )
    check_config_matches_run(config, workdir)
    tokenizer_path = run_tokenizer_path(config, workdir)
    if not os.path.exists(tokenizer_path):  # a pretrained tokenizer (wordpiece, clip_bpe) may be a folder
        raise ConfigError(f"{workdir} has no tokenizer.model; train first with the same command without --mode=eval.")
    image_size = config.data.image_size  # datasets first: a wrong --eval_data path fails before any compile
    user_datasets = [user_dataset(path, image_size) for path in data_paths]
    datasets = [shapes_dataset(config.eval.num_examples, image_size, config.data.cache_dir), digits_dataset(image_size)]
    datasets += user_datasets
    tokenizer = load_tokenizer(tokenizer_path, config.text.tokenizer)
    model = build_model(config, tokenizer.vocab_size)
    params, step = restore_params(config, workdir, model)
    logging.info("Evaluating step %d of %s", step, workdir)
    encoders = ModelEncoders(model, params, tokenizer, config.model.text.max_len, config.eval.batch_size)
    suite = run_suite(datasets, encoders.images, encoders.texts)
    # The trainer's evaluators (config.evals), as the training loop runs them: one result per entry.
    evaluators = Evaluators(config, model, tokenizer)
    logging.info("%s", evaluators.describe(config))
    named = [Result(name, kind, metrics) for name, (kind, metrics) in evaluators.by_entry(params).items()]

    run_name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
    model_id, pretrained = model_name(config), f"{run_name}-step{step}"
    records = [results.benchmark_record(r, model_id, pretrained) for r in [*suite.results, *named]]
    output_dir = os.path.join(workdir, "eval", f"step_{step}")
    results.write_records(records, os.path.join(output_dir, "results"))
    results.write_csv(records, os.path.join(output_dir, "results.csv"))
    table = results.format_table(records)
    with open(os.path.join(output_dir, "results.txt"), "w", encoding="utf-8") as f:
        f.write(table)
    facts = [
        ("run", os.path.abspath(workdir)),
        ("step", str(step)),
        ("objective", config.objective),
        ("model", model_id),
        ("datasets", ", ".join(d.name for d in datasets)),
        ("config.evals", ", ".join(f"{r.dataset} ({r.task})" for r in named) or "none"),
        ("evaluation time (without this report)", f"{time.time() - start:.0f} s"),
    ]
    index = report.write_report(
        os.path.join(output_dir, "report"),
        suite.views,
        records,
        report.read_metrics(os.path.join(workdir, "metrics.jsonl")),
        f"Evaluation of {run_name} at step {step}",
        facts,
    )
    return {"step": step, "records": records, "table": table, "output_dir": output_dir, "report": index}
