"""1.5-Pints' two embedded corpora (Tan & Wang 2024, METHODS.md §27): textbook-like `expository_text` and web-like
`web_text`, which teach the same facts in the same number of words, for a language model to pretrain on.

Both state facts of input_pipeline/lm_text.py's fixed world (the colour or shape of its NUM_MEMORISED memorised
entities, in statement()'s form: "the vokim is red ." / "the vokim is a star ."). Document i of a split is planned
once (`facts`: 2-3 distinct facts, the same rng draws for both corpora) and then written two ways:
- expository: each fact's statement followed by a restatement in another true form ("red is the colour of the
  vokim ."), then one clean shapes sentence (input_pipeline/sentences.py), in that order; nothing false;
- web: each fact's statement, each contradicted with probability CONTRADICTION_RATE by the same statement with a
  false value (uniform over the others), one line of BOILERPLATE, and word salad (shuffled words of shapes prose)
  to exactly the expository document's length in words; the units in random order.
Why the comparison is fair: document i of both corpora states the same true facts once each in the probe's form,
and has the same number of words (so nearly the same tokens, under one tokenizer trained on both:
`QualitySource.tokenizer_corpus`); a step reads as many facts and as much text in either corpus. What differs is
what fills the rest: correct restatements and clean prose, or contradictions, boilerplate and noise.
Contradictions are fewer than the true statements (0.4 per statement), so the truth stays every fact's majority in
the web corpus too: it can still be learnt there, from noisier text.
Records are {"text"}, each a pure function of (seed, split, index), like lm_text's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from input_pipeline import sentences, shapes
from input_pipeline.lm_text import ENTITIES, NUM_MEMORISED, QUESTION_ATTRIBUTES, statement, value

QUALITY_DATASETS = ("expository_text", "web_text")  # config.data.name of each corpus (configs/pints.py's corpus=)
FACTS_PER_DOCUMENT = (2, 3)  # fewest and most true facts a document states (uniform)
CONTRADICTION_RATE = 0.4  # chance that a web document also states a false value of each of its facts
# Web filler, at most 7 words a line (" ." counts as a word): with the contradictions (6 words at most) it stays
# shorter than the expository filler it stands for (an 8-word restatement per fact and a shapes sentence of 9 or
# more), so the word salad that makes up the difference is never empty.
BOILERPLATE = (
    "click here to subscribe .",
    "share this page with your friends .",
    "sign up for our newsletter .",
    "cookies help us deliver our services .",
    "scroll down to read more .",
    "all rights reserved .",
    "advertisement .",
    "related posts you may like .",
)
_ATTRIBUTES = tuple(QUESTION_ATTRIBUTES)


def facts(seed: int, split: str, index: int) -> tuple[tuple[int, str], ...]:
    """The distinct (entity, attribute) facts document `index` of `split` states, in order (both corpora's)."""
    rng = sentences.item_rng(seed, f"quality/{split}", index)
    count = int(rng.integers(FACTS_PER_DOCUMENT[0], FACTS_PER_DOCUMENT[1] + 1))
    picks = rng.choice(NUM_MEMORISED * len(_ATTRIBUTES), size=count, replace=False)
    return tuple((int(p) // len(_ATTRIBUTES), _ATTRIBUTES[int(p) % len(_ATTRIBUTES)]) for p in picks)


def restatement(name: str, attribute: str, answer: str) -> str:
    """The fact in a second true form, without the probe's "the <name> is" (8 words)."""
    return f"{answer} is the {attribute} of the {name} ."


def expository(seed: int, split: str, index: int) -> str:
    """Document `index` of the expository corpus: each fact stated and restated, then a shapes sentence."""
    rng = sentences.item_rng(seed, f"quality/expository/{split}", index)
    parts = []
    for entity, attribute in facts(seed, split, index):
        truth = value(entity, attribute)
        parts += [statement(ENTITIES[entity], attribute, truth), restatement(ENTITIES[entity], attribute, truth)]
    topic = (int(rng.integers(len(shapes.COLOURS))), int(rng.integers(len(shapes.SHAPES))))
    parts.append(sentences.describe(sentences.sample_scene(rng, topic), rng) + " .")
    return " ".join(parts)


def word_salad(rng: np.random.Generator, count: int) -> str:
    """`count` words of shapes prose in random order: no sentence, no fact."""
    words: list[str] = []
    while len(words) < count:
        words += sentences.describe(sentences.sample_scene(rng), rng).split()
    return " ".join(words[k] for k in rng.permutation(len(words))[:count])


def web(seed: int, split: str, index: int) -> str:
    """Document `index` of the web corpus: the expository document's facts, contradictions, boilerplate and word
    salad, as many words as the expository document, in random order."""
    rng = sentences.item_rng(seed, f"quality/web/{split}", index)
    units = []
    for entity, attribute in facts(seed, split, index):
        truth, choices = value(entity, attribute), QUESTION_ATTRIBUTES[attribute]
        units.append(statement(ENTITIES[entity], attribute, truth))
        if rng.random() < CONTRADICTION_RATE:
            false = choices[(choices.index(truth) + 1 + int(rng.integers(len(choices) - 1))) % len(choices)]
            units.append(statement(ENTITIES[entity], attribute, false))
    units.append(BOILERPLATE[int(rng.integers(len(BOILERPLATE)))])
    left = len(expository(seed, split, index).split()) - sum(len(u.split()) for u in units)
    units.append(word_salad(rng, left))
    return " ".join(units[k] for k in rng.permutation(len(units)))


DOCUMENTS = dict(zip(QUALITY_DATASETS, (expository, web), strict=True))


class QualitySource:
    """`size` documents {"text"} of corpus `name` (QUALITY_DATASETS)."""

    def __init__(self, name: str, size: int, seed: int = 0, split: str = "train"):
        self.name, self.size, self.seed, self.split = name, size, seed, split

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, str]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        return {"text": DOCUMENTS[self.name](self.seed, self.split, index)}

    def tokenizer_corpus(self, limit: int = 20_000) -> Iterator[str]:
        """Both corpora's first documents, interleaved, `limit` in all: whichever a run trains on, its tokenizer is
        trained on this same text, so the two arms' losses compare token for token."""
        count = min(limit // 2, self.size)
        return (make(self.seed, self.split, i) for i in range(count) for make in DOCUMENTS.values())
