"""Embedded text-only data from the shapes vocabulary: sentences, NLI triples, graded STS pairs, documents.

Every item is a pure function of (seed, split, index), like input_pipeline/shapes.py, whose vocabularies
(shapes, colours, sizes, positions and the synonyms of its rewrites) it reuses; no images are rendered.
A *scene* is 1-2 objects, each with a size, colour, shape and position; a sentence describes a scene in
one of four template families with random synonyms, so two descriptions of one scene share meaning
but often few words:
- `triple(seed, split, index)`: (sentence, entailment = another description of the same scene,
  contradiction = a description of the scene with one attribute of one object changed), the
  layout of SNLI/MNLI triples that supervised SimCSE trains on;
- `sts_pair(seed, index)`: two descriptions of scenes that share a known fraction of their attributes;
  the gold score is 5 x that fraction (0-5, as in STS), so Spearman against it measures graded meaning;
- `document(seed, index)`: a "language" and 4-8 sentences around a latent topic (a colour and a
  shape that most of its objects take), so neighbouring sentences are related (CCP's context
  windows). The second language, `xx`, spells every English word backwards with an `-a` ending:
  the same content in disjoint words, as two languages share no surface forms.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from input_pipeline import shapes

LANGUAGES = ("en", "xx")
ATTRIBUTES = ("size", "colour", "shape", "position")
_CHOICES = {"size": shapes.SIZES, "colour": shapes.COLOURS, "shape": shapes.SHAPES, "position": shapes.POSITIONS}
# Shared with the shapes rewrites: synonyms and position phrases a text encoder must map together.
_SYNONYMS = shapes._SYNONYMS
_POSITION_PHRASES = shapes._POSITION_PHRASES


@dataclasses.dataclass(frozen=True)
class Thing:
    """One described object: indices into shapes.SIZES, COLOURS, SHAPES, POSITIONS."""

    size: int
    colour: int
    shape: int
    position: int


def item_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, kind, index), independent of shapes' own streams."""
    digest = hashlib.blake2b(f"sentences/{seed}/{kind}/{index}".encode(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


def _pick(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def sample_scene(rng: np.random.Generator, topic: tuple[int, int] | None = None) -> tuple[Thing, ...]:
    """1-2 objects in distinct cells; with `topic` = (colour, shape) each takes them w.p. 0.7 each."""
    count = int(rng.integers(1, 3))
    cells = rng.choice(len(shapes.POSITIONS), size=count, replace=False)
    things = []
    for cell in cells:
        colour, shape = int(rng.integers(len(shapes.COLOURS))), int(rng.integers(len(shapes.SHAPES)))
        if topic is not None:
            colour = topic[0] if rng.random() < 0.7 else colour
            shape = topic[1] if rng.random() < 0.7 else shape
        things.append(Thing(int(rng.integers(len(shapes.SIZES))), colour, shape, int(cell)))
    return tuple(things)


def change(scene: tuple[Thing, ...], which: list[tuple[int, str]], rng: np.random.Generator) -> tuple[Thing, ...]:
    """The scene with each (object index, attribute) in `which` set to another value (positions stay distinct)."""
    things = list(scene)
    for k, attribute in which:
        value = getattr(things[k], attribute)
        if attribute == "position":
            taken = {t.position for t in things}
            options = tuple(p for p in range(len(shapes.POSITIONS)) if p not in taken)
        else:
            options = tuple(v for v in range(len(_CHOICES[attribute])) if v != value)
        things[k] = dataclasses.replace(things[k], **{attribute: int(_pick(rng, options))})
    return tuple(things)


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def describe(scene: tuple[Thing, ...], rng: np.random.Generator) -> str:
    """One English sentence stating every attribute of every object, in a random template and wording."""

    def word(w: str) -> str:
        return w if rng.random() < 0.5 else _pick(rng, _SYNONYMS[w][:2])

    family = int(rng.integers(4))
    phrases = []
    for thing in scene:
        size, colour = word(shapes.SIZES[thing.size]), word(shapes.COLOURS[thing.colour])
        shape, position = word(shapes.SHAPES[thing.shape]), shapes.POSITIONS[thing.position]
        where = _pick(rng, (f"at the {position}",) + _POSITION_PHRASES[position])
        phrases.append(
            (
                _a(f"{size} {colour} {shape} {where}"),
                _a(f"{colour} {shape} that is {size}, {where}"),
                f"one {shape}, {size} and {colour}, {where}",
                f"the {colour} {shape} {where}, looking {size}",
            )[family]
        )
    opening = ("there is ", "we see ", "", "the picture shows ")[family]
    return opening + (" and ", "; ", ", also ", ", and ")[family].join(phrases)


def translate(sentence: str, language: str) -> str:
    """`sentence` in `language`: English as is; `xx` spells each word backwards and appends `a`."""
    if language == "en":
        return sentence
    return " ".join(w[::-1] + "a" if w.isalpha() else w for w in sentence.replace(",", " ,").replace(";", " ;").split())


def triple(seed: int, split: str, index: int) -> dict[str, str]:
    """{"text", "positive", "negative"}: a sentence, a paraphrase of it and a one-attribute contradiction."""
    rng = item_rng(seed, f"triple/{split}", index)
    scene = sample_scene(rng)
    which = [(int(rng.integers(len(scene))), _pick(rng, ATTRIBUTES))]
    return {
        "text": describe(scene, rng),
        "positive": describe(scene, rng),
        "negative": describe(change(scene, which, rng), rng),
    }


def sts_pair(seed: int, index: int) -> tuple[str, str, float]:
    """(first, second, gold in [0, 5]): the second scene keeps a uniformly drawn number of the first's
    attributes; gold = 5 x kept / all (objects compared position by position of their description)."""
    rng = item_rng(seed, "sts", index)
    scene = sample_scene(rng)
    slots = [(k, a) for k in range(len(scene)) for a in ATTRIBUTES]
    changed = int(rng.integers(len(slots) + 1))
    which = [slots[i] for i in rng.choice(len(slots), size=changed, replace=False)]
    other = change(scene, which, rng)
    return describe(scene, rng), describe(other, rng), 5.0 * (len(slots) - changed) / len(slots)


def sts_set(seed: int, size: int) -> tuple[list[str], list[str], np.ndarray]:
    """`size` embedded STS pairs: (first sentences, second sentences, float32 [size] gold scores)."""
    pairs = [sts_pair(seed, i) for i in range(size)]
    return [p[0] for p in pairs], [p[1] for p in pairs], np.array([p[2] for p in pairs], np.float32)


def document(seed: int, index: int) -> tuple[str, list[str]]:
    """(language, 4-8 sentences about one latent topic) of embedded document `index`."""
    rng = item_rng(seed, "document", index)
    language = _pick(rng, LANGUAGES)
    topic = (int(rng.integers(len(shapes.COLOURS))), int(rng.integers(len(shapes.SHAPES))))
    count = int(rng.integers(4, 9))
    return language, [translate(describe(sample_scene(rng, topic), rng), language) for _ in range(count)]
