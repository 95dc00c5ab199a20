"""A raw source (encoded images, text bytes) seen through the cleaning rules: what the pipeline reads.

Kept apart from sources.py so that grain's worker processes, which unpickle this class, import
only the input pipeline and not the trainer.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from input_pipeline.cleaning import PROBLEM_INDEX, clean_example, clean_method_texts, clean_text, skipped
from input_pipeline.regions import clean_regions


class DecodedSource:
    """Random access to cleaned, decoded examples of a raw source, images resized to `image_size`
    squares; with square=False kept at their aspect, as PIL images, for the training crop to resize once
    (input_pipeline/cleaning.py)."""

    def __init__(self, raw_source, image_size: int, square: bool = True):
        self.raw_source = raw_source
        self.image_size = image_size
        self.square = square

    def __len__(self) -> int:
        return len(self.raw_source)

    def __getitem__(self, index: int) -> dict:
        raw = self.raw_source.raw(index)
        if "skipped" in raw:
            return raw
        example = clean_example(raw["image"], raw["caption"], raw.get("rewrites", ()), self.image_size, self.square)
        if "skipped" in example:
            return example
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
        if not caption:
            return skipped("missing_caption" if caption is None else "empty_caption")
        rewrites = tuple(clean_text(r, []) or "" for r in raw.get("rewrites", ()))
        return {"caption": caption, "rewrites": rewrites, **clean_method_texts(raw)}

    def __repr__(self) -> str:
        return f"DecodedSource({type(self.raw_source).__name__}, {len(self)} examples, {self.image_size} px)"


def _regions(raw: dict, example: dict) -> dict:
    """{"boxes", "region_captions"} of the raw example's regions in the trained square's frame; counts the
    regions dropped in the example's problems (input_pipeline/regions.py)."""
    image = raw["image"]
    if isinstance(image, bytes):
        width, height = Image.open(io.BytesIO(image)).size  # the header only
    else:
        height, width = np.shape(image)[:2]
    boxes, captions, dropped = clean_regions(*raw["raw_regions"], width, height)
    example["problems"][PROBLEM_INDEX["repaired_dropped_region"]] += dropped
    return {"boxes": boxes, "region_captions": captions}
