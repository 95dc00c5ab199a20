"""The embedded language-model corpus (`lm_text`): shapes prose, and facts about named objects to memorise.

Every record is a pure function of (seed, split, index), like input_pipeline/sentences.py, whose scene
descriptions it reuses. A fixed *world* (independent of the run's seed, so that every run memorises the same
facts) gives each of NUM_ENTITIES made-up names ("the vokim") a colour and a shape. Records, {"text"}:
- prose (40%): 1-2 English sentences of one embedded document (shared topic: a colour and a shape);
- facts (20%): "the vokim is red ." / "the vokim is a square ." / "the vokim is a red square ." about the
  first NUM_MEMORISED entities;
- closed-book questions (15%): "question : what colour is the vokim ? answer : red" on those entities;
- open-book questions (25%): "context : the X is C . question : what colour is the X ? answer : A". Half ask
  about a fresh name, whose only source is the context (A = C: the model learns to read); half about a
  memorised entity, where in CONFLICT_RATE of them the context contradicts the world and the label is the
  memorised answer — contexts are not always to be trusted, so memory and context compete at test time.
`conflict_questions(kind)` builds the knowledge-conflict test (AdaCAD, evaluation/knowledge_conflict.py):
for every memorised entity and attribute, its question with a context that agrees (`agreement`) or swaps the
value (`conflict`); the right answer is the context's, as in NQ-Swap.
"""

from __future__ import annotations

import numpy as np

from input_pipeline import sentences, shapes

NUM_ENTITIES = 64
NUM_MEMORISED = 48  # entities whose facts appear in training; the rest are never named there
CONFLICT_RATE = 0.25
QUESTION_ATTRIBUTES = {"colour": shapes.COLOURS, "shape": shapes.SHAPES}
_WORLD_SEED = 20261205
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


def _make_world() -> tuple[tuple[str, ...], np.ndarray]:
    """(NUM_ENTITIES distinct names, int [NUM_ENTITIES, 2] colour and shape indices)."""
    rng = np.random.default_rng(_WORLD_SEED)
    names: list[str] = []
    while len(names) < NUM_ENTITIES:
        name = (
            "".join(_ONSETS[rng.integers(14)] + _VOWELS[rng.integers(5)] for _ in range(2)) + _ONSETS[rng.integers(14)]
        )
        if name not in names:
            names.append(name)
    attributes = np.stack(
        [rng.integers(len(shapes.COLOURS), size=NUM_ENTITIES), rng.integers(len(shapes.SHAPES), size=NUM_ENTITIES)],
        axis=1,
    )
    return tuple(names), attributes


ENTITIES, ENTITY_ATTRIBUTES = _make_world()


def value(entity: int, attribute: str) -> str:
    """The world's colour or shape of entity `entity`."""
    column = list(QUESTION_ATTRIBUTES).index(attribute)
    return QUESTION_ATTRIBUTES[attribute][ENTITY_ATTRIBUTES[entity, column]]


def statement(name: str, attribute: str, answer: str) -> str:
    return f"the {name} is {answer} ." if attribute == "colour" else f"the {name} is a {answer} ."


def question(name: str, attribute: str) -> str:
    return f"question : what {attribute} is the {name} ? answer :"


def open_book(name: str, attribute: str, context_value: str) -> str:
    """The prompt of an open-book question whose context states `context_value`."""
    return f"context : {statement(name, attribute, context_value)} {question(name, attribute)}"


def _fresh_name(rng: np.random.Generator) -> str:
    """A made-up name outside the world (three syllables, so never one of ENTITIES)."""
    return "".join(_ONSETS[rng.integers(14)] + _VOWELS[rng.integers(5)] for _ in range(3))


def record(seed: int, split: str, index: int) -> dict[str, str]:
    """{"text"}: record `index` of `split` (see the module docstring for the mixture)."""
    rng = sentences.item_rng(seed, f"lm/{split}", index)
    kind = rng.random()
    if kind < 0.4:
        topic = (int(rng.integers(len(shapes.COLOURS))), int(rng.integers(len(shapes.SHAPES))))
        count = int(rng.integers(1, 3))
        return {
            "text": " . ".join(sentences.describe(sentences.sample_scene(rng, topic), rng) for _ in range(count)) + " ."
        }
    entity = int(rng.integers(NUM_MEMORISED))
    name, attribute = ENTITIES[entity], str(rng.choice(list(QUESTION_ATTRIBUTES)))
    truth = value(entity, attribute)
    if kind < 0.6:
        form = int(rng.integers(3))
        colour, shape = value(entity, "colour"), value(entity, "shape")
        texts = (
            statement(name, "colour", colour),
            statement(name, "shape", shape),
            f"the {name} is a {colour} {shape} .",
        )
        return {"text": texts[form]}
    if kind < 0.75:
        return {"text": f"{question(name, attribute)} {truth}"}
    choices = QUESTION_ATTRIBUTES[attribute]
    if rng.random() < 0.5:  # a fresh name: only the context knows
        said = choices[int(rng.integers(len(choices)))]
        return {"text": f"{open_book(_fresh_name(rng), attribute, said)} {said}"}
    said = truth
    if rng.random() < CONFLICT_RATE:  # a stale context: the world's answer stands
        said = choices[(choices.index(truth) + 1 + int(rng.integers(len(choices) - 1))) % len(choices)]
    return {"text": f"{open_book(name, attribute, said)} {truth}"}


def prose_prompts(seed: int, count: int, words: int = 6) -> list[str]:
    """The first `words` words of `count` held-out prose passages (split "test"): generation prompts."""
    prompts = []
    for i in range(count):
        rng = sentences.item_rng(seed, "lm/prompt", i)
        topic = (int(rng.integers(len(shapes.COLOURS))), int(rng.integers(len(shapes.SHAPES))))
        prompts.append(" ".join(sentences.describe(sentences.sample_scene(rng, topic), rng).split()[:words]))
    return prompts


def conflict_questions(kind: str) -> list[tuple[str, str, str]]:
    """(open-book prompt, the context's answer, the memorised answer) for every memorised entity and
    attribute; `kind` "agreement": the context states the world's value, "conflict": the next value in order."""
    items = []
    for entity in range(NUM_MEMORISED):
        for attribute, choices in QUESTION_ATTRIBUTES.items():
            truth = value(entity, attribute)
            said = truth if kind == "agreement" else choices[(choices.index(truth) + 1) % len(choices)]
            items.append((open_book(ENTITIES[entity], attribute, said), said, truth))
    return items


def closed_book_questions() -> list[tuple[str, str]]:
    """(question without context, the memorised answer) for every memorised entity and attribute."""
    return [
        (question(ENTITIES[e], attribute), value(e, attribute))
        for e in range(NUM_MEMORISED)
        for attribute in QUESTION_ATTRIBUTES
    ]
