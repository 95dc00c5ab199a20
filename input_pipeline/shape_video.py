"""The embedded "shapes_video" dataset: procedural captioned clips of one shapes object in motion (X-CLIP).

Every clip is a pure function of (seed, split, index): CLIP_FRAMES frames of one object (a shape and colour of
input_pipeline/shape_drawing.py, jittered) on one textured background, doing one of MOTIONS. Fields:
- `video` uint8 [CLIP_FRAMES, S, S, 3];
- `caption`: "a <colour> <shape> <motion>" (a colour change names the new colour: "... changing colour to blue");
  like alt-text, training captions state the colour and the shape only half the time each ("a circle moving
  left", "a red shape growing"), so that many captions of a batch differ in their motion alone (the test
  split's state both);
- `hard_negatives`: the caption with each other motion instead, false for the clip (X-CLIP's prompted term);
- labels `motion` (into MOTIONS), `shape`, `colour` (the colour of the first frame).

Left and right are one path walked either way, as are growing and shrinking, and both directions draw their
paths from the same distribution: a frame taken at random from a left clip is distributed exactly as one
from a right clip, so only the order of the frames tells them apart (tests/test_xclip.py checks that a
single-frame classifier stays at chance on them).
"""

from __future__ import annotations

import functools

import numpy as np

from input_pipeline.shape_drawing import (
    COLOURS,
    SHAPES,
    draw_object,
    finish_image,
    jittered_colour,
    textured_background,
)
from input_pipeline.shapes import SPLITS, ShapesSource, cached_columns, example_rng, render_columns

MOTIONS = ("moving left", "moving right", "growing", "shrinking", "changing colour", "standing still")
ORDER_ONLY = (0, 1, 2, 3)  # the motions that one frame cannot tell from their reverse
CLIP_FRAMES = 8
MIN_IMAGE_SIZE = 16  # pixels: below it the travel of a sliding object and the largest growth do not fit
VERSION = 2  # bump when rendering or texts change: it names the cache files
TRAVEL = 0.45  # left / right: the centre moves this fraction of the frame's width over the clip
RADIUS = (0.12, 0.17)  # the object's radius, a fraction of the frame, for the motions that keep its size
GROWTH = (0.09, 0.21)  # growing / shrinking: the radius runs between these fractions of the frame
ARRAY_FIELDS = ("video", "motion", "shape", "colour")
TEXT_FIELDS = ("caption", "hard_negatives")


MENTION_PROBABILITY = 0.5  # chance that a training caption states the colour (and, separately, the shape)


def caption(colour: int | None, shape: int | None, motion: int, new_colour: int) -> str:
    """The caption of a clip; colour or shape None leaves it unstated."""
    phrase = MOTIONS[motion] + (f" to {COLOURS[new_colour]}" if MOTIONS[motion] == "changing colour" else "")
    words = ([] if colour is None else [COLOURS[colour]]) + [SHAPES[shape] if shape is not None else "shape"]
    return " ".join(["a", *words, phrase])


def _path(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Per frame t < CLIP_FRAMES of each motion: centre x, y and radius in pixels (forward motions; the
    reverse ones walk them backwards). Every draw is made whatever the motion, so the draws after it
    are too."""
    progress = np.linspace(0.0, 1.0, CLIP_FRAMES)
    radius = size * rng.uniform(*RADIUS)
    low, high = (size * g for g in GROWTH)
    travel = size * TRAVEL
    start = rng.uniform(radius + 1, size - radius - 1 - travel)
    across = rng.uniform(radius + 1, size - radius - 1, size=2)
    still = np.full(CLIP_FRAMES, 1.0)
    grow_centre = rng.uniform(high + 1, size - high - 1, size=2)
    return {
        "slide": np.stack([start + travel * progress, across[1] * still, radius * still], -1),
        "grow": np.stack([grow_centre[0] * still, grow_centre[1] * still, low + (high - low) * progress], -1),
        "still": np.stack([across[0] * still, across[1] * still, radius * still], -1),
    }


def make_clip(seed: int, split: str, index: int, image_size: int = 32) -> dict:
    """The clip `index` of `split` as a dict of NumPy arrays and Python strings (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown shapes_video split {split!r}; use one of {SPLITS}.")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"shapes_video clips are at least {MIN_IMAGE_SIZE} pixels wide, not {image_size}.")
    rng = example_rng(seed, f"video/{split}", index)
    shape, motion = int(rng.integers(len(SHAPES))), int(rng.integers(len(MOTIONS)))
    colour = int(rng.integers(len(COLOURS)))
    new_colour = int((colour + rng.integers(1, len(COLOURS))) % len(COLOURS))
    stated = rng.random(2) < MENTION_PROBABILITY
    if split == "test":
        stated[:] = True
    named_colour, named_shape = (colour if stated[0] else None), (shape if stated[1] else None)
    paths = _path(rng, image_size)
    name = MOTIONS[motion]
    path = paths["slide" if "moving" in name else "grow" if name in ("growing", "shrinking") else "still"]
    if name in ("moving left", "shrinking"):
        path = path[::-1]
    rgb = jittered_colour(colour, rng), jittered_colour(new_colour, rng)
    background = textured_background(rng, image_size)
    frames = []
    for t, (cx, cy, radius) in enumerate(path):
        changed = name == "changing colour" and t >= CLIP_FRAMES // 2
        image = background.copy()
        draw_object(image, shape, cx, cy, radius, rgb[changed])
        frames.append(finish_image(image, rng))
    others = [m for m in range(len(MOTIONS)) if m != motion]
    return {
        "video": np.stack(frames),
        "caption": caption(named_colour, named_shape, motion, new_colour),
        "hard_negatives": tuple(caption(named_colour, named_shape, m, new_colour) for m in others),
        "motion": np.int32(motion),
        "shape": np.int32(shape),
        "colour": np.int32(colour),
    }


def frame_indices(clip_frames: int, frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """int [frames]: X-CLIP's (TSN's) sampling, one frame from each of `frames` equal segments of the clip,
    at random within it (`rng`: training) or its middle (None: evaluation); in order."""
    edges = np.linspace(0, clip_frames, frames + 1)
    offsets = rng.uniform(size=frames) if rng is not None else np.full(frames, 0.5)
    return np.minimum((edges[:-1] + offsets * np.diff(edges)).astype(int), clip_frames - 1)


def _make_clip_at(seed: int, split: str, image_size: int, index: int) -> dict:
    return make_clip(seed, split, index, image_size)


class ShapesVideoSource(ShapesSource):
    """grain random-access source over one split of the clips, rendered once (and kept in `cache_dir` when
    given); records are exactly `make_clip(seed, split, index, image_size)`."""

    def __init__(self, split: str, size: int, seed: int = 0, image_size: int = 32, cache_dir: str | None = None):
        if split not in SPLITS:
            raise ValueError(f"Unknown shapes_video split {split!r}; use one of {SPLITS}.")
        self.split, self.size, self.seed, self.image_size = split, size, seed, image_size
        render = functools.partial(render_columns, functools.partial(_make_clip_at, seed, split, image_size), size)
        name = f"shapes_video_v{VERSION}_{split}_{size}_{seed}_{image_size}"
        self._columns = cached_columns(cache_dir, name, lambda: render(ARRAY_FIELDS, TEXT_FIELDS), ARRAY_FIELDS,
                                       TEXT_FIELDS)  # fmt: skip
