"""The rules that turn one raw example (encoded image + caption bytes) into a training record, or a skip.

Every problem is either repaired or the example is skipped, and each is counted under a name of
PROBLEMS (surfaced as `train/data_<name>` in metrics.jsonl). The rules:

Skipped (the example is not trained on):
- `skipped_malformed_record`: a CSV row with too few columns, a JSONL line that is not a JSON object,
  an ArrayRecord record that does not parse;
- `skipped_missing_image`: no image in the example, or its file cannot be read;
- `skipped_corrupt_image`: the bytes do not decode (corrupt or truncated file, unknown format);
- `skipped_oversized_image`: more than PIL's decompression-bomb limit (~179 Mpx);
- `skipped_tiny_image`: shorter side under MIN_IMAGE_SIDE pixels (1x1 tracking pixels, icons);
- `skipped_missing_caption`: no caption field at all;
- `skipped_empty_caption`: a caption that is empty once whitespace and control characters are removed;
- `skipped_missing_mask`, `skipped_unreadable_mask`, `skipped_mismatched_mask`, `skipped_unknown_mask_class`:
  the segmentation mask of a run that reads masks (DenseCLIP on your files) is absent, does not decode as a
  single-channel PNG, differs from the image in size, or holds a class id the run has no name for
  (input_pipeline/masks.py).

Repaired (trained on, after the stated change):
- `repaired_cmyk`, `repaired_palette`, `repaired_grayscale`: converted to RGB;
- `repaired_alpha`: composited over white, then RGB;
- `repaired_high_bit_depth`: 16-bit (and 32-bit) images scaled by 255/65535 to 8 bits;
- `repaired_other_mode`: any other PIL mode (YCbCr, LAB, HSV) converted to RGB by PIL;
- `repaired_non_utf8_text`: text bytes that are not UTF-8 are read as Windows-1252 (the usual
  encoding of such alt-text), bytes undefined there dropped;
- `repaired_overlong_caption`: captions over MAX_CAPTION_CHARS characters cut at the last space
  before the limit (the tokenizer keeps far fewer tokens anyway; this bounds its work);
- `repaired_dropped_region`: a region (box and caption, CLOC) that is malformed or mostly outside the
  trained square is dropped, the rest of the example kept (input_pipeline/regions.py).

Every text has runs of whitespace and control characters collapsed to one space (not counted).
Images are decoded, reduced in the JPEG DCT domain where possible (PIL's `draft`), then the central
square is resized bilinearly to `image_size` x `image_size`; or, for training (`square=False`), kept
at their aspect, shrunk by an integer factor while the shorter side stays >= `image_size`, so that
the random crop draws its box on the whole image and resizes once (input_pipeline/transforms.py);
those stay PIL images, which the crop resizes without a round trip through NumPy.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from input_pipeline.transforms import square_crop

SKIPS = (
    "malformed_record",
    "missing_image",
    "corrupt_image",
    "oversized_image",
    "tiny_image",
    "missing_caption",
    "empty_caption",
    "missing_mask",
    "unreadable_mask",
    "mismatched_mask",
    "unknown_mask_class",
)
REPAIRS = (
    "cmyk", "palette", "grayscale", "alpha", "high_bit_depth", "other_mode", "non_utf8_text", "overlong_caption",
    "dropped_region",
)  # fmt: skip
PROBLEMS = tuple(f"skipped_{s}" for s in SKIPS) + tuple(f"repaired_{r}" for r in REPAIRS)
PROBLEM_INDEX = {name: i for i, name in enumerate(PROBLEMS)}
MIN_IMAGE_SIDE = 8
MAX_CAPTION_CHARS = 1000
_MODE_REPAIRS = {"CMYK": "repaired_cmyk", "P": "repaired_palette", "L": "repaired_grayscale", "1": "repaired_grayscale"}
_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


class Skip(Exception):
    """The example cannot be used; `kind` is one of SKIPS."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def skipped(kind: str) -> dict:
    """The record a source returns in place of an unusable example: the pipeline drops it and counts it."""
    return {"skipped": kind}


def problem_counts(names: Sequence[str]) -> np.ndarray:
    """int32 [len(PROBLEMS)] with one count per occurrence of each name in `names`."""
    counts = np.zeros(len(PROBLEMS), np.int32)
    for name in names:
        counts[PROBLEM_INDEX[name]] += 1
    return counts


def clean_text(value: str | bytes | None, repairs: list[str]) -> str | None:
    """Text or None (missing) -> one line of at most MAX_CAPTION_CHARS characters; appends repairs made."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("cp1252", errors="ignore")
            repairs.append("repaired_non_utf8_text")
    text = _SPACE.sub(" ", value).strip()
    if len(text) > MAX_CAPTION_CHARS:
        cut = text.rfind(" ", 0, MAX_CAPTION_CHARS + 1)
        text = text[: cut if cut > 0 else MAX_CAPTION_CHARS]
        repairs.append("repaired_overlong_caption")
    return text


# Texts some methods read besides the caption (DreamLIP, ALIP, DeGLA / hard negatives), when a source has them.
METHOD_TEXT_FIELDS = ("long_caption", "raw_caption", "hard_negatives")


def clean_method_texts(raw: dict) -> dict:
    """The METHOD_TEXT_FIELDS of a raw example that it holds, cleaned: strings, or a tuple for hard_negatives."""
    out = {}
    for field in METHOD_TEXT_FIELDS:
        if field in raw:
            value = raw[field]
            out[field] = (
                tuple(clean_text(v, []) or "" for v in value)
                if isinstance(value, tuple)
                else clean_text(value, []) or ""
            )
    return out


def clean_example(
    image, caption, rewrites: Sequence, image_size: int, square: bool = True, require_caption: bool = True
) -> dict:
    """Raw fields -> {"image": uint8 [S, S, 3], "caption", "rewrites", "problems": int32 [P]} or a skip record.

    `image` is encoded bytes, a uint8 array [H, W] or [H, W, C], or None; texts are str, bytes or None.
    With square=False the image is a PIL RGB image at its own aspect, min(H, W) in [S, 2S) unless smaller.
    With require_caption=False a missing or empty caption is "" (a run that reads none: DenseCLIP's masks).
    """
    repairs: list[str] = []
    try:
        caption = clean_text(caption, repairs)
        if require_caption and caption is None:
            raise Skip("missing_caption")
        if require_caption and not caption:
            raise Skip("empty_caption")
        caption = caption or ""
        rewrites = tuple(clean_text(r, repairs) or "" for r in rewrites)
        if image is None:
            raise Skip("missing_image")
        pixels = (
            decode_image(image, image_size, repairs, square)
            if isinstance(image, bytes)
            else _array_to_image(image, image_size, repairs, square)
        )
    except Skip as skip:
        return skipped(skip.kind)
    return {"image": pixels, "caption": caption, "rewrites": rewrites, "problems": problem_counts(repairs)}


def decode_image(data: bytes, size: int, repairs: list[str], square: bool = True) -> np.ndarray | Image.Image:
    """Encoded image -> uint8 [size, size, 3], the central square resized (square=False: a PIL RGB image
    at its aspect, see _shrink); raises Skip; appends repairs."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if min(img.size) < MIN_IMAGE_SIDE:
                raise Skip("tiny_image")
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale while the shorter side stays >= size.
            img.draft("RGB", (size, size))
            img.load()
            img = _to_rgb(img, repairs)
            return np.asarray(square_crop(img, size), np.uint8) if square else _shrink(img, size)
    except Image.DecompressionBombError:
        raise Skip("oversized_image") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError):
        raise Skip("corrupt_image") from None


def _to_rgb(img: Image.Image, repairs: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        repairs.append("repaired_high_bit_depth")
        values = np.clip(np.asarray(img, np.float64), 0, 65535) * (255 / 65535)
        return Image.fromarray(np.round(values).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        repairs.append("repaired_palette")
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        repairs.append("repaired_alpha")
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    repairs.append(_MODE_REPAIRS.get(mode, "repaired_other_mode"))
    return img.convert("RGB")


def _shrink(img: Image.Image, size: int) -> Image.Image:
    """Divides both sides by the largest integer keeping the shorter side >= size (box filter in C,
    cheap); the crop's one bilinear resize does the rest."""
    factor = min(img.size) // size
    return img.reduce(factor) if factor >= 2 else img


def _array_to_image(array: np.ndarray, size: int, repairs: list[str], square: bool) -> np.ndarray | Image.Image:
    """Decoded uint8 pixels (TFDS without TensorFlow decodes some features itself) -> [size, size, 3]
    (square=False: a PIL image, as decode_image)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise Skip("corrupt_image")
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise Skip("tiny_image")
    if array.dtype == np.uint16:
        repairs.append("repaired_high_bit_depth")
        array = np.round(array * (255 / 65535)).astype(np.uint8)
    img = _to_rgb(Image.fromarray(array.astype(np.uint8, copy=False)), repairs)
    return np.asarray(square_crop(img, size), np.uint8) if square else _shrink(img, size)
