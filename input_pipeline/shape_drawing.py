"""Drawing the shapes images: a smooth textured background and antialiased objects (input_pipeline/shapes.py
samples the objects and writes the texts)."""

from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "bar")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")
COLOUR_RGB = np.array(
    [
        (220, 40, 40),
        (40, 170, 60),
        (40, 80, 225),
        (235, 215, 40),
        (140, 60, 190),
        (245, 140, 30),
        (40, 205, 215),
        (245, 125, 185),
    ],
    dtype=np.float32,
)


def _shape_mask(shape: int, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of `SHAPES[shape]` centred at 0 in pixel offsets `dx`, `dy`."""
    x, y = dx / radius, dy / radius
    r = np.hypot(x, y)
    name = SHAPES[shape]
    if name == "circle":
        return r <= 1.0
    if name == "square":
        return np.maximum(abs(x), abs(y)) <= 0.8
    if name == "triangle":
        return (y <= 0.75) & (y >= -0.95 + 1.9 * abs(x) / 1.1)
    if name == "diamond":
        return abs(x) + abs(y) <= 1.05
    if name == "cross":
        return (np.minimum(abs(x), abs(y)) <= 0.3) & (np.maximum(abs(x), abs(y)) <= 1.0)
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "star":
        theta = np.arctan2(y, x) + np.pi / 2
        return r <= 0.5 + 0.5 * np.cos(2.5 * ((theta % (2 * np.pi / 5)) - np.pi / 5)) ** 6
    return (abs(x) <= 1.0) & (abs(y) <= 0.4)  # bar


def object_radius(size: int) -> float:
    """Radius of a small (0) or large (1) object, as a fraction of a grid cell."""
    return 0.46 if size else 0.32


SUPERSAMPLING = 4  # object edges are antialiased from a 4x4 subpixel grid


def _coverage(shape: int, cx: float, cy: float, radius: float, size: int) -> tuple[slice, slice, np.ndarray]:
    """Fraction of each pixel inside the shape, over the pixel window around it: (rows, cols, [h, w])."""
    rows = slice(max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, size))
    cols = slice(max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, size))
    offsets = (np.arange(SUPERSAMPLING, dtype=np.float32) + 0.5) / SUPERSAMPLING
    ys = (np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + offsets).reshape(-1)
    xs = (np.arange(cols.start, cols.stop, dtype=np.float32)[:, None] + offsets).reshape(-1)
    inside = _shape_mask(shape, xs[None, :] - cx, ys[:, None] - cy, radius)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    return rows, cols, inside.reshape(h, SUPERSAMPLING, w, SUPERSAMPLING).mean(axis=(1, 3), dtype=np.float32)


def render_image(objects: list, rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] uint8: render_scene's image."""
    return render_scene(objects, rng, size)[0]


def render_scene(objects: list, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image [size, size, 3] uint8, boxes [len(objects), 4] float32, mask [size, size] uint8): a smooth
    textured background, then the antialiased objects; each box (x0, y0, x1, y1 in [0, 1] of the image)
    bounds the pixels its object covers at least half of; the mask holds k + 1 where object k covers at least
    half of the pixel and no later-drawn object does (its visible pixels), 0 on the background.

    Only the pixels around each object are supersampled, so rendering costs about the same at 64 px
    as at 32 px (the background is smooth and drawn at full resolution directly).
    """
    image = textured_background(rng, size)
    cell = size / 3
    boxes = np.zeros((len(objects), 4), np.float32)
    mask = np.zeros((size, size), np.uint8)
    for k, obj in enumerate(objects):
        row, col = divmod(obj.position, 3)
        radius = cell * object_radius(obj.size)
        slack = cell / 2 - radius
        cx = (col + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (row + 0.5) * cell + rng.uniform(-slack, slack)
        colour = jittered_colour(obj.colour, rng)
        boxes[k] = draw_object(image, obj.shape, cx, cy, radius, colour, mask, k + 1)
    return finish_image(image, rng), boxes / size, mask


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3]: a grey tilted gradient with faint diagonal stripes and a small tint."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    base = rng.uniform(90, 150)
    tilt = rng.uniform(-30, 30, size=2)
    stripes = rng.uniform(0, 8) * np.sin((2 * np.pi * rng.uniform(2, 6) / size) * (xx + yy))
    grey = base + tilt[0] * (xx / size - 0.5) + tilt[1] * (yy / size - 0.5) + stripes
    return grey[..., None] + rng.normal(0, 6, size=3).astype(np.float32)


def jittered_colour(colour: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [3]: the named colour's RGB with a little noise."""
    return np.clip(COLOUR_RGB[colour] + rng.normal(0, 12, size=3), 0, 255).astype(np.float32)


def draw_object(
    image: np.ndarray,
    shape: int,
    cx: float,
    cy: float,
    radius: float,
    colour: np.ndarray,
    mask: np.ndarray | None = None,
    label: int = 0,
) -> np.ndarray:
    """Blends the antialiased `SHAPES[shape]` centred at (cx, cy) pixels into float32 `image` [S, S, 3] in
    place, and writes `label` into uint8 `mask` [S, S] where it covers at least half a pixel (drawn over: an
    earlier object's pixel goes to this one); returns its box in pixels, float32 [4] (x0, y0, x1, y1): the
    pixels it covers at least half of."""
    rows, cols, alpha = _coverage(shape, cx, cy, radius, image.shape[0])
    if mask is not None:
        mask[rows, cols][alpha >= 0.5] = label
    ys, xs = np.nonzero(alpha >= 0.5)
    if not len(ys):  # an object too small to cover half of any pixel (tiny images): the pixels it touches
        ys, xs = np.nonzero(alpha > 0)
    if len(ys):
        box = (cols.start + xs.min(), rows.start + ys.min(), cols.start + xs.max() + 1, rows.start + ys.max() + 1)
    else:
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
    alpha = alpha[..., None]
    image[rows, cols] = image[rows, cols] * (1 - alpha) + colour * alpha
    return np.array(box, np.float32)


def finish_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [S, S, 3] -> uint8, with a little pixel noise."""
    image = image + rng.normal(0, 4, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
