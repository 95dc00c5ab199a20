"""The embedded "shapes" dataset: procedural captioned images, no download.

Every example is a pure function of (seed, split, index): 1-3 objects, each with a
shape, a colour (jittered), a size and a cell of a 3x3 grid, on a textured
background, plus every text field the methods of METHODS.md need:

- `caption`: alt-text style caption (one template family) that always states each
  object's colour and shape and, like real alt-text, only sometimes its size and
  position: then shape, not position, must tell apart same-coloured objects, which
  gives the contrastive loss far more shape-only negatives per batch;
- `rewrites`: K paraphrases stating exactly what the caption states, from other
  template families and synonyms (LaCLIP);
  about 4% of them are degenerate one-word outputs, as LLM rewrites sometimes are;
- `long_caption`: one sentence per object plus a scene sentence (DreamLIP);
- `raw_caption`: the caption with controlled noise, `raw_noise` in [0, 1] (ALIP);
- `hard_negatives`: one perturbed caption per `HARD_NEGATIVE_TYPES` entry (DeGLA,
  compositionality evaluation);
- `boxes` [3, 4] (x0, y0, x1, y1 in [0, 1]: the bounds of the pixels each object covers; zero rows
  for absent objects) and `region_captions` ("<size> <colour> <shape>" per object: CLOC);
- `object_mask` [S, S] uint8 (k + 1 on the pixels object k covers at least half of and shows, 0 on the
  background) and `object_labels` [3] int32 (each object's shape_colour, -1 for absent objects): DenseCLIP's
  segmentation labels (input_pipeline/segmentation.py);
- `labels`: shape, colour and shape_colour of the primary (first, largest) object.

The `test` split renders one object per image so that its class labels are
unambiguous for zero-shot classification.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os

import numpy as np

from input_pipeline.shape_drawing import COLOUR_RGB, COLOURS, SHAPES, render_scene  # noqa: F401

SIZES = ("small", "large")
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
SPLITS = ("train", "validation", "test")
HARD_NEGATIVE_TYPES = ("colour", "shape", "size", "position", "swap", "add")
NUM_REWRITES = 4
MAX_OBJECTS = 3
MENTION_PROBABILITY = 0.5  # chance that a training caption states an object's size (and, separately, position)
KEEP_WORD_PROBABILITY = 0.6  # a rewrite keeps each content word w.p. 0.6, else uses a synonym
VERSION = 6  # bump when rendering or texts change: it names the cache files

# Paraphrase vocabulary used only by the rewrites: a pretrained or LaCLIP-trained
# text tower must map these to the canonical words.
_SYNONYMS = {
    "circle": ("disc", "round dot", "circle"),
    "square": ("box", "block", "square"),
    "triangle": ("wedge", "three-sided shape", "triangle"),
    "diamond": ("rhombus", "lozenge", "diamond"),
    "cross": ("plus sign", "plus", "cross"),
    "ring": ("hoop", "donut", "ring"),
    "star": ("five-pointed star", "starlet", "star"),
    "bar": ("stripe", "strip", "bar"),
    "red": ("crimson", "scarlet", "red"),
    "green": ("emerald", "leafy green", "green"),
    "blue": ("navy", "azure", "blue"),
    "yellow": ("golden", "lemon", "yellow"),
    "purple": ("violet", "plum", "purple"),
    "orange": ("tangerine", "amber", "orange"),
    "cyan": ("turquoise", "aqua", "cyan"),
    "pink": ("rose", "salmon", "pink"),
    "small": ("tiny", "little", "small"),
    "large": ("big", "huge", "large"),
}
_POSITION_PHRASES = {
    "top left": ("in the upper left corner", "up on the left"),
    "top": ("at the top", "up in the middle"),
    "top right": ("in the upper right corner", "up on the right"),
    "left": ("on the left side", "at the middle left"),
    "center": ("in the middle", "right in the centre"),
    "right": ("on the right side", "at the middle right"),
    "bottom left": ("in the lower left corner", "down on the left"),
    "bottom": ("at the bottom", "down in the middle"),
    "bottom right": ("in the lower right corner", "down on the right"),
}
_NOISE_WORDS = (
    "free", "shipping", "click", "here", "stock", "photo", "img", "jpg", "best",
    "deal", "sale", "new", "hd", "wallpaper", "download", "2021",
)  # fmt: skip
_DEGENERATE_REWRITES = ("shapes", "image", "objects", "")


@dataclasses.dataclass(frozen=True)
class ShapeObject:
    shape: int
    colour: int
    size: int
    position: int

    def words(self) -> tuple[str, str, str, str]:
        return SIZES[self.size], COLOURS[self.colour], SHAPES[self.shape], POSITIONS[self.position]


def _pick(rng: np.random.Generator, options: tuple):
    """`rng.choice` for a tuple, without its slow array conversion."""
    return options[int(rng.integers(len(options)))]


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, split, index)."""
    digest = hashlib.blake2b(f"{seed}/{split}/{index}".encode(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


def _sample_objects(rng: np.random.Generator, split: str) -> list[ShapeObject]:
    count = 1 if split == "test" else int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    cells = rng.choice(len(POSITIONS), size=count, replace=False)
    sizes = sorted(rng.integers(0, 2, size=count), reverse=True)  # primary object is largest
    return [
        ShapeObject(int(rng.integers(len(SHAPES))), int(rng.integers(len(COLOURS))), int(s), int(c))
        for s, c in zip(sizes, cells, strict=True)
    ]


@dataclasses.dataclass(frozen=True)
class Mentions:
    """Which optional attributes a caption states (alt-text is often incomplete)."""

    size: bool = True
    position: bool = True


def _alt_text(objects: list[ShapeObject], mentions: Mentions) -> str:
    parts = []
    for size, colour, shape, pos in (o.words() for o in objects):
        words = [size] * mentions.size + [colour, shape] + [pos] * mentions.position
        parts.append(" ".join(words))
    return ", ".join(parts)


def _a(word: str) -> str:
    """The word with its indefinite article."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def _rewrite(objects: list[ShapeObject], mentions: Mentions, family: int, rng: np.random.Generator) -> str:
    """A paraphrase stating exactly what the caption states, in template family `family`."""

    def syn(word: str) -> str:
        # Like LLM rewrites, keep most content words and swap some for a synonym.
        return word if rng.random() < KEEP_WORD_PROBABILITY else _pick(rng, _SYNONYMS[word][:2])

    phrases = []
    for o in objects:
        size, colour, shape, pos = o.words()
        if rng.random() < KEEP_WORD_PROBABILITY:
            phrase = f"in the {pos}" if pos == "center" else f"at the {pos}"
        else:
            phrase = _pick(rng, _POSITION_PHRASES[pos])
        where = " " + phrase if mentions.position else ""
        if family == 0:
            big = syn(size) + " " if mentions.size else ""
            phrases.append(_a(f"{big}{syn(colour)} {syn(shape)}{where}"))
        elif family == 1:
            big = f" that is {syn(size)}" if mentions.size else ""
            phrases.append(_a(f"{syn(colour)} {syn(shape)}{big}{where}"))
        elif family == 2:
            looks = f"{syn(size)} and {syn(colour)}" if mentions.size else syn(colour)
            phrases.append(f"one {syn(shape)}, {looks},{where}".rstrip(","))
        else:
            big = f" looking {syn(size)}" if mentions.size else ""
            phrases.append(f"the {syn(colour)} {syn(shape)}{where}{big}")
    joiner, opening = (("; ", "we see "), (" plus ", ""), (" and ", ""), (", and ", "there is "))[(family + 3) % 4]
    return opening + joiner.join(phrases)


def _long_caption(objects: list[ShapeObject]) -> str:
    n = len(objects)
    scene = f"The picture contains {n} object{'s' if n > 1 else ''} on a grey textured background."
    sentences = [scene] + [
        f"There is a {s} {c} {sh} at the {p}." if p != "center" else f"There is a {s} {c} {sh} in the center."
        for s, c, sh, p in (o.words() for o in objects)
    ]
    return " ".join(sentences)


def scene_sentences(record: dict) -> str:
    """A record's objects as lower-case sentences in the language-model corpus' style, from its long caption:
    "there is a large red square at the bottom . there is a small cyan ring at the left ." (LiMBeR's and CLOSE's
    captions, training/caption_task.py)."""
    return record["long_caption"].split(". ", 1)[1].lower().replace(".", " .")


def _raw_caption(caption: str, noise: float, rng: np.random.Generator) -> str:
    """Alt-text with noise: each word replaced (wrong or irrelevant) w.p. `noise`, junk appended."""
    vocabulary = SHAPES + COLOURS + SIZES + _NOISE_WORDS
    words = [_pick(rng, vocabulary) if rng.random() < noise else w for w in caption.split(" ")]
    junk = rng.choice(_NOISE_WORDS, size=int(rng.integers(0, 1 + round(6 * noise)))).tolist()
    return " ".join(words + junk)


def _hard_negatives(objects: list[ShapeObject], mentions: Mentions, rng: np.random.Generator) -> tuple[str, ...]:
    """One caption per `HARD_NEGATIVE_TYPES`, each false for the image.

    Each is the caption with one change; a size or position change makes that
    attribute stated even where the caption leaves it out, so the text stays false.
    """
    first = objects[0]

    def other(value: int, n: int) -> int:
        return int((value + rng.integers(1, n)) % n)

    def with_first(**change) -> list[ShapeObject]:
        return [dataclasses.replace(first, **change)] + objects[1:]

    free_cells = [c for c in range(len(POSITIONS)) if c not in {o.position for o in objects}]
    if len(objects) > 1:
        second = objects[1]
        swapped = [
            dataclasses.replace(first, colour=second.colour),
            dataclasses.replace(second, colour=first.colour),
        ] + objects[2:]
        if first.colour == second.colour:  # a colour swap would be true: swap shapes instead
            swapped = [
                dataclasses.replace(first, shape=second.shape),
                dataclasses.replace(second, shape=first.shape),
            ] + objects[2:]
        if first.colour == second.colour and first.shape == second.shape:
            swapped = with_first(colour=other(first.colour, len(COLOURS)))
    else:  # one object: swap colour and shape words of a fresh wrong pair
        swapped = with_first(colour=other(first.colour, len(COLOURS)), shape=other(first.shape, len(SHAPES)))
    absent = ShapeObject(
        int(rng.integers(len(SHAPES))),
        int(rng.integers(len(COLOURS))),
        int(rng.integers(2)),
        int(_pick(rng, tuple(free_cells))),
    )
    variants = (
        with_first(colour=other(first.colour, len(COLOURS))),
        with_first(shape=other(first.shape, len(SHAPES))),
        with_first(size=1 - first.size),
        with_first(position=int(_pick(rng, tuple(free_cells)))),
        swapped,
        objects + [absent],
    )
    stated = [mentions] * len(variants)
    stated[2] = dataclasses.replace(mentions, size=True)
    stated[3] = dataclasses.replace(mentions, position=True)
    return tuple(_alt_text(v, m) for v, m in zip(variants, stated, strict=True))


def make_example(seed: int, split: str, index: int, image_size: int = 32) -> dict:
    """The example `index` of `split` as a dict of NumPy arrays and Python strings."""
    if split not in SPLITS:
        raise ValueError(f"Unknown shapes split {split!r}; use one of {SPLITS}.")
    rng = example_rng(seed, split, index)
    objects = _sample_objects(rng, split)
    image, object_boxes, object_mask = render_scene(objects, rng, image_size)
    # Training alt-text states size and position half the time each; test captions state everything.
    if split == "test":
        mentions = Mentions()
    else:
        mentions = Mentions(
            size=bool(rng.random() < MENTION_PROBABILITY), position=bool(rng.random() < MENTION_PROBABILITY)
        )
    caption = _alt_text(objects, mentions)
    rewrites = []
    for family in range(NUM_REWRITES):
        if rng.random() < 0.04:
            rewrites.append(_pick(rng, _DEGENERATE_REWRITES))
        else:
            rewrites.append(_rewrite(objects, mentions, family, rng))
    noise = _pick(rng, (0.0, 0.0, 0.15, 0.4))
    boxes = np.zeros((MAX_OBJECTS, 4), np.float32)
    boxes[: len(objects)] = object_boxes
    first = objects[0]
    return {
        "image": image,
        "caption": caption,
        "rewrites": tuple(rewrites),
        "long_caption": _long_caption(objects),
        "raw_caption": _raw_caption(caption, noise, rng),
        "raw_noise": np.float32(noise),
        "hard_negatives": _hard_negatives(objects, mentions, rng),
        "boxes": boxes,
        "region_captions": tuple(" ".join(o.words()[:3]) for o in objects),
        "object_mask": object_mask,
        "object_labels": np.array(
            [o.shape * len(COLOURS) + o.colour for o in objects] + [-1] * (MAX_OBJECTS - len(objects)), np.int32
        ),
        "num_objects": np.int32(len(objects)),
        "shape": np.int32(first.shape),
        "colour": np.int32(first.colour),
        "shape_colour": np.int32(first.shape * len(COLOURS) + first.colour),
    }


def _make_example_at(seed: int, split: str, image_size: int, index: int) -> dict:
    return make_example(seed, split, index, image_size)


TEXT_FIELDS = ("caption", "rewrites", "long_caption", "raw_caption", "hard_negatives", "region_captions")
ARRAY_FIELDS = (
    "image", "raw_noise", "boxes", "object_mask", "object_labels", "num_objects", "shape", "colour", "shape_colour",
)  # fmt: skip


PARALLEL_RENDER_MIN = 10_000  # smaller splits render faster than worker processes start


def render_split(split: str, size: int, seed: int, image_size: int) -> dict:
    """All `size` examples of a split, columnar: NumPy arrays and lists of texts."""
    render = functools.partial(_make_example_at, seed, split, image_size)
    return render_columns(render, size, ARRAY_FIELDS, TEXT_FIELDS)


def render_columns(render, size: int, array_fields: tuple[str, ...], text_fields: tuple[str, ...]) -> dict:
    """`render(i)` for i < size, columnar: a stacked NumPy array per array field, a list per text field.

    Large splits render on every CPU of this process (each example depends only on its index), in
    spawned processes: forking a process whose jax runtime already runs threads can deadlock; `render`
    must be picklable (a functools.partial of a module-level function)."""
    processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if size < PARALLEL_RENDER_MIN or processes < 2:
        examples = [render(i) for i in range(size)]
    else:
        try:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
                examples = list(pool.map(render, range(size), chunksize=500))
        except concurrent.futures.process.BrokenProcessPool:  # e.g. a __main__ read from stdin cannot spawn
            examples = [render(i) for i in range(size)]
    columns = {k: np.stack([e[k] for e in examples]) for k in array_fields}
    columns.update({k: [e[k] for e in examples] for k in text_fields})
    return columns


def _load_or_render(split: str, size: int, seed: int, image_size: int, cache_dir: str | None) -> dict:
    return cached_columns(
        cache_dir,
        f"shapes_v{VERSION}_{split}_{size}_{seed}_{image_size}",
        lambda: render_split(split, size, seed, image_size),
        ARRAY_FIELDS,
        TEXT_FIELDS,
    )


def cached_columns(cache_dir: str | None, name: str, render, array_fields, text_fields) -> dict:
    """The columns `render()` makes, kept in `cache_dir`/`name`.npz and .json (read back when both are
    complete); rendered in memory only when `cache_dir` is empty."""
    if not cache_dir:
        return render()
    stem = os.path.join(os.path.expanduser(cache_dir), name)
    try:
        with np.load(stem + ".npz", allow_pickle=False) as arrays, open(stem + ".json", encoding="utf-8") as f:
            columns = {k: arrays[k] for k in array_fields}
            columns.update({k: [tuple(t) if isinstance(t, list) else t for t in v] for k, v in json.load(f).items()})
        return columns
    except (OSError, ValueError, KeyError):
        pass  # absent or partly written: render again
    columns = render()
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    tmp = f"{stem}.{os.getpid()}.tmp"
    np.savez(tmp + ".npz", **{k: columns[k] for k in array_fields})
    with open(tmp + ".json", "w", encoding="utf-8") as f:
        json.dump({k: columns[k] for k in text_fields}, f)
    os.replace(tmp + ".json", stem + ".json")  # npz last: its presence means both are complete
    os.replace(tmp + ".npz", stem + ".npz")
    return columns


class ShapesSource:
    """grain random-access source over one split of the shapes data.

    The split is rendered once (about 1.3 ms per example per CPU) and kept in memory, and
    in `cache_dir` when given, since training revisits every example many times.
    Records are exactly `make_example(seed, split, index, image_size)`.
    """

    def __init__(self, split: str, size: int, seed: int = 0, image_size: int = 32, cache_dir: str | None = None):
        if split not in SPLITS:
            raise ValueError(f"Unknown shapes split {split!r}; use one of {SPLITS}.")
        self.split, self.size, self.seed, self.image_size = split, size, seed, image_size
        self._columns = _load_or_render(split, size, seed, image_size, cache_dir)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        return {k: v[index] for k, v in self._columns.items()}

    def __repr__(self) -> str:
        return f"ShapesSource(split={self.split!r}, size={self.size}, seed={self.seed}, image_size={self.image_size})"
