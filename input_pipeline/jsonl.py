"""JSON Lines files: one object per line with an image path, a caption and optional LaCLIP rewrites.

{"image": "images/000001.jpg", "caption": "a dog on a beach", "rewrites": ["a beach dog", ...]}

The key names are configurable (`image_column`, `caption_column`; `rewrites` is fixed, as is `mask`, the path
of a segmentation mask PNG: input_pipeline/masks.py). Opening
records the byte offset of every line (nothing is parsed), so examples are read on demand; a line
that is not a JSON object is a malformed example, skipped and counted in training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from input_pipeline.cleaning import skipped
from input_pipeline.masks import JSONL_KEY
from input_pipeline.tabular import as_raw_text, read_image_file


def json_objects(path: str) -> Iterator[dict | None]:
    """Each non-blank line of a JSON Lines file as a dict, or None where the line is not a JSON object (for the
    text readers to skip and count)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for line in filter(str.strip, f):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            yield row if isinstance(row, dict) else None


class JsonlSource:
    """Raw examples {"image": bytes | None, "caption", "rewrites"} of a JSONL file, and "mask": bytes | None where a
    line names one."""

    def __init__(self, path: str, *, image_root: str = "", image_column: str = "", caption_column: str = ""):
        self.path = path
        self.image_root = image_root or os.path.dirname(os.path.abspath(path))
        self.image_column = image_column or "image"
        self.caption_column = caption_column or "caption"
        with open(path, "rb") as f:
            data = np.frombuffer(f.read(), np.uint8)
        ends = np.flatnonzero(data == ord("\n")) + 1
        starts = np.concatenate([[0], ends])
        ends = np.concatenate([ends, [len(data)]])
        keep = ends - starts > 2  # drops empty lines ("\n", "\r\n"), the last one included
        self._spans = np.stack([starts[keep], ends[keep]], axis=1).astype(np.int64)
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self._spans)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def texts(self, index: int) -> dict:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        start, end = self._spans[index]
        line = os.pread(self._fd, int(end - start), int(start))
        try:  # non-UTF-8 bytes survive as surrogates, for the cleaning rules to repair and count
            obj = json.loads(line.decode("utf-8", errors="surrogateescape"))
        except ValueError:
            return skipped("malformed_record")
        if not isinstance(obj, dict):
            return skipped("malformed_record")
        rewrites = obj.get("rewrites") or ()
        return {
            "image": None,
            "image_path": obj.get(self.image_column),
            "mask_path": obj.get(JSONL_KEY),
            "caption": _raw(obj.get(self.caption_column)),
            "rewrites": tuple(_raw(r) for r in rewrites if isinstance(r, str)) if isinstance(rewrites, list) else (),
        }

    def raw(self, index: int) -> dict:
        record = self.texts(index)
        if "skipped" in record:
            return record
        path, mask = record.pop("image_path"), record.pop("mask_path")
        record["image"] = read_image_file(self.image_root, path) if isinstance(path, str) else None
        if mask is not None:  # a mask named but unreadable has bytes None: a missing mask
            record["mask"] = read_image_file(self.image_root, mask) if isinstance(mask, str) else None
        return record


def _raw(value) -> str | bytes | None:
    return as_raw_text(value) if isinstance(value, str) else None
