"""Semantic-segmentation masks stored as PNG files beside the images (ADE20K, Pascal VOC, big_vision's layout).

A mask is a single-channel PNG (mode "L", or "P" whose palette indices are the values) of its image's size; pixel
value i is class i of config.denseclip.class_names, 255 is "no class" (IGNORE). WebDataset shards hold it as the
member `<key>.mask.png` beside `<key>.jpg`; a JSONL line names it in `"mask"` (a path, relative to data.image_root
like the image's). The mask follows the image's geometry: the central square, resized to the trained size by
nearest neighbour (DenseCLIP trains on the uncropped central square: configs/denseclip.py crop_scale (1, 1)).

Unusable masks skip their example, counted (input_pipeline/cleaning.py): `missing_mask` (no member, no `"mask"`
key, or a file that cannot be read), `unreadable_mask` (not a PNG that decodes, or not mode L or P),
`mismatched_mask` (its width and height differ from the image's), `unknown_mask_class` (a value >= the number of
class names other than 255).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from input_pipeline.cleaning import Skip

IGNORE = 255  # a pixel with no class (mmseg's ignore_index; segmentation.IGNORE)
MASK_DATASETS = ("webdataset", "jsonl")  # the data.name formats whose examples carry masks
WEBDATASET_MEMBER = "mask.png"  # <key>.mask.png
JSONL_KEY = "mask"


def read_mask(data: bytes | None, width: int, height: int, num_classes: int, size: int) -> np.ndarray:
    """PNG bytes of the mask of a `width` x `height` image -> uint8 [size, size] class ids (IGNORE kept) of its
    central square, nearest neighbour; raises Skip (module docstring)."""
    if data is None:
        raise Skip("missing_mask")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.mode not in ("L", "P"):
                raise Skip("unreadable_mask")
            values = np.asarray(img)  # a P image's palette indices, not its colours: VOC's class ids
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        raise Skip("unreadable_mask") from None
    if values.shape != (height, width):
        raise Skip("mismatched_mask")
    if np.any((values >= num_classes) & (values != IGNORE)):
        raise Skip("unknown_mask_class")
    return central_square_nearest(values, size)


def central_square_nearest(values: np.ndarray, size: int) -> np.ndarray:
    """[H, W] -> [size, size]: the central square (the box transforms.square_crop resizes bilinearly for the image),
    each output pixel the input pixel under its centre."""
    height, width = values.shape
    side = min(height, width)
    centres = (np.arange(size) + 0.5) * side / size
    rows = np.minimum(((height - side) / 2 + centres).astype(np.int64), height - 1)
    cols = np.minimum(((width - side) / 2 + centres).astype(np.int64), width - 1)
    return values[rows[:, None], cols[None, :]]
