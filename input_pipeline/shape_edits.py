"""The embedded image-editing pairs (`shape_edits`): SuperEdit's toy (METHODS.md §28).

A record is a shapes scene (one or two large objects on the 3 x 3 grid of input_pipeline/shapes.py, distinct
colours, so "the red circle" names one object) before and after one edit, the instruction that makes the edit,
and the wrong instructions a VLM writes by swapping one of its words:

    recolour  "make the red circle blue"        wrong: another new colour ("make the red circle green")
    move      "move the red circle left"        wrong: another direction ("move the red circle up")
    add       "add a blue star at the top left" wrong: another colour, or another free cell

Both images share every random draw (background, each object's jitter and colour noise, pixel noise; one
generator per part), so they differ in the edited object's pixels alone. Records are pure functions of (seed,
split, index); "train" and "test" draw from disjoint streams. `wrong_rate` > 0 replaces that share of the
records' instructions by one of their wrong ones (a fixed share per index): the unrectified instructions that
SuperEdit's rewriting fixes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from input_pipeline.shape_drawing import (
    COLOURS,
    SHAPES,
    draw_object,
    finish_image,
    jittered_colour,
    object_radius,
    textured_background,
)
from input_pipeline.shapes import POSITIONS, example_rng

EDIT_DATASET = "shape_edits"
EDITS = ("recolour", "move", "add")
# direction word -> (row, column) step on the 3 x 3 grid
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
MAX_OBJECTS = 2
# A pixel whose largest channel difference between two images exceeds this is changed: the closest pair of the
# palette differs by 75 in one channel, and both images share their noise.
CHANGE_THRESHOLD = 40


@dataclasses.dataclass(frozen=True)
class Thing:
    shape: int
    colour: int
    position: int  # cell of the 3 x 3 grid, row-major
    slot: int  # which random stream draws its jitter: kept by every edit, so an object looks the same after it

    def name(self) -> str:
        return f"{COLOURS[self.colour]} {SHAPES[self.shape]}"


def _free_cells(things: list[Thing]) -> list[int]:
    taken = {t.position for t in things}
    return [cell for cell in range(len(POSITIONS)) if cell not in taken]


def _moved(position: int, direction: str) -> int | None:
    """The cell one step from `position` in `direction`, or None off the grid."""
    (row, col), (dr, dc) = divmod(position, 3), DIRECTIONS[direction]
    return (row + dr) * 3 + col + dc if 0 <= row + dr < 3 and 0 <= col + dc < 3 else None


def _other(rng: np.random.Generator, count: int, exclude: set[int]) -> int:
    return int(rng.choice([i for i in range(count) if i not in exclude]))


def _edit(things: list[Thing], kind: str, rng: np.random.Generator) -> tuple[list[Thing], str, list[str]]:
    """(the things after the edit, its instruction, three wrong instructions, each one word swapped)."""
    free = _free_cells(things)
    if kind == "move":  # one of the things that has a free cell beside it
        movable = [i for i, t in enumerate(things) if any(_moved(t.position, d) in free for d in DIRECTIONS)]
        k = movable[int(rng.integers(len(movable)))]
    else:
        k = int(rng.integers(len(things)))
    thing, used = things[k], {t.colour for t in things}
    if kind == "recolour":
        new = _other(rng, len(COLOURS), used)
        wrong = rng.choice([c for c in range(len(COLOURS)) if c not in used | {new}], size=3, replace=False)
        after = [dataclasses.replace(thing, colour=new) if i == k else t for i, t in enumerate(things)]
        say = lambda c: f"make the {thing.name()} {COLOURS[c]}"  # noqa: E731
        return after, say(new), [say(c) for c in wrong]
    if kind == "move":
        moves = [d for d in DIRECTIONS if _moved(thing.position, d) in free]
        direction = moves[int(rng.integers(len(moves)))]
        after = [dataclasses.replace(thing, position=_moved(thing.position, direction)) if i == k else t
                 for i, t in enumerate(things)]  # fmt: skip
        say = lambda d: f"move the {thing.name()} {d}"  # noqa: E731
        return after, say(direction), [say(d) for d in DIRECTIONS if d != direction]
    cell = free[int(rng.integers(len(free)))]
    new = Thing(int(rng.integers(len(SHAPES))), _other(rng, len(COLOURS), used), cell, MAX_OBJECTS)
    say = lambda t: f"add a {t.name()} at the {POSITIONS[t.position]}"  # noqa: E731
    wrong = [
        dataclasses.replace(new, colour=_other(rng, len(COLOURS), used | {new.colour})),
        dataclasses.replace(new, position=int(rng.choice([c for c in free if c != cell]))),
        dataclasses.replace(new, shape=_other(rng, len(SHAPES), {new.shape})),
    ]
    return [*things, new], say(new), [say(t) for t in wrong]


def render(things: list[Thing], seed: int, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the background, then the things in slot order, each from its slot's own generator
    (so that adding, moving or recolouring one leaves the others' pixels as they were)."""
    image = textured_background(np.random.default_rng([seed, 0]), size)
    cell = size / 3
    radius = cell * object_radius(1)
    slack = cell / 2 - radius
    for thing in sorted(things, key=lambda t: t.slot):
        rng = np.random.default_rng([seed, 1, thing.slot])
        row, col = divmod(thing.position, 3)
        cx, cy = (col + 0.5) * cell + rng.uniform(-slack, slack), (row + 0.5) * cell + rng.uniform(-slack, slack)
        draw_object(image, thing.shape, cx, cy, radius, jittered_colour(thing.colour, rng))
    return finish_image(image, np.random.default_rng([seed, 2]))


def record(seed: int, split: str, index: int, image_size: int = 16, wrong_rate: float = 0.0) -> dict:
    """{"image": uint8 [S, S, 3] before, "target": after, "caption": the instruction, "hard_negatives": the wrong
    instructions, "edit": its kind, "instruction_is_wrong": whether the caption is one of the wrong ones}."""
    rng = example_rng(seed, f"edits/{split}", index)
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    cells = rng.choice(len(POSITIONS), size=count, replace=False)
    colours = rng.choice(len(COLOURS), size=count, replace=False)
    things = [
        Thing(int(rng.integers(len(SHAPES))), int(c), int(p), i)
        for i, (c, p) in enumerate(zip(colours, cells, strict=True))
    ]
    kind = EDITS[int(rng.integers(len(EDITS)))]
    after, caption, wrong = _edit(things, kind, rng)
    scene_seed = int(rng.integers(2**31))
    is_wrong = bool(wrong_rate > 0 and example_rng(seed, f"wrong/{split}", index).random() < wrong_rate)
    if is_wrong:
        caption, wrong = wrong[0], wrong[1:]  # the VLM's other wrong instructions stay wrong for the pair
    return {
        "image": render(things, scene_seed, image_size),
        "target": render(after, scene_seed, image_size),
        "caption": caption,
        "hard_negatives": tuple(wrong),
        "edit": kind,
        "instruction_is_wrong": is_wrong,
    }
