"""A second synthetic language for the shapes captions, and a frozen bag-of-concepts "multilingual" encoder.

uCLIP's miniature (METHODS.md 7). The second language is a consistent word mapping: every word of
the shapes vocabulary (sizes, colours, shapes, position words) has one made-up translation, built
from syllables that never occur in English captions, so the CLIP tokenizer and text tower have never
seen them. Sentences in it are never paired with images in training.

The multilingual encoder stands in for a frozen pretrained multilingual sentence encoder (uCLIP uses
paraphrase-multilingual-mpnet): a fixed random map from words to vectors (`concept_table`) in which a
word and its translation share a "concept" vector but each language adds its own word-specific
deviation (`mismatch` times a random unit vector), so the two languages are aligned, imperfectly,
as real multilingual encoders are. A sentence is the L2-normalised mean of its word vectors
(`encode`; losses/uclip.py has the same in JAX).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from input_pipeline import shapes

LANGUAGES = ("english", "second")
MAX_WORDS = 24  # words of a shapes caption the encoder reads: at most 3 objects x 5 words
_SYLLABLES = ("ka", "lu", "mi", "zo", "re", "ta", "vo", "ni", "su", "pe", "qo", "xi", "bu", "fe", "go", "hy")


def vocabulary() -> tuple[str, ...]:
    """Every word the shapes captions and prompts are made of (alt-text captions and test captions)."""
    words = [w for phrase in shapes.SIZES + shapes.COLOURS + shapes.SHAPES + shapes.POSITIONS for w in phrase.split()]
    return tuple(dict.fromkeys(words))


@functools.lru_cache(maxsize=1)
def dictionary() -> dict[str, str]:
    """English word -> its second-language word: distinct 3-syllable words drawn by a fixed seed."""
    rng = np.random.default_rng(20251118)
    out: dict[str, str] = {}
    taken = set()
    for word in vocabulary():
        while True:
            candidate = "".join(rng.choice(_SYLLABLES, size=3))
            if candidate not in taken:
                break
        taken.add(candidate)
        out[word] = candidate
    return out


def translate(text: str) -> str:
    """The caption with each vocabulary word replaced by its translation; commas and other words kept."""
    table = dictionary()
    return " ".join(
        table.get(word.rstrip(","), word.rstrip(",")) + ("," if word.endswith(",") else "") for word in text.split()
    )


def encoder_words() -> tuple[str, ...]:
    """The multilingual encoder's vocabulary: the English words, then their translations."""
    return tuple(dictionary()) + tuple(dictionary().values())


def _unit_vector(name: str, dim: int) -> np.ndarray:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    v = np.random.default_rng(np.frombuffer(digest, dtype=np.uint64)).normal(size=dim)
    return v / np.linalg.norm(v)


def concept_table(dim: int, mismatch: float) -> np.ndarray:
    """float32 [len(encoder_words()), dim]: concept(word) + mismatch x a vector of (language, word), where a
    word and its translation share the concept; every vector is a fixed function of the word and `dim`."""
    table = dictionary()
    rows = [_unit_vector(f"concept/{w}", dim) + mismatch * _unit_vector(f"english/{w}", dim) for w in table]
    rows += [_unit_vector(f"concept/{w}", dim) + mismatch * _unit_vector(f"second/{t}", dim) for w, t in table.items()]
    return np.stack(rows).astype(np.float32)


def word_ids(texts: list[str], max_words: int) -> np.ndarray:
    """int32 [N, max_words]: each text's words as rows of the concept table; -1 pads and stands for words
    outside both vocabularies, which the encoder ignores (shapes captions have none)."""
    index = {w: i for i, w in enumerate(encoder_words())}
    out = np.full((len(texts), max_words), -1, np.int32)
    for n, text in enumerate(texts):
        ids = [index.get(w, -1) for w in text.replace(",", " ").split()][:max_words]
        out[n, : len(ids)] = ids
    return out


def caption_word_fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"caption_words": int32 [MAX_WORDS]}: the record's caption for the frozen multilingual encoder
    (uCLIP's batch field; an Objective's batch_fields signature)."""
    del rng, encode
    return {"caption_words": word_ids([record["caption"]], MAX_WORDS)[0]}


def encode(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """[N, W] word ids, [V, d] table -> float32 [N, d]: the L2-normalised mean of each text's word vectors."""
    valid = (ids >= 0)[..., None]
    total = np.where(valid, table[np.maximum(ids, 0)], 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    return (total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)).astype(np.float32)
