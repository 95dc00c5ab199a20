"""The grain training pipeline: shuffle, caption sampling, augmentation, tokenization, batching."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grain
import numpy as np

from input_pipeline import transforms
from input_pipeline.shape_video import frame_indices
from input_pipeline.skipping import DropSkipped, SkipAware
from input_pipeline.tokenizer import Tokenizer

TEXT_AUGMENTATIONS = ("none", "laclip")


@dataclasses.dataclass
class TrainTransform(grain.transforms.RandomMap):
    """Record -> {"image": uint8 [S, S, 3], "text": int32 [max_len], **batch_fields}, drawn afresh per
    example per epoch. `batch_fields(record, rng, encode)` adds an objective's own inputs (Objective).
    S is `image_size` (None: the record's image side; records of any aspect need it set). Images stay
    uint8 up to the device, where the train step normalises them (training/train_step.normalize_pixels):
    4x fewer bytes to move, and no float work on the host."""

    tokenizer: Tokenizer
    max_len: int
    text_augmentation: str = "none"
    crop_scale: tuple[float, float] = (0.8, 1.0)
    batch_fields: Callable[..., dict] | None = None
    image_size: int | None = None
    # LaCLIP's rewrite warm-up, in examples of this process's stream (the record's "position"): the
    # chance of a rewrite rises from 0 to the paper's K/(K+1) over these (docs/results.md, seed 1).
    rewrite_warmup_examples: int = 0

    @property
    def uses_positions(self) -> bool:
        """make_train_iterator gives records their stream "position" only to transforms that read it."""
        return self.text_augmentation == "laclip" and self.rewrite_warmup_examples > 0

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        if self.text_augmentation == "laclip":
            fraction = 1.0
            if self.rewrite_warmup_examples:
                fraction = transforms.rewrite_fraction_at(record["position"], self.rewrite_warmup_examples)
            text = transforms.sample_caption(record["caption"], record["rewrites"], rng, fraction)
        else:
            text = record["caption"]
        image = record["image"]
        size = self.image_size or transforms.height_width(image)[0]
        if self.crop_scale[0] < 1.0:
            image = transforms.random_resized_crop(image, rng, self.crop_scale, size=size)
        else:
            image = transforms.central_square(image, size)
        example = {
            "image": image,
            "text": self.tokenizer.encode([text], self.max_len)[0],
        }
        if self.batch_fields is not None:
            example.update(self.batch_fields(record, rng, lambda texts: self.tokenizer.encode(texts, self.max_len)))
        return example


@dataclasses.dataclass
class VideoTrainTransform(grain.transforms.RandomMap):
    """Clip record -> {"video": uint8 [frames, S, S, 3], "text": int32 [max_len], **batch_fields}: `frames` of the
    record's `video` [F, S, S, 3], one drawn afresh from each of `frames` equal segments (X-CLIP's sampling)."""

    tokenizer: Tokenizer
    max_len: int
    frames: int
    batch_fields: Callable[..., dict] | None = None

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        video = record["video"]
        encode = lambda texts: self.tokenizer.encode(texts, self.max_len)  # noqa: E731
        example = {"video": video[frame_indices(len(video), self.frames, rng)], "text": encode([record["caption"]])[0]}
        if self.batch_fields is not None:
            example.update(self.batch_fields(record, rng, encode))
        return example


class RecordDataset(grain.MapDataset):
    """A random-access source as the first grain.MapDataset of the chain, records as the source returns them.

    Why not grain.MapDataset.source: for every record read, grain's source stage estimates the record's
    size by walking it leaf by leaf and books it in its metrics (prometheus). With the embedded data's
    ~24 fields per record that cost more than reading and transforming the record together: 1.5x the
    pipeline's batches/s without it (benchmarks/train_pipeline.py), and the same records in the same order.
    """

    def __init__(self, source):
        super().__init__()
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._source[index % len(self._source)]

    def __str__(self) -> str:
        return f"RecordDataset({type(self._source).__name__})"


def _with_position(position: int, record: dict) -> dict:
    return record if "skipped" in record else {**record, "position": position}


def make_train_iterator(
    source,
    transform: grain.transforms.RandomMap,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    worker_count: int = 0,
    read_threads: int = 2,
) -> grain.DatasetIterator:
    """Infinite iterator of this process's share of each global batch; its state checkpoints exactly.

    Each process reads a disjoint slice of the source (`process_index::process_count`)
    and yields `global_batch_size // process_count` examples per step. A transform whose `uses_positions` is
    true gets each record with its "position" in this process's stream (0, 1, ... across epochs). Batches also hold
    "problems": int32 [batch, len(cleaning.PROBLEMS)], the skips and repairs behind each example.
    """
    if global_batch_size % process_count:
        raise ValueError(
            f"Global batch size {global_batch_size} is not divisible by the {process_count} processes; "
            "choose a multiple of the process count."
        )
    ds = RecordDataset(source)
    if process_count > 1:  # a [0::1] slice would be one more stage per record for nothing
        ds = ds[process_index::process_count]
    ds = ds.seed(seed * 1_000_003 + process_index)
    # Reshuffled every epoch, unless the source draws its records in step order (input_pipeline/curriculum.py).
    ds = (ds if getattr(source, "in_step_order", False) else ds.shuffle()).repeat()
    if getattr(transform, "uses_positions", False):
        ds = ds.map_with_index(_with_position)
    ds = ds.random_map(SkipAware(transform))
    # read_threads read and transform examples ahead of the trainer; 0 reads in the calling thread,
    # which is faster for in-memory sources, whose records cost less than a thread hand-off.
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2 * global_batch_size))
    # Unusable examples leave the stream before batching, so every batch is full (input_pipeline/skipping.py).
    ds = DropSkipped(ds).batch(global_batch_size // process_count, drop_remainder=True)
    if worker_count > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(ds)
