"""CSV/TSV files of (image path, caption) with K line-aligned rewrite files (LaCLIP's released format).

LaCLIP's CSV has no header: column 0 is the image path (relative to a root folder), column 1 the
caption, and rewrite file k holds the k-th rewrite of data row i on its line i. open_clip's CSVs
name their columns in a header row (`filepath`, `title`); pass those names as the columns to read
them. Rules: `.tsv` files are tab-separated, others comma-separated; without column names a first
row whose image field has no image extension is taken as a header and left out; a row with too
few columns is a malformed example (skipped and counted in training). Non-UTF-8 bytes survive
reading and are repaired by the cleaning rules.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

from input_pipeline.cleaning import skipped

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class DataFileError(ValueError):
    """A data file or its description in the config is wrong; the message names the fix."""


def read_text_lines(path: str) -> list[str]:
    """Lines of a text file without their line ends; undecodable bytes kept as surrogates for repair."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="surrogateescape").splitlines()


def as_raw_text(text: str | None) -> str | bytes | None:
    """Text read with surrogateescape -> the original bytes if it was not valid UTF-8 (so cleaning counts it)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogateescape")


class CsvSource:
    """Raw examples {"image": bytes | None, "caption", "rewrites"} of a CSV/TSV file and its rewrite files."""

    def __init__(
        self,
        path: str,
        *,
        image_root: str = "",
        image_column: str = "",
        caption_column: str = "",
        rewrite_paths: Sequence[str] = (),
    ):
        self.image_root = image_root or os.path.dirname(os.path.abspath(path))
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="surrogateescape")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.endswith(".tsv") else ","))
        if bool(image_column) != bool(caption_column):
            raise DataFileError(
                "Set both config.data.image_column and config.data.caption_column (header names), or neither "
                "(column 0 is the image, column 1 the caption)."
            )
        if image_column:
            header = rows.pop(0) if rows else []
            missing = [c for c in (image_column, caption_column) if c not in header]
            if missing:
                raise DataFileError(
                    f"{path} has no column {missing[0]!r} in its header {header}; set config.data.image_column "
                    "and config.data.caption_column to names in that header."
                )
            image_at, caption_at = header.index(image_column), header.index(caption_column)
        else:
            image_at, caption_at = 0, 1
            if rows and rows[0] and not rows[0][0].lower().endswith(IMAGE_SUFFIXES):
                rows.pop(0)  # a header row
        width = max(image_at, caption_at) + 1
        # None marks a malformed row: the example exists (rewrite lines stay aligned) but is skipped.
        self._rows = [(r[image_at], r[caption_at]) if len(r) >= width else None for r in rows]
        self._rewrites = [read_text_lines(p) for p in rewrite_paths]
        for rewrite_path, lines in zip(rewrite_paths, self._rewrites, strict=True):
            if len(lines) != len(self._rows):
                raise DataFileError(
                    f"Rewrite file {rewrite_path} has {len(lines)} lines but {path} has {len(self._rows)} data rows; "
                    "each rewrite file needs one line per row, in the same order."
                )

    def __len__(self) -> int:
        return len(self._rows)

    def texts(self, index: int) -> dict:
        row = self._rows[index]
        if row is None:
            return skipped("malformed_record")
        rewrites = tuple(as_raw_text(lines[index]) for lines in self._rewrites)
        return {"image": None, "caption": as_raw_text(row[1]), "rewrites": rewrites}

    def raw(self, index: int) -> dict:
        record = self.texts(index)
        if "skipped" not in record:
            record["image"] = read_image_file(self.image_root, self._rows[index][0])
        return record


def read_image_file(root: str, path: str) -> bytes | None:
    """The bytes of `path` (relative to `root` unless absolute), or None when it cannot be read."""
    try:
        with open(os.path.join(root, path), "rb") as f:
            return f.read()
    except (OSError, ValueError):
        return None
