"""Config and workdir checks that run before anything compiles: one clear sentence per problem."""

from __future__ import annotations

import os

import ml_collections

from configs.common import DATASETS
from input_pipeline.pipeline import TEXT_AUGMENTATIONS
from losses.objectives import OBJECTIVES


class ConfigError(ValueError):
    """A mistake in the config or command line that the user can fix."""


def validate_config(config: ml_collections.ConfigDict) -> None:
    if config.objective not in OBJECTIVES:
        raise ConfigError(
            f"Unknown objective {config.objective!r}; set config.objective to one of {sorted(OBJECTIVES)}."
        )
    if config.data.name not in DATASETS:
        raise ConfigError(f"Unknown dataset {config.data.name!r}; set config.data.name to one of {list(DATASETS)}.")
    if config.data.text_augmentation not in TEXT_AUGMENTATIONS:
        raise ConfigError(
            f"Unknown text augmentation {config.data.text_augmentation!r}; "
            f"set config.data.text_augmentation to one of {list(TEXT_AUGMENTATIONS)}."
        )
    positive = {
        "total_steps": config.total_steps,
        "batch_size": config.batch_size,
        "log_every_steps": config.log_every_steps,
        "eval_every_steps": config.eval_every_steps,
        "checkpoint_every_steps": config.checkpoint_every_steps,
        "optimizer.learning_rate": config.optimizer.learning_rate,
        "data.train_size": config.data.train_size,
        "eval.num_examples": config.eval.num_examples,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"config.{key} must be positive, not {value!r}.")
    if config.batch_size > config.data.train_size:
        raise ConfigError(
            f"config.batch_size ({config.batch_size}) exceeds config.data.train_size ({config.data.train_size}); "
            "lower the batch size or raise the dataset size."
        )
    if config.text.tokenizer_path and not os.path.isfile(config.text.tokenizer_path):
        raise ConfigError(
            f"Tokenizer file {config.text.tokenizer_path!r} does not exist; fix config.text.tokenizer_path "
            "or set it to '' to train a tokenizer on the training captions."
        )
    low, high = config.data.crop_scale
    if not 0 < low <= high <= 1:
        raise ConfigError(f"config.data.crop_scale must satisfy 0 < low <= high <= 1, not {(low, high)}.")


def validate_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_probe.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"Cannot write to workdir {workdir!r} ({e.strerror}); pass a writable --workdir.") from None
