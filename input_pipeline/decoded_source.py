"""A raw source (encoded images, text bytes) seen through the cleaning rules: what the pipeline reads.

Kept apart from sources.py so that grain's worker processes, which unpickle this class, import
only the input pipeline and not the trainer.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from input_pipeline.cleaning import PROBLEM_INDEX, Skip, clean_example, clean_method_texts, clean_text, skipped
from input_pipeline.masks import read_mask
from input_pipeline.regions import clean_regions


class DecodedSource:
    """Random access to cleaned, decoded examples of a raw source, images resized to `image_size`
    squares; with square=False kept at their aspect, as PIL images, for the training crop to resize once
    (input_pipeline/cleaning.py). With mask_classes > 0 each example also holds its segmentation "mask",
    uint8 [image_size, image_size] class ids of the image's central square (input_pipeline/masks.py), and
    require_caption=False lets examples without a caption through with caption "" (a run that reads none)."""

    def __init__(self, raw_source, image_size: int, square: bool = True, mask_classes: int = 0,
                 require_caption: bool = True):  # fmt: skip
        self.raw_source = raw_source
        self.image_size = image_size
        self.square = square
        self.mask_classes = mask_classes
        self.require_caption = require_caption

    def __len__(self) -> int:
        return len(self.raw_source)

    def __getitem__(self, index: int) -> dict:
        raw = self.raw_source.raw(index)
        if "skipped" in raw:
            return raw
        example = clean_example(
            raw["image"], raw["caption"], raw.get("rewrites", ()), self.image_size, self.square, self.require_caption
        )
        if "skipped" in example:
            return example
        if self.mask_classes:
            try:
                example["mask"] = read_mask(raw.get("mask"), *_width_height(raw["image"]), self.mask_classes,
                                            self.image_size)  # fmt: skip
            except Skip as skip:
                return skipped(skip.kind)
        example.update(clean_method_texts(raw))
        if "raw_regions" in raw:
            example.update(_regions(raw, example))
        return example

    def texts(self, index: int) -> dict:
        """{"caption", "rewrites", the method texts it has} cleaned, without decoding the image; or a skip record."""
        raw = self.raw_source.texts(index)
        if "skipped" in raw:
            return raw
        caption = clean_text(raw["caption"], [])
        if not caption and self.require_caption:
            return skipped("missing_caption" if caption is None else "empty_caption")
        rewrites = tuple(clean_text(r, []) or "" for r in raw.get("rewrites", ()))
        return {"caption": caption or "", "rewrites": rewrites, **clean_method_texts(raw)}

    def __repr__(self) -> str:
        return f"DecodedSource({type(self.raw_source).__name__}, {len(self)} examples, {self.image_size} px)"


def _width_height(image: bytes | np.ndarray) -> tuple[int, int]:
    """The decoded size of a raw image (encoded bytes: read from the header only; or uint8 [H, W, ...])."""
    if isinstance(image, bytes):
        return Image.open(io.BytesIO(image)).size
    height, width = np.shape(image)[:2]
    return width, height


def _regions(raw: dict, example: dict) -> dict:
    """{"boxes", "region_captions"} of the raw example's regions in the trained square's frame; counts the
    regions dropped in the example's problems (input_pipeline/regions.py)."""
    boxes, captions, dropped = clean_regions(*raw["raw_regions"], *_width_height(raw["image"]))
    example["problems"][PROBLEM_INDEX["repaired_dropped_region"]] += dropped
    return {"boxes": boxes, "region_captions": captions}
