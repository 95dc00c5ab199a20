"""ArrayRecord files of raw examples, written by `python -m input_pipeline.convert`: random access by index.

One record per example, its fields stored as they were read (encoded image bytes, caption bytes,
rewrite bytes), so the cleaning rules run, and count, at training time exactly as they would on the
original files. Layout: the magic b"CR1", a little-endian uint32 count of rewrites, then for the
image, the caption and each rewrite an int64 length (-1 for a missing field) and that many bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import grain

from input_pipeline.cleaning import skipped

MAGIC = b"CR1"
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<q")


def encode_record(image: bytes | None, caption: str | bytes | None, rewrites: Sequence[str | bytes] = ()) -> bytes:
    """One example -> one ArrayRecord record (texts as given: str is stored as UTF-8)."""
    parts = [MAGIC, _COUNT.pack(len(rewrites))]
    for field in (image, caption, *rewrites):
        if isinstance(field, str):
            field = field.encode("utf-8", errors="surrogateescape")
        parts.append(_LENGTH.pack(-1 if field is None else len(field)))
        parts.append(field or b"")
    return b"".join(parts)


def decode_record(record: bytes) -> dict:
    """A record -> {"image": bytes | None, "caption": bytes | None, "rewrites": tuple[bytes, ...]}.

    Raises ValueError for a record that is not in this layout.
    """
    if record[:3] != MAGIC or len(record) < 7:
        raise ValueError("not a contrastive example record")
    (count,) = _COUNT.unpack_from(record, 3)
    fields, at = [], 7
    for _ in range(count + 2):
        if at + 8 > len(record):
            raise ValueError("record cut short")
        (length,) = _LENGTH.unpack_from(record, at)
        at += 8
        if at + max(length, 0) > len(record):
            raise ValueError("record cut short")
        fields.append(None if length < 0 else record[at : at + length])
        at += max(length, 0)
    if at != len(record):
        raise ValueError("trailing bytes")
    return {"image": fields[0], "caption": fields[1], "rewrites": tuple(f or b"" for f in fields[2:])}


class ArrayRecordSource:
    """Raw examples of ArrayRecord files in the order given (records within each file in order)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = tuple(paths)
        self._records = grain.sources.ArrayRecordDataSource(list(self.paths))

    def __len__(self) -> int:
        return len(self._records)

    def raw(self, index: int) -> dict:
        try:
            return decode_record(self._records[index])
        except (ValueError, struct.error):
            return skipped("malformed_record")

    def texts(self, index: int) -> dict:
        return self.raw(index)
