"""The training source named by config.data: the embedded shapes or real image-text files.

Every real format is a raw source (`raw(i)` -> encoded image + caption bytes, `texts(i)` -> the same
without reading the image) wrapped in `DecodedSource`, a grain random-access source whose records
are what `TrainTransform` consumes: {"image": uint8 [S, S, 3], "caption", "rewrites", "problems"}
(+ "mask" for DenseCLIP), or a skip record (input_pipeline/cleaning.py has the rules).
"""

from __future__ import annotations

import collections
import functools
import glob
import os
from collections.abc import Iterator

import ml_collections

from configs.common import REAL_DATASETS
from configs.errors import ConfigError
from input_pipeline import segmentation, shape_edits, shape_video, shapes
from input_pipeline.array_record import ArrayRecordSource
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.jsonl import JsonlSource
from input_pipeline.shape_edits import EDIT_DATASET
from input_pipeline.tabular import CsvSource, DataFileError
from input_pipeline.text_sources import EmbeddedSource
from input_pipeline.tfds_source import TfdsSource
from input_pipeline.video_folders import VideoFolderSource
from input_pipeline.webdataset import WebDatasetSource

TOKENIZER_RECORDS = 20_000  # the tokenizer trains on the texts of this many first records


def expand_paths(spec: str, suffixes: tuple[str, ...]) -> list[str]:
    """Comma-separated files, globs and folders (searched for `suffixes`) -> sorted file list."""
    paths: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        part = os.path.expanduser(part)
        if os.path.isdir(part):
            paths += sorted(os.path.join(part, name) for name in os.listdir(part) if name.endswith(suffixes))
        else:
            paths += sorted(glob.glob(part)) if glob.has_magic(part) else [part]
    return paths


def _one_file(data: ml_collections.ConfigDict) -> str:
    paths = expand_paths(data.path, ())
    if len(paths) != 1:
        raise ConfigError(
            f"config.data.path {data.path!r} must name one {data.name} file for data.name={data.name!r} "
            f"(it names {len(paths)}); point it at the file."
        )
    return paths[0]


def open_raw_source(data: ml_collections.ConfigDict):
    """The raw source of config.data (name, path and the column keys); ConfigError naming the fix if it fails."""
    if data.name != "tfds":
        missing = [p for p in expand_paths(data.path, ()) if not os.path.exists(p)]
        if missing:
            raise ConfigError(f"Training data file {missing[0]!r} does not exist; fix config.data.path.")
    columns = dict(image_column=data.image_column, caption_column=data.caption_column)
    try:
        if data.name == "tfds":
            raw = TfdsSource(data.tfds_name, data.tfds_split, data_dir=os.path.expanduser(data.path), **columns)
        elif data.name == "webdataset":
            raw = WebDatasetSource(expand_paths(data.path, (".tar",)))
        elif data.name == "array_record":
            raw = ArrayRecordSource(expand_paths(data.path, (".array_record",)))
        elif data.name == "csv":
            raw = CsvSource(_one_file(data), image_root=data.image_root, rewrite_paths=data.rewrite_paths, **columns)
        elif data.name == "jsonl":
            raw = JsonlSource(_one_file(data), image_root=data.image_root, **columns)
        else:
            raise ConfigError(f"Unknown dataset {data.name!r}; set config.data.name to one of {list(REAL_DATASETS)}.")
    except DataFileError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"Cannot read the data ({e}); fix config.data.path.") from None
    if len(raw) == 0:
        raise ConfigError(f"config.data.path {data.path!r} holds no examples; point it at the training data.")
    return raw


def make_source(config: ml_collections.ConfigDict):
    """The training source of `config.data`: ShapesSource for `shapes`, else a DecodedSource of the files."""
    data = config.data
    if data.name in ("shapes", "shapes_video"):
        kind = shapes.ShapesSource if data.name == "shapes" else shape_video.ShapesVideoSource
        return kind("train", data.train_size, seed=0, image_size=data.image_size, cache_dir=data.cache_dir)
    if data.name == EDIT_DATASET:  # before-after pairs; SuperEdit's unrectified share of wrong instructions
        wrong_rate = config.superedit.wrong_instruction_rate if "superedit" in config else 0.0
        edits = functools.partial(shape_edits.record, image_size=data.image_size, wrong_rate=wrong_rate)
        return EmbeddedSource(edits, data.train_size)
    if data.name == "video_folders":
        if not os.path.isdir(os.path.expanduser(data.path)):
            raise ConfigError(
                f"config.data.path {data.path!r} is not a folder of clip folders; point it at your clips."
            )
        source = VideoFolderSource(data.path, data.image_size)
        if not len(source):
            raise ConfigError(f"config.data.path {data.path!r} holds no clip folders; put one folder per clip in it.")
        return source
    # Images keep their aspect: TrainTransform's random crop draws its box on the whole image and
    # resizes once (decode + crop at 256 px went from 0.56x to ~1x a plain PIL loop, BENCHMARKS.md).
    # DenseCLIP's masks come cut to the central square that its crop takes (input_pipeline/masks.py).
    return DecodedSource(open_raw_source(data), data.image_size, square=False, **segmentation.mask_options(config))


def usable_examples(source, count: int, skipped: collections.Counter | None = None) -> list[dict]:
    """Up to `count` first records of `source` that are not skip records (decoded image-text records); the skip
    records read on the way are counted by reason in `skipped` when given."""
    examples = []
    for index in range(len(source)):
        if len(examples) == count:
            break
        record = source[index]
        if "skipped" not in record:
            examples.append(record)
        elif skipped is not None:
            skipped[record["skipped"]] += 1
    return examples


def train_texts(source, limit: int = TOKENIZER_RECORDS) -> Iterator[str]:
    """Every text field of the first `limit` usable records (the tokenizer's corpus); images are not decoded."""
    for i in range(min(limit, len(source))):
        record = source.texts(i) if isinstance(source, DecodedSource | VideoFolderSource) else source[i]
        if "skipped" in record:
            continue
        for field in ("caption", "long_caption", "raw_caption"):
            if field in record:
                yield record[field]
        for field in ("rewrites", "hard_negatives"):
            yield from (text for text in record.get(field, ()) if text)
