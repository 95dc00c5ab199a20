"""Per-example transforms: LaCLIP caption sampling and image augmentation (NumPy, host side)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# CLIP's normalisation constants (the OpenAI release), so converted towers see familiar inputs.
IMAGE_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
IMAGE_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def sample_caption(caption: str, rewrites: Sequence[str], rng: np.random.Generator) -> str:
    """LaCLIP text augmentation: one of [caption, *rewrites] uniformly; the original if the pick has < 2 words."""
    pick = int(rng.integers(len(rewrites) + 1))
    text = caption if pick == 0 else rewrites[pick - 1]
    return text if len(text.split()) >= 2 else caption


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32, CLIP mean/std normalised."""
    return (image.astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD


def random_resized_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Inception-style crop of [H, W, C] covering `scale` of the area, resized back to [H, W, C] bilinearly."""
    height, width = image.shape[:2]
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w, h = np.sqrt(target * aspect), np.sqrt(target / aspect)
        if w <= width and h <= height:
            break
    else:
        w, h = float(width), float(height)
    x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
    xs = x0 + (np.arange(width) + 0.5) * (w / width) - 0.5
    ys = y0 + (np.arange(height) + 0.5) * (h / height) - 0.5
    return _bilinear(image.astype(np.float32), ys, xs)


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Samples [H, W, C] at the grid ys x xs (pixel-centre coordinates), edges clamped."""
    height, width = image.shape[:2]
    ys = np.clip(ys, 0, height - 1)
    xs = np.clip(xs, 0, width - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy
