"""Held-out binding splits of the shapes data: an image of 2-3 objects with a true and a false caption
made of the same words, bound differently (SugarCrepe's swap), in the training captions' own phrasing.

Kinds (`KINDS`): `attribute` swaps two objects' colours, `spatial` their grid positions, `size` their
sizes (one small, one large); `count` lists one object k times among the others against k +- 1 times.
Each example is a pure function of (seed, kind, index) and holds the true and false caption in alt-text
form (`caption`, `false_caption`, as input_pipeline/shapes.py writes training captions) and in one
rewrite template (`rewrite`, `false_rewrite`, the same template, synonyms and order for both).

Symmetric construction: the false caption is the true one's objects under an involution (exchange two
values) whose input distribution is invariant under it, and counting draws the pair of counts {k, k+1}
first and which one is true with probability 1/2. So (true, false) is distributed as (false, true):
no scorer that does not see the image beats 50% in expectation. The exchanged objects always differ
in what the caption states of them, so a false caption is never also true.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from input_pipeline import shapes
from input_pipeline.shape_drawing import COLOURS, SHAPES, render_image

KINDS = ("attribute", "spatial", "size", "count")
FIELDS = ("caption", "false_caption", "rewrite", "false_rewrite")
NUM_FAMILIES = 4  # rewrite template families of shapes._rewrite


def _looks(rng: np.random.Generator, count: int) -> list[tuple[int, int]]:
    """`count` different (colour, shape) pairs, uniformly."""
    picks = rng.choice(len(COLOURS) * len(SHAPES), size=count, replace=False)
    return [divmod(int(p), len(SHAPES)) for p in picks]


def _random_object(rng: np.random.Generator, cell: int) -> shapes.ShapeObject:
    return shapes.ShapeObject(
        int(rng.integers(len(SHAPES))), int(rng.integers(len(COLOURS))), int(rng.integers(2)), cell
    )


def _swap(kind: str, rng: np.random.Generator):
    """(image objects, false objects in the same order, mentions) of a swap kind; objects 0 and 1 exchange."""
    count = int(rng.integers(2, 4))
    cells = [int(c) for c in rng.choice(len(shapes.POSITIONS), size=count, replace=False)]
    if kind == "attribute":  # colours and shapes both differ: the swapped colour-shape pairs are both absent
        (c0, c1), (s0, s1) = (rng.choice(n, size=2, replace=False).tolist() for n in (len(COLOURS), len(SHAPES)))
    else:  # the two differ in colour or shape, so their exchanged sizes or positions are false
        (c0, s0), (c1, s1) = _looks(rng, 2)
    sizes = [int(s) for s in rng.permutation(2)] if kind == "size" else [int(s) for s in rng.integers(0, 2, size=2)]
    pair = [shapes.ShapeObject(s0, c0, sizes[0], cells[0]), shapes.ShapeObject(s1, c1, sizes[1], cells[1])]
    rest = [_random_object(rng, cell) for cell in cells[2:]]
    field = {"attribute": "colour", "spatial": "position", "size": "size"}[kind]
    a, b = (getattr(o, field) for o in pair)
    swapped = [dataclasses.replace(pair[0], **{field: b}), dataclasses.replace(pair[1], **{field: a})]
    # Like training alt-text, state size and position half the time each, except what the swap changes.
    stated = {k: bool(rng.random() < shapes.MENTION_PROBABILITY) for k in ("size", "position")}
    if field in stated:
        stated[field] = True
    order = rng.permutation(count)
    objects, false_objects = pair + rest, swapped + rest
    return [objects[i] for i in order], [false_objects[i] for i in order], shapes.Mentions(**stated)


def _count(rng: np.random.Generator):
    """(image objects, false objects, mentions): one look k times (+1 other) against k +- 1 times."""
    k, distractors = ((1, 1), (2, 0))[int(rng.integers(2))]  # counts {1, 2} beside one other, or {2, 3} alone
    true_k, false_k = (k, k + 1) if rng.random() < 0.5 else (k + 1, k)
    (colour, shape), (other_colour, other_shape) = _looks(rng, 2)
    cells = [int(c) for c in rng.choice(len(shapes.POSITIONS), size=max(true_k, false_k) + distractors, replace=False)]
    sizes = [int(s) for s in rng.integers(0, 2, size=len(cells))]
    copies = [shapes.ShapeObject(shape, colour, s, c) for s, c in zip(sizes, cells, strict=True)]
    others = [shapes.ShapeObject(other_shape, other_colour, sizes[-1], cells[-1])] * distractors
    objects, false_objects = copies[:true_k] + others, copies[:false_k] + others
    # Captions state colour and shape only: a stated size or position would tell copies apart.
    return _shuffled(objects, rng), _shuffled(false_objects, rng), shapes.Mentions(False, False)


def _shuffled(objects: list, rng: np.random.Generator) -> list:
    return [objects[i] for i in rng.permutation(len(objects))]


class _KeepEveryWord:
    """Stands in for shapes._rewrite's generator: every draw keeps the canonical word and position phrase."""

    def random(self) -> float:
        return 0.0


def _canonical_phrase(position: str) -> str:
    return f"in the {position}" if position == "center" else f"at the {position}"


_REWORDABLE = re.compile(  # every canonical word and position phrase, the longest first
    r"\b(?:"
    + "|".join(
        re.escape(k)
        for k in sorted([*shapes._SYNONYMS, *map(_canonical_phrase, shapes.POSITIONS)], key=len, reverse=True)
    )
    + r")\b"
)


def _wording(rng: np.random.Generator) -> dict[str, str]:
    """Canonical word or position phrase -> what this example's rewrites say instead: kept with
    shapes.KEEP_WORD_PROBABILITY, else one of the training rewrites' alternatives."""
    choices = {word: synonyms[:2] for word, synonyms in shapes._SYNONYMS.items()}
    choices.update({_canonical_phrase(p): phrases for p, phrases in shapes._POSITION_PHRASES.items()})
    return {
        canonical: canonical if rng.random() < shapes.KEEP_WORD_PROBABILITY else shapes._pick(rng, alternatives)
        for canonical, alternatives in choices.items()
    }


def _paraphrase(objects: list, mentions: shapes.Mentions, family: int, wording: dict[str, str]) -> str:
    """The rewrite of template `family` with each word worded as `wording` says: a swap moves the words
    (a 'crimson circle, navy square' becomes a 'navy circle, crimson square'), as in the alt-text form."""
    canonical = shapes._rewrite(objects, mentions, family, _KeepEveryWord())
    text = _REWORDABLE.sub(lambda m: wording[m.group(0)], canonical)
    return re.sub(r"\b(?:a|an) (?=(\w))", lambda m: "an " if m.group(1) in "aeiou" else "a ", text)


def make_binding_example(seed: int, kind: str, index: int, image_size: int = 32) -> dict:
    """Example `index` of binding split `kind`: `image` uint8 [image_size, image_size, 3], the four
    texts of FIELDS and `objects` (the image's ShapeObjects, in the true caption's order)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown binding kind {kind!r}; use one of {KINDS}.")
    rng = shapes.example_rng(seed, f"binding_{kind}", index)
    objects, false_objects, mentions = _count(rng) if kind == "count" else _swap(kind, rng)
    family, wording = int(rng.integers(NUM_FAMILIES)), _wording(rng)
    rewrite, false_rewrite = (_paraphrase(o, mentions, family, wording) for o in (objects, false_objects))
    return {
        "image": render_image(objects, rng, image_size),
        "caption": shapes._alt_text(objects, mentions),
        "false_caption": shapes._alt_text(false_objects, mentions),
        "rewrite": rewrite,
        "false_rewrite": false_rewrite,
        "objects": tuple(objects),
    }


def render_binding_split(kind: str, size: int, seed: int = 0, image_size: int = 32) -> dict:
    """Examples [0, size) of `kind`, columnar: `image` uint8 [size, H, W, 3], the FIELDS as lists of strings."""
    examples = [make_binding_example(seed, kind, i, image_size) for i in range(size)]
    columns = {field: [e[field] for e in examples] for field in FIELDS}
    columns["image"] = np.stack([e["image"] for e in examples])
    return columns
