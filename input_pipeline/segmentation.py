"""Segmentation labels (DenseCLIP): a record's per-pixel class ids under a run's class names.

Class i is config.denseclip.class_names[i]. On the shapes data the names are one of CLASS_SETS (background and
the 8 shapes, or background and the 64 "<colour> <shape>" pairs), and each pixel's class comes from the record's
`object_mask` and `object_labels` (input_pipeline/shapes.py). On your files (MASK_DATASETS) it is the value of the
record's `mask`, read from a PNG beside the image (input_pipeline/masks.py). Pixels of class IGNORE count in no loss
or metric.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from configs.errors import ConfigError
from input_pipeline import masks
from input_pipeline.shape_drawing import COLOURS, SHAPES
from input_pipeline.tokenizer import Tokenizer

IGNORE = masks.IGNORE  # a pixel with no class (mmseg's ignore_index)
BACKGROUND = "background"
CLASS_SETS = {
    "shape": (BACKGROUND, *SHAPES),
    "shape_colour": (BACKGROUND, *(f"{c} {s}" for s in SHAPES for c in COLOURS)),  # shapes' shape_colour order
}


def _object_class(kind: str, shape_colour: int) -> str:
    shape, colour = divmod(shape_colour, len(COLOURS))
    return SHAPES[shape] if kind == "shape" else f"{COLOURS[colour]} {SHAPES[shape]}"


def shapes_class_table(class_names: tuple[str, ...]) -> np.ndarray:
    """int32 [1 + 64]: the class id of the background (entry 0) and of each shape_colour + 1, for class names that
    are a CLASS_SETS entry (in any order); ValueError otherwise."""
    for kind, expected in CLASS_SETS.items():
        if sorted(class_names) == sorted(expected):
            index = {name: i for i, name in enumerate(class_names)}
            objects = [index[_object_class(kind, sc)] for sc in range(len(SHAPES) * len(COLOURS))]
            return np.array([index[BACKGROUND], *objects], np.int32)
    raise ValueError(
        f"class_names must be the names of one of the shapes class sets {sorted(CLASS_SETS)} "
        "(input_pipeline/segmentation.py CLASS_SETS), in any order"
    )


def check_class_names(config) -> None:
    """ConfigError for class names the run's data cannot label (config.denseclip.class_names), or data without
    masks."""
    names = tuple(config.denseclip.class_names)
    if len(names) < 2 or len(set(names)) < len(names):
        raise ConfigError(f"config.denseclip.class_names must hold at least 2 distinct names, not {list(names)}.")
    if config.data.name == "shapes":
        try:
            shapes_class_table(names)
        except ValueError as e:
            raise ConfigError(f"On the shapes data config.denseclip.{e}.") from None
    elif config.data.name not in masks.MASK_DATASETS:
        raise ConfigError(
            f"DenseCLIP reads masks from the shapes data or from PNG files beside your images in "
            f"{list(masks.MASK_DATASETS)}, not config.data.name={config.data.name!r}; set config.data.name to one of "
            "them (docs/data.md)."
        )
    elif names in CLASS_SETS.values():
        raise ConfigError(
            "config.denseclip.class_names are still the shapes classes; set them to your masks' classes, name i for "
            "pixel value i, e.g. --config.denseclip.class_names=\"('background','cat','dog')\" (docs/data.md)."
        )
    elif len(names) > IGNORE:
        raise ConfigError(
            f"config.denseclip.class_names holds {len(names)} names but a mask's pixel values stop at "
            f"{IGNORE - 1} ({IGNORE} is no class); merge classes down to {IGNORE}."
        )


def mask_options(config: ml_collections.ConfigDict) -> dict:
    """DecodedSource's mask options for config: a DenseCLIP run on your files reads masks of its classes, and
    needs captions only when a loss reads them (denseclip.clip_weight > 0); {} otherwise."""
    if config.objective != "denseclip" or config.data.name not in masks.MASK_DATASETS:
        return {}
    d = config.denseclip
    return {"mask_classes": len(d.class_names), "require_caption": bool(d.clip_weight)}


def segmentation_map(record: dict, table: np.ndarray) -> np.ndarray:
    """int32 [S, S] class ids of a shapes record (`object_mask`, `object_labels`) under shapes_class_table's
    `table`."""
    labels = np.asarray(record["object_labels"])
    lookup = np.concatenate([table[:1], np.where(labels >= 0, table[1:][np.maximum(labels, 0)], IGNORE)])
    return lookup[np.asarray(record["object_mask"])].astype(np.int32)


def segmentation_fields(class_names: tuple[str, ...], shapes_data: bool = True):
    """DenseCLIP's batch_fields: record -> {"segmentation": int32 [S, S]}, from a shapes record's objects, or
    (shapes_data=False) from your record's `mask`, already the trained square's class ids."""
    if not shapes_data:
        return lambda record, rng, encode: {"segmentation": record["mask"].astype(np.int32)}
    table = shapes_class_table(class_names)

    def fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
        del rng, encode
        return {"segmentation": segmentation_map(record, table)}

    return fields


def class_name_tokens(tokenizer: Tokenizer, class_names: tuple[str, ...], max_len: int, context_tokens: int):
    """int32 [K, max_len - context_tokens]: the class names' tokens, leaving room for the prompt context."""
    return tokenizer.encode(list(class_names), max_len - context_tokens)
