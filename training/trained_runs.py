"""A trained run of this project, loaded: its latest params, its tokenizer, and its towers as jitted encoders of
NumPy inputs. `--mode=eval` (evaluation/run.py), --mode=generate, the benchmarks' scorers, and the captioners that
read a frozen CLIP run (LiMBeR, CLOSE: training/caption_task.py, evaluation/captioning_eval.py) share it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from configs.common import get_base_config
from configs.errors import ConfigError
from input_pipeline import transforms
from input_pipeline.tokenizer import Tokenizer, load_tokenizer
from losses.objectives import get_objective
from models.two_tower import TwoTower, build_model
from training import mesh as mesh_lib
from training.checkpointing import Checkpointer, checkpoints_dir
from training.objective_inputs import input_shapes
from training.optimizer import make_optimizer
from training.partitioning import abstract_params, create_train_state

IMAGE_KEYS, TEXT_KEYS = ("image_features", "image_embedding"), ("text_embedding",)
# Model settings that change how the step runs, not the parameters: a run may be evaluated with others.
EXECUTION_ONLY = ("model.remat.", "model.scan_layers.", "model.attention.")


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
        if key in trained and key not in EXECUTION_ONLY and trained.get(key) != current.get(key):
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


def run_tokenizer_path(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Where a run's tokenizer is: config.text.tokenizer_path (a pretrained tokenizer's file or folder, or a given
    SentencePiece model), else the SentencePiece model the run trained and saved in its workdir."""
    return config.text.tokenizer_path or os.path.join(workdir, "tokenizer.model")


def load_trained_run(config: ml_collections.ConfigDict, workdir: str) -> tuple[TwoTower, Tokenizer, dict, int]:
    """(model, tokenizer, params, step) of the latest checkpoint of a run trained with `config`'s model; raises
    ConfigError when the run was trained with another model."""
    check_config_matches_run(config, workdir)
    tokenizer = load_tokenizer(run_tokenizer_path(config, workdir), config.text.tokenizer)
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


def run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run of main.py trained with (its run_info.json); ConfigError when `workdir` holds none."""
    path = os.path.join(workdir, "run_info.json")
    if not os.path.isfile(path):
        raise ConfigError(
            f"{workdir!r} holds no run_info.json, so it is no main.py run; pass the --workdir of a trained run."
        )
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f)["config"]
    # A key the record lacks was added to the code after the run trained, which then had that key's default.
    return _merged(get_base_config(None), recorded)


DECODER_SIZES = ("width", "depth", "heads", "max_len", "mlp_dim")


def check_language_model_run(workdir: str, sizes, *, key: str, sizes_key: str, what: str, trained_by: str) -> None:
    """Raises ConfigError unless `workdir` (named by config `key`) holds a finished language-model run whose decoder
    has `sizes` (config `sizes_key`, the section with DECODER_SIZES): its record, kind, sizes and tokenizer, with
    no jax. `what` names the model in messages ("the language model"); `trained_by`, the config that trains it."""
    if not os.path.isfile(os.path.join(workdir, "run_info.json")):
        raise ConfigError(
            f"{key} {workdir!r} holds no run_info.json; train {what} there first ({trained_by}) or fix the path."
        )
    model = run_config(workdir).model
    if model.get("kind") != "decoder":
        raise ConfigError(f"{key} {workdir!r} is no language-model run; name a {trained_by} run.")
    for size in DECODER_SIZES:
        if model.decoder[size] != sizes[size]:
            raise ConfigError(
                f"{sizes_key}.{size} is {sizes[size]} but {what} in {workdir!r} has {model.decoder[size]}; "
                f"set --{sizes_key}.{size}={model.decoder[size]}."
            )
    if not os.path.isfile(os.path.join(workdir, "tokenizer.model")):
        raise ConfigError(f"{workdir!r} holds no tokenizer.model; finish training {what} first.")


def _merged(base: ml_collections.ConfigDict, recorded: dict) -> ml_collections.ConfigDict:
    """`base` with every value of `recorded` (nested) written over it; lists become tuples where base has one."""
    for key, value in recorded.items():
        if isinstance(value, dict) and isinstance(base.get(key), ml_collections.ConfigDict):
            _merged(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), tuple):
            base[key] = tuple(value)
        elif key in base and not isinstance(value, dict):
            base[key] = value
        else:
            with base.ignore_type():
                base[key] = value
    return base


@functools.lru_cache(maxsize=4)
def frozen_encoders(workdir: str, batch_size: int = 256) -> tuple[ModelEncoders, ml_collections.ConfigDict, int]:
    """(the towers of a trained two-tower run as ModelEncoders, its config, its step), read once per process."""
    config = run_config(workdir)
    model, tokenizer, params, step = load_trained_run(config, workdir)
    return ModelEncoders(model, params, tokenizer, config.model.text.max_len, batch_size), config, step
