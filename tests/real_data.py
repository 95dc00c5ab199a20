"""Generated real-format training data for tests: JPEG/PNG/WebP bytes encoded by PIL, tar shards, CSV, JSONL.

Example i's caption is "photo number i ..." and its image a flat colour derived from i, so tests can
tell examples apart after decoding. BAD_EXAMPLES lists one example per problem kind of
input_pipeline/cleaning.py, with the count it must produce.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image


def colour(i: int) -> tuple[int, int, int]:
    return (40 + (i * 37) % 180, 40 + (i * 71) % 180, 40 + (i * 113) % 180)


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def photo(i: int, size: tuple[int, int] = (48, 40)) -> bytes:
    """A JPEG of example i: a flat colour with a little noise (so it is a real, non-trivial JPEG)."""
    rng = np.random.default_rng(i)
    pixels = np.clip(np.array(colour(i), np.float32) + rng.normal(0, 3, (size[1], size[0], 3)), 0, 255)
    return encode(Image.fromarray(pixels.astype(np.uint8)), "JPEG", quality=95)


def caption(i: int) -> str:
    return f"photo number {i} of a flat colour"


def good_examples(n: int, start: int = 0) -> list[dict]:
    return [{"key": f"{i:06d}", "jpg": photo(i), "txt": caption(i).encode()} for i in range(start, start + n)]


def _png(img: Image.Image) -> bytes:
    return encode(img, "PNG")


def bad_examples(start: int) -> list[tuple[dict, str]]:
    """(example, the problem it must be counted as) for every kind; keys continue from `start`."""
    i = iter(range(start, start + 100))
    gray16 = Image.fromarray(np.full((20, 20), 40000, np.uint16))  # mode I;16
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 128))
    palette = Image.new("RGB", (20, 20), (0, 0, 255)).convert("P")
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))
    good_jpeg = photo(0)
    cases = [
        ({"jpg": good_jpeg[: len(good_jpeg) // 2]}, "skipped_corrupt_image"),  # truncated
        ({"jpg": b"\xff\xd8\xff\xe0 not really a jpeg" * 3}, "skipped_corrupt_image"),
        ({"png": _png(Image.new("RGB", (1, 1), (9, 9, 9)))}, "skipped_tiny_image"),
        ({}, "skipped_missing_image"),
        ({"jpg": good_jpeg, "txt": None}, "skipped_missing_caption"),
        ({"jpg": good_jpeg, "txt": b"  \n\t "}, "skipped_empty_caption"),
        ({"jpg": encode(cmyk, "JPEG")}, "repaired_cmyk"),
        ({"png": _png(gray16)}, "repaired_high_bit_depth"),
        ({"png": _png(rgba)}, "repaired_alpha"),
        ({"png": _png(palette)}, "repaired_palette"),
        ({"jpg": encode(Image.new("L", (20, 20), 100), "JPEG")}, "repaired_grayscale"),
        ({"jpg": good_jpeg, "txt": "café au lait".encode("cp1252")}, "repaired_non_utf8_text"),
        ({"jpg": good_jpeg, "txt": ("word " * 400).encode()}, "repaired_overlong_caption"),
    ]
    out = []
    for fields, kind in cases:
        k = next(i)
        example = {"key": f"{k:06d}", "txt": caption(k).encode(), **fields}
        if example["txt"] is None:
            del example["txt"]
        out.append((example, kind))
    return out


def write_shard(path, examples: list[dict]) -> None:
    """A WebDataset tar: members <key>.<ext> for each field of each example, in order."""
    with tarfile.open(path, "w") as tar:
        for example in examples:
            for ext, data in example.items():
                if ext == "key":
                    continue
                info = tarfile.TarInfo(f"{example['key']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def write_json_meta(example: dict, **meta) -> dict:
    return {**example, "json": json.dumps(meta).encode()}
