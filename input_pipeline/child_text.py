"""CLIMB's embedded corpus (Diehl Martinez et al. 2023, METHODS.md §26): `child_text`, child-directed speech and
little stories over a fixed vocabulary, every word's part of speech known by construction.

A small grammar of toys, shapes and animals (colours and shapes as in input_pipeline/shapes.py) writes lower-case
words separated by single spaces, punctuation a word of its own. A document is 1-4 utterances of one *register*,
like BabyLM's spoken and written sources:
- `spoken` (SPOKEN_FRACTION of documents): short child-directed utterances: imperatives ("look at the red ball !"),
  questions ("where is the big square ?", "can you see the dog ?"), short statements ("it is a ball .",
  "the dogs jump .") and feedback ("good job !");
- `written`: longer story sentences: adjective stacks (size before colour, "the very big red ball"), prepositional
  phrases ("the square near the circles is red ."), relative clauses ("the dog that is jumping"), transitive verbs,
  adverbs, and clauses joined by "and" / "but" whose second subject is often "it" / "they".
Within each class of words (nouns, colours, sizes, verbs, ...) a word is drawn by Zipf's law over the class's
list, steeply in speech (ZIPF_EXPONENT: its head words) and flatly in stories (reaching the rare tail), so a unigram
model finds stories harder on average, though the two registers overlap.
Nouns are singular or plural, and number agrees everywhere: determiners ("this/that/a" singular, "these/those"
plural, "the" both), verbs ("is/are", "jumps/jump", "has/have"), relative clauses and pronouns ("it/they").
Tags are coarse Universal POS (POS_TAGS): copular and auxiliary "is/are" (and "can", "do") are AUX, main verbs
VERB; "this/that/these/those" are DET before a noun and PRON alone ("that is a ball .", "the dog that jumps").
`minimal_pairs` draws BLiMP-style (grammatical, ungrammatical) sentence pairs from a stream the corpus never reads,
for the `minimal_pairs` evaluator (evaluation/minimal_pairs.py); `difficulty` scores documents for CLIMB's data
curriculum and `word_piece_tags` carries the word tags to tokenizer pieces for its POS objective.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence

import numpy as np

from input_pipeline import sentences
from input_pipeline.token_ids import BOS_ID, EOS_ID

CHILD_DATASET = "child_text"  # config.data.name
POS_TAGS = ("DET", "ADJ", "NOUN", "PRON", "VERB", "AUX", "ADP", "ADV", "CCONJ", "INTJ", "PUNCT")
REGISTERS = ("spoken", "written")
SPOKEN_FRACTION = 0.6
UTTERANCES_PER_DOCUMENT = (1, 4)  # fewest and most utterances (spoken) or sentences (written) a document has
ZIPF_EXPONENT = {"spoken": 1.6, "written": 0.6}  # p(k-th word of a class) ∝ k^-exponent
DIFFICULTY_KINDS = ("unigram", "spoken_first")
PHENOMENA = ("agreement", "attractor", "determiner", "adjective_order")

# Every list is in order of frequency (its Zipf ranks). Nouns are (singular, plural).
ANIMALS = (
    ("dog", "dogs"), ("cat", "cats"), ("duck", "ducks"), ("bird", "birds"), ("bear", "bears"), ("frog", "frogs"),
    ("rabbit", "rabbits"), ("mouse", "mice"), ("horse", "horses"), ("puppy", "puppies"),
)  # fmt: skip
THINGS = (
    ("ball", "balls"), ("box", "boxes"), ("block", "blocks"), ("cup", "cups"), ("car", "cars"), ("square", "squares"),
    ("circle", "circles"), ("star", "stars"), ("triangle", "triangles"), ("ring", "rings"), ("cross", "crosses"),
    ("diamond", "diamonds"), ("train", "trains"), ("drum", "drums"), ("bar", "bars"),
)  # fmt: skip
SIZES = ("big", "little", "small", "tiny", "large", "huge", "enormous")
COLOURS = (
    "red", "blue", "green", "yellow", "pink", "orange", "purple", "white", "black", "brown", "cyan", "golden",
    "silver", "crimson",
)  # fmt: skip
PROPERTIES = ("happy", "soft", "funny", "wet", "shiny", "sleepy", "heavy", "fast", "noisy", "gentle")  # predicates only
# Verbs are (base, third person singular[, present participle]).
ANIMAL_VERBS = (
    ("jump", "jumps", "jumping"), ("run", "runs", "running"), ("sleep", "sleeps", "sleeping"),
    ("play", "plays", "playing"), ("hide", "hides", "hiding"), ("sit", "sits", "sitting"),
    ("swim", "swims", "swimming"), ("dance", "dances", "dancing"), ("climb", "climbs", "climbing"),
)  # fmt: skip
THING_VERBS = (
    ("roll", "rolls", "rolling"), ("fall", "falls", "falling"), ("spin", "spins", "spinning"),
    ("bounce", "bounces", "bouncing"), ("shine", "shines", "shining"), ("wobble", "wobbles", "wobbling"),
    ("tumble", "tumbles", "tumbling"),
)  # fmt: skip
TRANSITIVE_VERBS = (
    ("have", "has"), ("see", "sees"), ("want", "wants"), ("like", "likes"), ("find", "finds"), ("push", "pushes"),
    ("chase", "chases"), ("carry", "carries"),
)  # fmt: skip
PREPOSITIONS = ("on", "near", "in", "under", "behind", "beside", "with")
ADVERBS = ("again", "now", "too", "away", "slowly", "quickly", "together")
CONJUNCTIONS = ("and", "but")
# (words, their tags) of the fixed utterances and openings.
FEEDBACK = (
    ("yes !", "INTJ PUNCT"), ("good job !", "ADJ NOUN PUNCT"), ("no .", "INTJ PUNCT"), ("wow !", "INTJ PUNCT"),
    ("oh no !", "INTJ INTJ PUNCT"), ("well done !", "ADV VERB PUNCT"), ("thank you !", "VERB PRON PUNCT"),
    ("uh oh !", "INTJ INTJ PUNCT"), ("hi !", "INTJ PUNCT"), ("bye bye !", "INTJ INTJ PUNCT"),
)  # fmt: skip
IMPERATIVES = (
    ("look at", "VERB ADP"), ("find", "VERB"), ("give me", "VERB PRON"), ("get", "VERB"), ("throw", "VERB"),
    ("show me", "VERB PRON"), ("hold", "VERB"), ("catch", "VERB"),
)  # fmt: skip
QUESTIONS = (("can you see", "AUX PRON VERB"), ("do you want", "AUX PRON VERB"), ("can you find", "AUX PRON VERB"),
             ("do you like", "AUX PRON VERB"))  # fmt: skip
_SINGULAR_DETERMINERS, _PLURAL_DETERMINERS = ("the", "a", "that", "this"), ("the", "these", "those")
_OTHER_NUMBER = {"this": "these", "that": "those", "these": "this", "those": "that", "is": "are", "are": "is"}
for _verb in ANIMAL_VERBS + THING_VERBS + TRANSITIVE_VERBS:
    _OTHER_NUMBER.update({_verb[0]: _verb[1], _verb[1]: _verb[0]})

Tagged = list[tuple[str, str]]  # (word, tag) of a phrase


@functools.lru_cache
def _cumulative(count: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, count + 1, dtype=np.float64) ** -exponent
    return np.cumsum(weights / weights.sum())


def _zipf(rng: np.random.Generator, options: Sequence, register: str):
    """One of `options`, the k-th with probability ∝ k^-ZIPF_EXPONENT[register]."""
    k = int(np.searchsorted(_cumulative(len(options), ZIPF_EXPONENT[register]), rng.random(), side="right"))
    return options[min(k, len(options) - 1)]


def _fixed(words: str, tags: str) -> Tagged:
    return list(zip(words.split(), tags.split(), strict=True))


def _be(plural: bool) -> tuple[str, str]:
    return ("are" if plural else "is"), "AUX"


def noun_phrase(
    rng: np.random.Generator, register: str, plural: bool, animate: bool, *,
    size: float, colour: float, determiners: Sequence[str] | None = None,
) -> Tagged:  # fmt: skip
    """Determiner, a size (with probability `size`, "very" before it now and then in stories), a colour (with
    probability `colour`) and a noun of the number and kind asked."""
    determiner = _zipf(rng, determiners or (_PLURAL_DETERMINERS if plural else _SINGULAR_DETERMINERS), register)
    words = [(determiner, "DET")]
    if rng.random() < size:
        if register == "written" and rng.random() < 0.15:
            words.append(("very", "ADV"))
        words.append((_zipf(rng, SIZES, register), "ADJ"))
    if rng.random() < colour:
        words.append((_zipf(rng, COLOURS, register), "ADJ"))
    words.append((_zipf(rng, ANIMALS if animate else THINGS, register)[plural], "NOUN"))
    if determiner == "a" and words[1][0][0] in "aeiou":
        words[0] = ("an", "DET")
    return words


def predicate(rng: np.random.Generator, register: str, plural: bool, animate: bool, kinds: int = 5) -> Tagged:
    """What a subject of this number and kind does or is; its first word agrees with the subject. One of the first
    `kinds` of: a verb, a progressive, an adjective, a place, a transitive verb and its object (stories only)."""
    written = register == "written"
    kind = int(rng.integers(min(kinds, 5 if written else 4)))
    verbs = ANIMAL_VERBS if animate else THING_VERBS
    if kind == 0:
        words = [(_zipf(rng, verbs, register)[1 - plural], "VERB")]
    elif kind == 1:
        words = [_be(plural), (_zipf(rng, verbs, register)[2], "VERB")]
    elif kind == 2:
        words = [_be(plural)] + ([("very", "ADV")] if written and rng.random() < 0.15 else [])
        words.append((_zipf(rng, (COLOURS, SIZES, PROPERTIES)[int(rng.integers(3))], register), "ADJ"))
        return words
    elif kind == 3:
        if not written and rng.random() < 0.5:
            return [_be(plural), (("here", "there")[int(rng.integers(2))], "ADV")]
        place = noun_phrase(rng, register, rng.random() < 0.5, rng.random() < 0.3, size=0.2, colour=0.3)
        return [_be(plural), (_zipf(rng, PREPOSITIONS, register), "ADP")] + place
    else:  # a thing only has
        verb = _zipf(rng, TRANSITIVE_VERBS, register) if animate else TRANSITIVE_VERBS[0]
        obj = noun_phrase(rng, register, rng.random() < 0.4, rng.random() < 0.3, size=0.4, colour=0.5)
        return [(verb[1 - plural], "VERB")] + obj
    if written and rng.random() < 0.3:
        words.append((_zipf(rng, ADVERBS, register), "ADV"))
    return words


def _story_subject(rng: np.random.Generator, plural: bool, animate: bool) -> Tagged:
    """A story's subject: adjectives, then a prepositional phrase or a relative clause now and then (never both,
    so that a relative clause's head is always the subject)."""
    words = noun_phrase(rng, "written", plural, animate, size=0.5, colour=0.6)
    u = rng.random()
    if u < 0.25:  # its noun's number independent of the subject's: agreement with an attractor
        words += [(_zipf(rng, PREPOSITIONS, "written"), "ADP")]
        words += noun_phrase(rng, "written", rng.random() < 0.5, rng.random() < 0.3, size=0.2, colour=0.4)
    elif u < 0.45:
        words += [("that", "PRON")] + predicate(rng, "written", plural, animate, kinds=3)
    return words


def story_sentence(rng: np.random.Generator) -> Tagged:
    """One written sentence: a clause, and often a second one after "and" / "but" ("and then")."""
    plural, animate = rng.random() < 0.4, rng.random() < 0.5
    words = _story_subject(rng, plural, animate) + predicate(rng, "written", plural, animate)
    if rng.random() < 0.4:
        words.append((_zipf(rng, CONJUNCTIONS, "written"), "CCONJ"))
        if rng.random() < 0.3:
            words.append(("then", "ADV"))
        if rng.random() < 0.5:  # the same subject again
            words.append(("they" if plural else "it", "PRON"))
        else:
            plural, animate = rng.random() < 0.4, rng.random() < 0.5
            words += noun_phrase(rng, "written", plural, animate, size=0.3, colour=0.4)
        words += predicate(rng, "written", plural, animate)
    return words + [(".", "PUNCT")]


def utterance(rng: np.random.Generator) -> Tagged:
    """One spoken utterance: an imperative, a question, a short statement or feedback."""
    kind, plural, animate = int(rng.integers(6)), rng.random() < 0.3, rng.random() < 0.5
    end = [(("!", ".")[int(rng.integers(2))], "PUNCT")]
    if kind == 0:  # imperative
        verb = _fixed(*_zipf(rng, IMPERATIVES, "spoken"))
        return verb + noun_phrase(rng, "spoken", plural, animate, size=0.2, colour=0.4) + end
    if kind == 1:  # where is / can you see / what is that
        u = rng.random()
        if u < 0.4:
            words = [("where", "ADV"), _be(plural)] + noun_phrase(
                rng, "spoken", plural, animate, size=0.2, colour=0.3, determiners=("the",)
            )
        elif u < 0.8:
            words = _fixed(*_zipf(rng, QUESTIONS, "spoken"))
            words += noun_phrase(rng, "spoken", plural, animate, size=0.2, colour=0.3)
        else:
            pronoun = (("these", "those") if plural else ("this", "that"))[int(rng.integers(2))]
            words = [("what", "PRON"), _be(plural), (pronoun, "PRON")]
        return words + [("?", "PUNCT")]
    if kind == 2:  # is it red ? / are the dogs sleeping ?
        subject = [("they" if plural else "it", "PRON")]
        if rng.random() < 0.6:
            subject = noun_phrase(rng, "spoken", plural, animate, size=0.1, colour=0.2, determiners=("the",))
        rest = predicate(rng, "spoken", plural, animate)
        if rest[0][1] != "AUX":  # a main verb: "does" would be needed, so ask about a colour instead
            rest = [_be(plural), (_zipf(rng, COLOURS, "spoken"), "ADJ")]
        return [rest[0]] + subject + rest[1:] + [("?", "PUNCT")]
    if kind == 3:  # that is a ball . / these are the balls .
        pronoun = (("these", "those") if plural else ("this", "that", "it"))[int(rng.integers(3 - plural))]
        thing = noun_phrase(
            rng, "spoken", plural, animate, size=0.2, colour=0.5, determiners=("the", "a")[: 2 - plural]
        )
        return [(pronoun, "PRON"), _be(plural)] + thing + end
    if kind == 4:  # the dog jumps . / it is red .
        subject = [("they" if plural else "it", "PRON")]
        if rng.random() < 0.6:
            subject = noun_phrase(rng, "spoken", plural, animate, size=0.2, colour=0.3)
        return subject + predicate(rng, "spoken", plural, animate) + end
    return _fixed(*_zipf(rng, FEEDBACK, "spoken"))


def document(seed: int, split: str, index: int) -> dict[str, str]:
    """{"text", "pos" (a tag per word of text), "register"}: document `index` of `split`."""
    rng = sentences.item_rng(seed, f"child/{split}", index)
    register = REGISTERS[int(rng.random() >= SPOKEN_FRACTION)]
    count = int(rng.integers(UTTERANCES_PER_DOCUMENT[0], UTTERANCES_PER_DOCUMENT[1] + 1))
    make = utterance if register == "spoken" else story_sentence
    words = [pair for _ in range(count) for pair in make(rng)]
    return {"text": " ".join(w for w, _ in words), "pos": " ".join(t for _, t in words), "register": register}


class ChildTextSource:
    """`size` documents {"text", "pos", "register"} of the `child_text` corpus (see the module docstring)."""

    def __init__(self, size: int, seed: int, split: str = "train"):
        self.size, self.seed, self.split = size, seed, split

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, str]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        return document(self.seed, self.split, index)


def difficulty(source, kind: str) -> np.ndarray:
    """float64 [len(source)], higher = harder, for CLIMB's data curriculum: `unigram`, each document's perplexity
    under an add-one unigram model of the whole source's words (CLIMB's n-gram scorer with n = 1); `spoken_first`,
    0 for spoken documents and 1 for written ones."""
    if kind not in DIFFICULTY_KINDS:
        raise ValueError(f"Unknown difficulty {kind!r}; use one of {list(DIFFICULTY_KINDS)}.")
    records = [source[i] for i in range(len(source))]
    if kind == "spoken_first":
        return np.array([float(r["register"] == "written") for r in records])
    documents = [r["text"].split() for r in records]
    counts = collections.Counter(w for words in documents for w in words)
    total = sum(counts.values()) + len(counts)
    log_p = {w: np.log((c + 1) / total) for w, c in counts.items()}
    return np.array([np.exp(-np.mean([log_p[w] for w in words])) for words in documents])


@functools.lru_cache(maxsize=1 << 16)
def _word_pieces(tokenizer, word: str) -> tuple[int, ...]:
    """The pieces of one word alone (cached: the corpus has a few hundred words, a text tens of them)."""
    row = tokenizer.encode([word], 4 * len(word) + 3)[0]  # room for byte pieces
    return tuple(row[1 : int(np.argmax(row == EOS_ID))].tolist())


def word_piece_tags(tokenizer, text: str, pos: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [max_len], tags int32 [max_len]): `tokenizer.encode([text], max_len)[0]` and, for each of its
    pieces, the POS_TAGS index of the word it belongs to (every piece of a word takes the word's tag); -1 at BOS,
    EOS and padding. Words are encoded one by one, which must give the text's own pieces (a tokenizer that splits
    at spaces: SentencePiece's does), else a ValueError."""
    words, word_tags = text.split(), pos.split()
    if len(words) != len(word_tags):
        raise ValueError(f"{len(words)} words but {len(word_tags)} tags: {text!r} / {pos!r}")
    ids = tokenizer.encode([text], max_len)[0]
    pieces, piece_tags = [], []
    for word, tag in zip(words, word_tags, strict=True):
        word_pieces = _word_pieces(tokenizer, word)
        pieces += word_pieces
        piece_tags += [POS_TAGS.index(tag)] * len(word_pieces)
    kept = min(len(pieces), max_len - 2)
    if ids[0] != BOS_ID or ids[1 : kept + 1].tolist() != pieces[:kept] or ids[kept + 1] != EOS_ID:
        raise ValueError(f"The tokenizer does not encode {text!r} as its words' pieces one after another.")
    tags = np.full(max_len, -1, np.int32)
    tags[1 : kept + 1] = piece_tags[:kept]
    return ids, tags


def minimal_pair(rng: np.random.Generator, phenomenon: str) -> tuple[str, str]:
    """(grammatical, ungrammatical) sentence of one phenomenon (see minimal_pairs)."""
    plural, animate = rng.random() < 0.5, rng.random() < 0.5
    if phenomenon == "determiner":  # a demonstrative's number against its noun's
        subject = noun_phrase(rng, "written", plural, animate, size=0.3, colour=0.4,
                              determiners=("these", "those") if plural else ("this", "that"))  # fmt: skip
        words = subject + predicate(rng, "written", plural, animate) + [(".", "PUNCT")]
        wrong = 0
    elif phenomenon == "adjective_order":  # size before colour
        subject = noun_phrase(rng, "written", plural, animate, size=1.0, colour=1.0)
        words = subject + predicate(rng, "written", plural, animate) + [(".", "PUNCT")]
        first = [t for _, t in words].index("ADJ")
        good = [w for w, _ in words]
        bad = good[:first] + [good[first + 1], good[first]] + good[first + 2 :]
        return " ".join(good), " ".join(bad)
    else:  # the verb's number against its subject's, across a prepositional phrase of the other number if attractor
        subject = noun_phrase(rng, "written", plural, animate, size=0.3, colour=0.4)
        if phenomenon == "attractor":
            subject += [(_zipf(rng, PREPOSITIONS, "written"), "ADP")]
            subject += noun_phrase(rng, "written", not plural, rng.random() < 0.3, size=0.2, colour=0.3)
        words = subject + predicate(rng, "written", plural, animate) + [(".", "PUNCT")]
        wrong = len(subject)
    good = [w for w, _ in words]
    bad = good[:wrong] + [_OTHER_NUMBER[good[wrong]]] + good[wrong + 1 :]
    return " ".join(good), " ".join(bad)


def minimal_pairs(seed: int, per_phenomenon: int) -> list[tuple[str, str, str]]:
    """(phenomenon, grammatical, ungrammatical) BLiMP-style sentence pairs, `per_phenomenon` distinct ones of each of
    PHENOMENA, from a stream of `seed` that no corpus record reads. The two sentences differ in one word (the verb of
    `agreement` and `attractor`, the demonstrative of `determiner`) or in the order of two (the size and colour
    adjectives of `adjective_order`); the grammatical one is a sentence of the written grammar, the other never is.
    """
    pairs = []
    for phenomenon in PHENOMENA:
        drawn: dict[tuple[str, str], None] = {}
        for i in range(1000 * per_phenomenon):
            if len(drawn) == per_phenomenon:
                break
            drawn[minimal_pair(sentences.item_rng(seed, f"child/pairs/{phenomenon}", i), phenomenon)] = None
        pairs += [(phenomenon, good, bad) for good, bad in drawn]
    return pairs
