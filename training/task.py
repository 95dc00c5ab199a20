"""The kind of data a run trains on, as the loop sees it: image-text (shapes or your files), text only
(training/text_task.py), or captions with a frozen CLIP run's embeddings (training/caption_task.py). Everything
else — model, step, checkpoints, the evaluators of config.evals — is shared."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import ml_collections

from configs.common import VIDEO_DATASETS
from configs.errors import ConfigError
from input_pipeline import segmentation
from input_pipeline.class_incremental import ClassIncrementalSource
from input_pipeline.pipeline import TrainTransform, VideoTrainTransform
from input_pipeline.shape_edits import EDIT_DATASET
from input_pipeline.sources import make_source, train_texts
from input_pipeline.tokenizer import Tokenizer
from losses.objectives import get_objective
from training import caption_task, objective_inputs, text_task


class Task(NamedTuple):
    source: Any  # grain random-access source of training records
    corpus: Callable[[], Iterator[str]]  # the tokenizer's training texts
    transform: Callable[[Tokenizer], Any]  # tokenizer -> the per-example transform of make_train_iterator
    symbols: tuple[str, ...] = ()  # control tokens a tokenizer trained for the run holds as single pieces


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The Task of config.data; ConfigError when the data cannot be opened."""
    if caption_task.is_captioner(config):  # LiMBeR, CLOSE: captions with a frozen CLIP run's embeddings
        records = caption_task.make_source(config)
        transform = lambda tokenizer: caption_task.make_transform(config, tokenizer)  # noqa: E731
        return Task(records, lambda: (r["text"] for r in records), transform)
    if text_task.is_text_data(config):
        source = text_task.make_source(config)
        return Task(
            source, lambda: text_task.corpus(source), lambda tokenizer: text_task.make_transform(config, tokenizer),
            text_task.tokenizer_symbols(config),
        )  # fmt: skip
    source = make_source(config)  # shapes, shapes_video or your files (input_pipeline/sources.py)
    _check_record_fields(config, source)
    if config.objective == "coconut":
        # One experience of the class-incremental split and its rehearsal buffer. The tokenizer reads every class's
        # captions, as a vocabulary fixed before the stream starts (a pretrained model's) would.
        c = config.coconut
        experience = ClassIncrementalSource(source, c.label, c.task, c.tasks, c.buffer_per_class, c.replay_fraction)
        return Task(experience, lambda: train_texts(source), transform_for(config))
    if config.data.name in VIDEO_DATASETS:
        fields = objective_inputs.batch_fields(config)
        frames, max_len = config.model.video_frames, config.model.text.max_len
        return Task(
            source,
            lambda: train_texts(source),
            lambda tokenizer: VideoTrainTransform(tokenizer, max_len, frames, fields),
        )

    transform = transform_for(config)
    if segmentation.mask_options(config):
        # DenseCLIP on your masks reads text only in its class-name prompts, and the images may have no captions.
        return Task(source, lambda: itertools.chain(train_texts(source), config.denseclip.class_names), transform)
    return Task(source, lambda: train_texts(source), transform)


def transform_for(config: ml_collections.ConfigDict) -> Callable[[Tokenizer], TrainTransform]:
    """tokenizer -> the image-text records' TrainTransform of config."""

    def transform(tokenizer: Tokenizer) -> TrainTransform:
        return TrainTransform(
            tokenizer,
            config.model.text.max_len,
            config.data.text_augmentation,
            tuple(config.data.crop_scale),
            objective_inputs.batch_fields(config),
            image_size=config.data.image_size,
            rewrite_warmup_examples=config.data.rewrite_warmup_steps * (config.batch_size // jax.process_count()),
        )

    return transform


def _check_record_fields(config: ml_collections.ConfigDict, source) -> None:
    """Your files hold the texts the objective reads (a WebDataset's json fields), seen on the first usable record."""
    needed = get_objective(config.objective).record_fields
    if not needed or config.data.name in ("shapes", EDIT_DATASET, *VIDEO_DATASETS):
        return
    first = next((r for r in map(source.texts, range(min(len(source), 100))) if "skipped" not in r), {})
    absent = [field for field in needed if not first.get(field)]
    if absent:
        raise ConfigError(
            f"The {config.objective} objective reads each example's {absent[0]!r}, which the first usable example "
            f"of config.data.path lacks; add {absent[0]!r} to every sample's json (docs/data.md)."
        )
