"""The embedded corpus of PHF (`preference_text`; Korbak et al. 2023, METHODS.md §25): shapes prose in which a
rule-defined undesirable word occurs in a small fraction of sentences, scored sentence by sentence.

Each record is one document of 1-2 sentences (input_pipeline/sentences.py's descriptions, one topic per
document, as lm_text's prose); each sentence is independently *misaligned* with probability `rate`: one of
its colour words becomes MISALIGNED_WORD, a colour that occurs nowhere else. The scorer is the rule itself
(`score`: 1 when the word occurs, PHF's s > t), so every sentence's label is exact.

Records are {"sentences": tuple of str, "misaligned": tuple of 0/1}, the embedded ones scored by the rule and
your files' by their scores against config.phf.threshold (input_pipeline/preference_files.py). The transform
turns a record into the language model's tokens and a per-token mask of the misaligned sentences (what
unlikelihood penalises). With `tags` (PHF's conditional training) each sentence is preceded
by its control token, <|aligned|> or <|misaligned|>, trained into the tokenizer as one piece (TAGS).
A `filtered` source (PHF's filtering) keeps only documents with no misaligned sentence.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import grain
import numpy as np

from input_pipeline import sentences, shapes
from input_pipeline.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

PHF_DATASETS = ("preference_text", "scored_documents")  # this embedded corpus, and your scored JSON Lines
MISALIGNED_WORD = "magenta"
ALIGNED_TAG, MISALIGNED_TAG = "<|aligned|>", "<|misaligned|>"
TAGS = (ALIGNED_TAG, MISALIGNED_TAG)
_SCORER = re.compile(rf"\b{MISALIGNED_WORD}\b")
# Every colour word the descriptions use, longest first so that "leafy green" is replaced whole.
_COLOUR_WORDS = sorted({w for c in shapes.COLOURS for w in (c, *shapes._SYNONYMS[c])}, key=len, reverse=True)
_COLOUR = re.compile(r"\b(" + "|".join(map(re.escape, _COLOUR_WORDS)) + r")\b")


def score(text: str) -> int:
    """1 when `text` holds the undesirable word, else 0 (PHF's per-sentence score against its threshold)."""
    return int(bool(_SCORER.search(text)))


def misalign(sentence: str) -> str:
    """`sentence` with its first colour word replaced by MISALIGNED_WORD."""
    return _COLOUR.sub(MISALIGNED_WORD, sentence, count=1)


def document(seed: int, split: str, index: int, rate: float) -> tuple[str, ...]:
    """Document `index` of `split`: 1-2 sentences ending in ' .', each misaligned with probability `rate`."""
    rng = sentences.item_rng(seed, f"preference/{split}", index)
    topic = (int(rng.integers(len(shapes.COLOURS))), int(rng.integers(len(shapes.SHAPES))))
    out = []
    for _ in range(int(rng.integers(1, 3))):
        sentence = sentences.describe(sentences.sample_scene(rng, topic), rng) + " ."
        out.append(misalign(sentence) if rng.random() < rate else sentence)
    return tuple(out)


def tagged(sentences_: tuple[str, ...], misaligned: tuple[int, ...]) -> str:
    """The document as conditional training reads it: each sentence after its control token."""
    return " ".join(f"{TAGS[flag]} {s}" for s, flag in zip(sentences_, misaligned, strict=True))


class PreferenceSource:
    """`size` embedded documents {"sentences", "misaligned"}; `filtered`: document i is the first aligned one
    among candidates i, i + size, i + 2 size, ... (so no document repeats)."""

    def __init__(self, size: int, rate: float, seed: int = 0, split: str = "train", filtered: bool = False):
        self.size, self.rate, self.seed, self.split, self.filtered = size, rate, seed, split, filtered

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        candidate = index
        while True:
            doc = document(self.seed, self.split, candidate, self.rate)
            flags = tuple(map(score, doc))
            if not self.filtered or not any(flags):
                return {"sentences": doc, "misaligned": flags}
            candidate += self.size

    def tokenizer_corpus(self, limit: int = 20_000) -> Iterator[str]:
        """The first `limit` documents, unfiltered, each sentence after its control token: every PHF arm trains
        its tokenizer on this same text, so their per-token losses compare."""
        unfiltered = PreferenceSource(self.size, self.rate, self.seed, self.split)
        records = (unfiltered[i] for i in range(min(limit, self.size)))
        return (tagged(r["sentences"], r["misaligned"]) for r in records)


class ScoredDocumentSource:
    """Your scored documents (input_pipeline/preference_files.py) as records; `filtered`: the aligned ones alone."""

    def __init__(self, documents: list[tuple[tuple[str, ...], tuple[int, ...]]], filtered: bool = False):
        self.all_documents = documents  # the tokenizer's corpus, filtered or not
        self.documents = [d for d in documents if not (filtered and any(d[1]))]
        if not self.documents:
            raise ValueError(
                "every document holds a misaligned sentence, so filtering leaves none; raise the threshold."
            )

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: int) -> dict:
        sentences_, flags = self.documents[index]
        return {"sentences": sentences_, "misaligned": flags}

    def tokenizer_corpus(self, limit: int = 20_000) -> Iterator[str]:
        """Your first `limit` documents, filtered or not, tagged (PreferenceSource.tokenizer_corpus)."""
        return (tagged(*document) for document in self.all_documents[:limit])


def tag_ids(tokenizer: Tokenizer) -> tuple[int, int]:
    """The ids of <|aligned|> and <|misaligned|>; ValueError when the tokenizer lacks them."""
    ids = tuple(tokenizer.piece_id(t) for t in TAGS)
    if UNK_ID in ids:
        raise ValueError(
            f"The tokenizer has no pieces {list(TAGS)}; let the run train its own (leave config.text.tokenizer_path "
            "empty) so that PHF's control tokens are single pieces."
        )
    return ids  # type: ignore[return-value]


def pieces(tokenizer: Tokenizer, text: str) -> list[int]:
    """The ids of `text` without BOS and EOS (a control token is its one id: input_pipeline/tokenizer.py)."""
    return [int(t) for t in tokenizer.encode([text], 4 * len(text) + 2)[0] if t not in (PAD_ID, BOS_ID, EOS_ID)]


def encode_document(tokenizer: Tokenizer, doc: tuple[str, ...], flags: tuple[int, ...], max_len: int, tags: bool,
                    all_aligned: bool = False):  # fmt: skip
    """(tokens int32 [max_len]: BOS, [control token,] pieces of each sentence, EOS, padding; misaligned int32
    [max_len]: 1 on the pieces, control token and EOS of the sentences flagged misaligned; control bool [max_len]:
    the control tokens). Each sentence is encoded as the tokenizer encodes `tagged` text, so that a prompt
    "<|aligned|> there is" at --mode=generate reads as training did. `all_aligned`: every control token
    <|aligned|> (misaligned text as the model would write it when asked for aligned text). EOS is kept when
    truncating."""
    tag_of = tag_ids(tokenizer) if tags else ()  # each one id, as the tokenizer encodes it (no re-encoding here)
    ids, bad, control = [BOS_ID], [0], [False]
    for sentence, s in zip(doc, flags, strict=True):
        tag = [tag_of[0 if all_aligned else s]] if tags else []
        words = pieces(tokenizer, sentence)
        ids += tag + words
        bad += [s] * (len(tag) + len(words))
        control += [True] * len(tag) + [False] * len(words)
    keep = min(len(ids), max_len - 1)
    ids, bad, control = ids[:keep] + [EOS_ID], bad[:keep] + [bad[keep - 1]], control[:keep] + [False]
    tokens, misaligned, is_control = (
        np.full(max_len, PAD_ID, np.int32),
        np.zeros(max_len, np.int32),
        np.zeros(max_len, bool),
    )
    tokens[: len(ids)], misaligned[: len(bad)], is_control[: len(control)] = ids, bad, control
    return tokens, misaligned, is_control


@dataclasses.dataclass
class PreferenceTransform(grain.transforms.RandomMap):
    """{"sentences", "misaligned"} -> {"text": int32 [max_len], "misaligned": int32 [max_len]} (encode_document)."""

    tokenizer: Tokenizer
    max_len: int
    tags: bool

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        del rng  # deterministic: the pipeline's random maps all take one
        tokens, misaligned, _ = encode_document(
            self.tokenizer, record["sentences"], record["misaligned"], self.max_len, self.tags
        )
        return {"text": tokens, "misaligned": misaligned}
