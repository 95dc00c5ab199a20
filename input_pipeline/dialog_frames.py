"""Embedded task-oriented commands over the shapes world, each with its semantic frame (SPACE-2's toy data).

A frame is a tree: root -> domain ("edit" or "query") -> intent (INTENTS) -> slots (SLOTS) -> one value each
(from shapes.SHAPES, COLOURS, POSITIONS). SPACE-2 compares two frames view by view over ten item sets
(VIEWS): the nodes D, I, S, V, the edges DI, IS, SV and the paths DIS, ISV, DISV, each item a string such as
"edit-move-position-top left" (frame_items). For batching, every item becomes a stable 31-bit id
(item_id) and a frame an int32 [len(VIEWS), MAX_ITEMS] array of each view's sorted ids padded with -1
(frame_item_ids), so the Jaccard score of a view is a comparison of two rows.

Every command is a pure function of (seed, split, index), like input_pipeline/sentences.py, whose shapes
vocabulary and synonyms it reuses; intents share verbs and noun phrases ("put", "make", "tell me",
"the red square at the top"), so the intent lies in the sentence's structure rather than in one word.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from input_pipeline import shapes

VIEWS = ("D", "I", "S", "V", "DI", "IS", "SV", "DIS", "ISV", "DISV")
MAX_ITEMS = 4  # item ids per view per frame, padded with -1 (a frame has at most 3 slots)
INTENTS = {
    "move": "edit",
    "recolour": "edit",
    "remove": "edit",
    "count": "query",
    "locate": "query",
    "describe": "query",
}
SLOTS = ("object", "colour", "position")
_VALUES = {"object": shapes.SHAPES, "colour": shapes.COLOURS, "position": shapes.POSITIONS}
# (required, optional) slots of each intent; an optional one is stated with probability 0.5.
_GRAMMAR = {
    "move": (("object", "position"), ("colour",)),
    "recolour": (("object", "colour"), ("position",)),
    "remove": (("object",), ("colour", "position")),
    "count": (("object",), ("colour",)),
    "locate": (("object",), ("colour",)),
    "describe": (("position",), ()),
}
_EDIT_POLITE = ("", "please ", "could you ", "can you ", "i want you to ")
_ASK_POLITE = ("", "please ", "could you ", "can you ")
# {p} politeness, {np} the object as described, {c} the new colour, {at} where, {to} a move's target.
_TEMPLATES = {
    "move": ("{p}move {np} {to}", "{p}shift {np} {to}", "{p}put {np} {at}", "{p}make {np} go {to}"),
    "recolour": ("{p}make {np} {c}", "{p}paint {np} {c}", "{p}turn {np} {c}", "{p}colour {np} {c}"),
    "remove": ("{p}remove {np}", "{p}delete {np}", "{p}get rid of {np}", "{p}make {np} disappear"),
    "count": ("how many {np} are there", "{p}count the {np}", "{p}tell me how many {np} there are"),
    "locate": ("where is {np}", "{p}find {np}", "{p}tell me where {np} is", "{p}show me where {np} is"),
    "describe": ("what is {at}", "{p}tell me what is {at}", "what do you see {at}", "{p}tell me what you see {at}"),
}


@dataclasses.dataclass(frozen=True)
class Frame:
    """A command's semantic frame: (slot, value) pairs sorted (the embedded commands state each slot at most
    once; your files may repeat one with other values)."""

    domain: str
    intent: str
    slots: tuple[tuple[str, str], ...]


def frame_items(frame: Frame) -> dict[str, frozenset[str]]:
    """{view: its items} for the ten VIEWS: nodes, edges and paths of the frame's tree joined by "-". A frame
    without a domain ("", as your files may have) has no item in the views through it (D, DI, DIS, DISV)."""
    d, i, pairs = frame.domain, frame.intent, frame.slots
    items = {
        "D": frozenset({d}),
        "I": frozenset({i}),
        "S": frozenset(s for s, _ in pairs),
        "V": frozenset(v for _, v in pairs),
        "DI": frozenset({f"{d}-{i}"}),
        "IS": frozenset(f"{i}-{s}" for s, _ in pairs),
        "SV": frozenset(f"{s}-{v}" for s, v in pairs),
        "DIS": frozenset(f"{d}-{i}-{s}" for s, _ in pairs),
        "ISV": frozenset(f"{i}-{s}-{v}" for s, v in pairs),
        "DISV": frozenset(f"{d}-{i}-{s}-{v}" for s, v in pairs),
    }
    return items if d else items | dict.fromkeys(("D", "DI", "DIS", "DISV"), frozenset())


def item_id(view: str, item: str) -> int:
    """A stable non-negative 31-bit id of `item` in `view` (never the padding -1)."""
    digest = hashlib.blake2b(f"{view}/{item}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def frame_item_ids(frame: Frame, max_items: int = MAX_ITEMS) -> np.ndarray:
    """int32 [len(VIEWS), max_items]: row v holds view v's item ids in ascending order, then -1s."""
    ids = np.full((len(VIEWS), max_items), -1, np.int32)
    for row, (view, items) in enumerate(frame_items(frame).items()):
        ids[row, : len(items)] = sorted(item_id(view, item) for item in items)
    return ids


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, split, index), independent of the other embedded streams."""
    digest = hashlib.blake2b(f"dialog_frames/{seed}/{split}/{index}".encode(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


def _pick(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")


def _sample_frame(rng: np.random.Generator) -> Frame:
    intent = _pick(rng, tuple(INTENTS))
    required, optional = _GRAMMAR[intent]
    names = list(required) + [s for s in optional if rng.random() < 0.5]
    slots = tuple(sorted((s, str(_pick(rng, _VALUES[s]))) for s in names))
    return Frame(INTENTS[intent], intent, slots)


def _render(frame: Frame, rng: np.random.Generator) -> str:
    """One utterance stating every slot value of `frame`, in a random template, wording and politeness."""

    def word(w: str) -> str:
        return w if rng.random() < 0.5 else _pick(rng, shapes._SYNONYMS[w][:2])

    values = dict(frame.slots)
    colour = word(values["colour"]) if "colour" in values else ""
    obj = word(values["object"]) if "object" in values else ""
    position = values.get("position")
    at = _pick(rng, (f"at the {position}",) + shapes._POSITION_PHRASES[position]) if position else ""
    # The object as described: a recolour's colour is the new one, and a move's position is the target.
    adjective = f"{colour} " if colour and frame.intent != "recolour" else ""
    located = f" {at}" if at and frame.intent in ("recolour", "remove") else ""
    described = f"{adjective}{_plural(obj)}" if frame.intent == "count" else f"the {adjective}{obj}{located}"
    return _pick(rng, _TEMPLATES[frame.intent]).format(
        p=_pick(rng, _EDIT_POLITE if frame.domain == "edit" else _ASK_POLITE),
        np=described,
        c=colour,
        at=at,
        to=_pick(rng, (f"to the {position}", f"over to the {position}")),
    )


def command(seed: int, split: str, index: int) -> tuple[str, Frame]:
    """(utterance, its frame) of embedded command `index` of `split`; the intent is uniform over INTENTS."""
    rng = item_rng(seed, split, index)
    frame = _sample_frame(rng)
    return _render(frame, rng), frame


class CommandSource:
    """`size` training records for semi-supervised pretraining, random access like a grain source.

    Record i: {"text": a labelled utterance, "frame": int32 [len(views), MAX_ITEMS], the rows of `views` (default
    all of VIEWS, in that order) of its frame_item_ids, "unlabelled": another utterance}. The labelled pool holds
    max(1, round(size x labelled_fraction)) commands of split "labelled", cycled through (record i uses i mod pool
    size); unlabelled utterances are command(seed, "unlabelled", i).
    """

    def __init__(self, size: int, labelled_fraction: float = 0.1, seed: int = 0, views: tuple[str, ...] = VIEWS):
        if not 0 < labelled_fraction <= 1:
            raise ValueError(f"config.space2.labelled_fraction must lie in (0, 1], not {labelled_fraction}.")
        self.size, self.seed, self.rows = size, seed, [VIEWS.index(v) for v in views]
        self.num_labelled = max(1, round(size * labelled_fraction))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        text, frame = command(self.seed, "labelled", index % self.num_labelled)
        ids = frame_item_ids(frame)[self.rows]
        return {"text": text, "frame": ids, "unlabelled": command(self.seed, "unlabelled", index)[0]}
