"""PCP's embedded task (Shi & Lipani, NeurIPS 2023; METHODS.md §22): `acceptability`, CoLA-style grammaticality
judgements of sentences of CLIMB's child-directed grammar (input_pipeline/child_text.py), so that a masked LM
pretrained on that corpus (configs/pcp.py:stage=pretrain) knows what they test.

Each record is one sentence of a BLiMP-style minimal pair (`child_text.minimal_pair`: agreement, agreement across
an attractor, determiner number, adjective order), the grammatical one (label 1) or the other (label 0), drawn
with equal odds, so that no word list tells them apart: only the grammar does.

Renderings, as LM-BFF's single-sentence templates (`<sentence> It was [MASK] .`) in the corpus' words:
- `template`: "<sentence> ? <yes|no> .", the label word at the [MASK] slot (VERBALIZER); prompt-based
  fine-tuning masks that slot and reads the head's scores of the two words there, and PCP trains plain MLM on it
  with the pseudo-label's word filled in (`prompt_example` gives the slot's position);
- `raw`: "<sentence> .", the unlabelled text of task-adaptive pretraining (TAPT) — half of it ungrammatical.
Splits: `train` (each seed's labelled examples: `labelled`), `unlabelled` (the pool PCP pseudo-labels) and
`test` (the `prompt_accuracy` evaluator's), three streams that never share a record.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from input_pipeline import sentences
from input_pipeline.child_text import PHENOMENA, minimal_pair
from input_pipeline.token_ids import EOS_ID
from input_pipeline.tokenizer import Tokenizer

ACCEPTABILITY_DATASET = "acceptability"  # config.data.name
VERBALIZER = ("no", "yes")  # the label words: 0 ungrammatical, 1 grammatical


def judgement(seed: int, split: str, index: int) -> dict:
    """{"sentence" (no final full stop), "label", "phenomenon"}: record `index` of `split` (module docstring)."""
    rng = sentences.item_rng(seed, f"acceptability/{split}", index)
    phenomenon = PHENOMENA[int(rng.integers(len(PHENOMENA)))]
    good, bad = minimal_pair(rng, phenomenon)
    label = int(rng.random() < 0.5)
    return {"sentence": (good if label else bad).removesuffix(" ."), "label": label, "phenomenon": phenomenon}


def labelled(seed: int, shots: int) -> list[dict]:
    """The first `shots` records of each label in seed's `train` stream (LM-BFF's k examples per class)."""
    chosen: dict[int, list[dict]] = {0: [], 1: []}
    index = 0
    while min(len(v) for v in chosen.values()) < shots:
        record = judgement(seed, "train", index)
        if len(chosen[record["label"]]) < shots:
            chosen[record["label"]].append(record)
        index += 1
    return [r for pair in zip(chosen[0], chosen[1], strict=True) for r in pair]


def pool(size: int, split: str = "unlabelled") -> list[dict]:
    """`size` records of a fixed stream (seed 0) every run shares: the unlabelled pool, or the test set."""
    return [judgement(0, split, i) for i in range(size)]


def prompt_record(record: dict, label: int) -> dict:
    """{"text": the template with `label`'s word, "prefix": the text before the slot, "label"}."""
    prefix = f"{record['sentence']} ?"
    return {"text": f"{prefix} {VERBALIZER[label]} .", "prefix": prefix, "label": int(label)}


def raw_text(record: dict) -> str:
    return f"{record['sentence']} ."


def _word_pieces(tokenizer: Tokenizer, text: str) -> list[int]:
    row = tokenizer.encode([text], 4 * len(text) + 3)[0]
    return row[1 : int(np.argmax(row == EOS_ID))].tolist()


def verbalizer_ids(tokenizer: Tokenizer) -> np.ndarray:
    """int32 [2]: the piece of each label word (after the bare word-start piece a user-defined symbol follows:
    configs/pcp.py's pretraining makes the words symbols); a ValueError naming the fix if a word is not one piece."""
    ids, lengths = [], set()
    for word in VERBALIZER:
        pieces = _word_pieces(tokenizer, f"? {word}")[1:]  # after a word, as in the template
        lengths.add(len(pieces))
        if len(pieces) == 2 and tokenizer.id_to_piece(pieces[0]) == "\u2581":  # a symbol's bare word start
            pieces = pieces[1:]
        if len(pieces) != 1:
            raise ValueError(
                f"The tokenizer splits the label word {word!r} into {len(pieces)} pieces; prompt-based fine-tuning "
                "reads one piece per label: start from a configs/pcp.py:stage=pretrain run, whose tokenizer holds "
                "the label words."
            )
        ids.append(int(pieces[0]))
    if len(lengths) != 1:
        raise ValueError("The label words take different numbers of pieces; train the tokenizer with them as symbols.")
    return np.asarray(ids, np.int32)


def slot_position(tokenizer: Tokenizer, prefix: str) -> int:
    """Where the label word's piece sits in the template's tokens: the last piece of `prefix` + a label word, after
    BOS (SentencePiece splits at spaces, so the prefix's pieces are the text's first ones)."""
    return len(_word_pieces(tokenizer, f"{prefix} {VERBALIZER[0]}"))


def prompt_example(tokenizer: Tokenizer, record: dict, max_len: int) -> dict:
    """Record {"text", "prefix", "label"} (`prompt_record`) -> {"text": int32 [max_len], "label": int32, "slot":
    int32, the label word's position}; a ValueError if max_len cuts the text before its slot."""
    slot = slot_position(tokenizer, record["prefix"])
    if slot >= max_len - 1:
        raise ValueError(f"config.model.text.max_len={max_len} cuts {record['text']!r} before its label slot.")
    ids = tokenizer.encode([record["text"]], max_len)[0]
    return {"text": ids, "label": np.int32(record["label"]), "slot": np.int32(slot)}


@dataclasses.dataclass
class PromptTransform(grain.transforms.RandomMap):
    """`prompt_example` in the input pipeline (it draws nothing)."""

    tokenizer: Tokenizer
    max_len: int

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        del rng
        return prompt_example(self.tokenizer, record, self.max_len)
