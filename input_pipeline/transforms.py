"""Per-example transforms: LaCLIP caption sampling and image augmentation (NumPy and PIL, host side)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# CLIP's normalisation constants (the OpenAI release), so converted towers see familiar inputs.
IMAGE_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
IMAGE_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def sample_caption(
    caption: str, rewrites: Sequence[str], rng: np.random.Generator, rewrite_fraction: float = 1.0
) -> str:
    """LaCLIP text augmentation: one of [caption, *rewrites] uniformly; the original if the pick has < 2 words.

    `rewrite_fraction` in [0, 1] scales the chance of drawing a rewrite (K/(K+1) at 1.0, the paper's
    uniform draw; 0.0 always keeps the original): the rewrite warm-up of `rewrite_fraction_at`."""
    pick = int(rng.integers(len(rewrites) + 1))
    if pick and rewrite_fraction < 1.0 and rng.random() >= rewrite_fraction:
        pick = 0
    text = caption if pick == 0 else rewrites[pick - 1]
    return text if len(text.split()) >= 2 else caption


def rewrite_fraction_at(position: int, warmup_examples: int) -> float:
    """How much of LaCLIP's rewrite draw applies at this example `position` of the stream: rising linearly
    from 0 to 1 over the first `warmup_examples` (0: 1 from the start, the paper's recipe)."""
    return 1.0 if position >= warmup_examples else position / warmup_examples


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32, CLIP mean/std normalised."""
    return (image.astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD


def height_width(image: np.ndarray | Image.Image) -> tuple[int, int]:
    """(H, W) of uint8 pixels [H, W, 3] or of a PIL image."""
    return (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]


def _as_pil(image: np.ndarray | Image.Image) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image, np.uint8))


def random_resized_crop(
    image: np.ndarray | Image.Image,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    size: int | None = None,
) -> np.ndarray:
    """Inception-style crop of uint8 [H, W, 3] (or a PIL RGB image) covering `scale` of its area,
    resized to uint8 [size, size, 3] ([H, W, 3] when size is None).

    The crop box is drawn from `rng` (deterministic per seed) and resampled by PIL's bilinear resize
    with `box=` on uint8, which fuses crop and resize in C. Given the decoded image at its own aspect
    (DecodedSource(square=False), a PIL image: no copy into NumPy and back), this is the only resize
    an example goes through (BENCHMARKS.md).
    """
    height, width = height_width(image)
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w, h = np.sqrt(target * aspect), np.sqrt(target / aspect)
        if w <= width and h <= height:
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            break
    else:  # no box fits (extreme aspect): the central square, as torchvision's fallback
        w = h = float(min(width, height))
        rng.uniform(size=2)  # the draws a fitting box takes: later draws do not depend on the branch
        x0, y0 = (width - w) / 2, (height - h) / 2
    box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
    out = (size, size) if size else (width, height)
    return np.asarray(_as_pil(image).resize(out, Image.Resampling.BILINEAR, box=box))


def central_square(image: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """uint8 [H, W, 3] (or a PIL RGB image) -> its central square resized to uint8 [size, size, 3]."""
    if isinstance(image, np.ndarray) and image.shape[:2] == (size, size):
        return image
    return np.asarray(square_crop(_as_pil(image), size))


def square_crop(img: Image.Image, size: int) -> Image.Image:
    """PIL image -> its central square, bilinearly resized to size x size in one step."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
