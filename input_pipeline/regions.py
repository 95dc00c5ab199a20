"""Regions of your data (CLOC): boxes with a caption each, read from a WebDataset sample's json
(`"boxes": [[x0, y0, x1, y1], ...]` in [0, 1] of the image, `"region_captions": [...]`, one per box) and
moved into the frame of the square the pipeline trains on (the image's central square, as
`transforms.central_square` crops it; CLOC trains uncropped, config.data.crop_scale (1, 1)).

A region is dropped, and counted as `repaired_dropped_region` (input_pipeline/cleaning.py), when its box is
not four numbers with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, its caption is not a non-empty string, or less
than half of its area lies inside the central square; the example itself is kept.
"""

from __future__ import annotations

import math

import numpy as np

MIN_KEPT_AREA = 0.5  # of a box's area, inside the central square


def _valid_box(box) -> bool:
    if not isinstance(box, list | tuple) or len(box) != 4:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return False
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def to_central_square(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes [n, 4] in [0, 1] of a width x height image -> the same boxes in [0, 1] of its central square,
    unclipped."""
    side = min(width, height)
    scale = np.array([width, height, width, height], np.float64) / side
    shift = np.array([width - side, height - side, width - side, height - side], np.float64) / (2 * side)
    return boxes * scale - shift


def clean_regions(boxes, captions, width: int, height: int) -> tuple[np.ndarray, tuple[str, ...], int]:
    """(boxes float32 [k, 4] in the central square's frame, clipped to it, their captions, regions dropped)."""
    if not isinstance(boxes, list) or not isinstance(captions, list):
        return np.zeros((0, 4), np.float32), (), 0
    kept_boxes, kept_captions, dropped = [], [], abs(len(boxes) - len(captions))
    for box, caption in zip(boxes, captions, strict=False):
        if not _valid_box(box) or not isinstance(caption, str) or not caption.strip():
            dropped += 1
            continue
        moved = to_central_square(np.array([box], np.float64), width, height)[0]
        clipped = np.clip(moved, 0.0, 1.0)
        area = lambda b: max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)  # noqa: E731
        if area(clipped) < MIN_KEPT_AREA * area(moved):
            dropped += 1
            continue
        kept_boxes.append(clipped)
        kept_captions.append(" ".join(caption.split()))
    return np.array(kept_boxes, np.float32).reshape(-1, 4), tuple(kept_captions), dropped
