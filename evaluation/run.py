"""`python main.py --mode=eval`: restore a run's latest checkpoint, run the suite, write results and a report."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from configs.errors import ConfigError
from evaluation import report, results
from evaluation.digits import digits_dataset
from evaluation.eval_data import shapes_dataset
from evaluation.evaluators import Evaluators
from evaluation.suite import Result, run_suite
from evaluation.user_files import user_dataset
from input_pipeline import transforms
from input_pipeline.tokenizer import Tokenizer, load_tokenizer
from losses.objectives import get_objective
from models.two_tower import TwoTower, build_model
from training import mesh as mesh_lib
from training.checkpointing import Checkpointer, checkpoints_dir
from training.objective_inputs import input_shapes
from training.optimizer import make_optimizer
from training.partitioning import abstract_params, create_train_state

# module -> the pip package that provides it (all in the `eval` extra)
EVAL_PACKAGES = {"matplotlib": "matplotlib", "sklearn": "scikit-learn", "PIL": "pillow"}
IMAGE_KEYS, TEXT_KEYS = ("image_features", "image_embedding"), ("text_embedding",)


def check_eval_dependencies() -> None:
    missing = [package for module, package in EVAL_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"--mode=eval needs {', '.join(missing)}; install them with pip install -e '.[eval]'.")


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}


def check_config_matches_run(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises ConfigError naming the first model setting that differs from the run's run_info.json (keys the
    record lacks are not compared)."""
    path = os.path.join(workdir, "run_info.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        trained = _flat(json.load(f)["config"].get("model", {}), "model.")
    current = _flat(json.loads(json.dumps(config.model.to_dict(), default=str)), "model.")
    # A key the run's record lacks was added to the code after it trained, which then had that key's default.
    for key in sorted(set(trained) | set(current)):
        if key in trained and trained.get(key) != current.get(key):
            raise ConfigError(
                f"config.{key.rstrip('.')} is {current.get(key)!r} but the run in {workdir} was trained with "
                f"{trained.get(key)!r}; pass the --config and overrides of that run (see its run_info.json)."
            )


def _latest_step(workdir: str, keep: int) -> int | None:
    if not os.path.isdir(checkpoints_dir(workdir)):  # checked first: Checkpointer would create the folder
        return None
    checkpointer = Checkpointer(workdir, keep)
    step = checkpointer.latest_step()
    checkpointer.close()
    return step


def load_trained_run(config: ml_collections.ConfigDict, workdir: str) -> tuple[TwoTower, Tokenizer, dict, int]:
    """(model, tokenizer, params, step) of the latest checkpoint of a run trained with `config`'s model; raises
    ConfigError when the run was trained with another model."""
    check_config_matches_run(config, workdir)
    tokenizer = load_tokenizer(os.path.join(workdir, "tokenizer.model"))
    model = build_model(config, tokenizer.vocab_size)
    params, step = restore_params(config, workdir, model)
    return model, tokenizer, params, step


def restore_params(config: ml_collections.ConfigDict, workdir: str, model: TwoTower) -> tuple[dict, int]:
    """The params of the latest checkpoint in `workdir`, as host arrays, and its step."""
    mesh = mesh_lib.make_mesh()
    inputs = input_shapes(config, abstract_params(config, model))  # shapes only: the extra state is restored
    objective = get_objective(config.objective)
    shapes = jax.eval_shape(
        lambda i: create_train_state(config, model, make_optimizer(config), objective, mesh, inputs=i), inputs
    )
    sharding = mesh_lib.replicated(mesh)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)
    checkpointer = Checkpointer(workdir, config.keep_checkpoints)
    state, _ = checkpointer.restore(abstract)
    checkpointer.close()
    return jax.device_get(state.params), int(state.step)


class ModelEncoders:
    """Jitted image and text towers over numpy inputs, in chunks of `batch_size` rows."""

    def __init__(self, model: TwoTower, params, tokenizer: Tokenizer, max_len: int, batch_size: int):
        self.tokenizer, self.max_len, self.batch_size = tokenizer, max_len, batch_size
        self.params = jax.device_put(params)  # one device: evaluation batches are small
        self._image = jax.jit(lambda p, x: _pick(model.apply({"params": p}, x, method=model.encode_image), IMAGE_KEYS))
        self._text = jax.jit(lambda p, t: _pick(model.apply({"params": p}, t, method=model.encode_text), TEXT_KEYS))

    def _chunked(self, fn, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """`fn` over chunks of `batch_size` rows, the last padded with copies of its first row, so each
        tower compiles once."""
        size, outputs = self.batch_size, []
        for start in range(0, len(inputs), size):
            chunk = inputs[start : start + size]
            padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), axis=0)])
            outputs.append({k: np.asarray(v)[: len(chunk)] for k, v in fn(self.params, padded).items()})
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

    def images(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] -> (features [N, D], normalised embeddings [N, D])."""
        out = self._chunked(self._image, transforms.normalize_image(images))
        return out["image_features"], out["image_embedding"]

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """[N] strings -> normalised embeddings [N, D]."""
        return self._chunked(self._text, self.tokenizer.encode(list(texts), self.max_len))["text_embedding"]


def _pick(outputs: dict, keys: tuple[str, ...]) -> dict:
    return {k: outputs[k] for k in keys}


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
    check_eval_dependencies()
    if _latest_step(workdir, config.keep_checkpoints) is None:
        raise ConfigError(
            f"{workdir} holds no checkpoint to evaluate; train first with the same command without --mode=eval."
        )
    check_config_matches_run(config, workdir)
    tokenizer_path = config.text.tokenizer_path or os.path.join(workdir, "tokenizer.model")
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
