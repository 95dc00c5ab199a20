"""The embedded in-context-learning tasks (`icl_tasks`): MEND's toy (METHODS.md §23).

A task is a random map from one word domain to another (colours or shapes of input_pipeline/shapes.py, so four
families: colour -> colour, colour -> shape, shape -> colour, shape -> shape), drawn afresh for every record: no
two records share a map, so nothing but the demonstrations tells the answer, and a model reaches better than
chance only by reading them. A record shows NUM_DEMOS inputs drawn with replacement, each with its output (the
demonstrations D), then asks for the output of one of them (the query x and its answer y):

    "red star and blue ring and ... and pink bar and blue ring"
     `----------------- demos ----------------'  `-query-' answer

Records are pure functions of (seed, split, index), like input_pipeline/sentences.py's; the "train" and "test"
splits draw from disjoint streams, so held-out tasks are maps the model never saw. `record` gives the whole text
(a language model meta-trained on it learns to read the demonstrations: configs/mend.py:stage=icl) and its parts
(what MEND's distiller and its frozen language model each read: training/text_task.py).
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from input_pipeline import sentences, shapes
from input_pipeline.token_ids import BOS_ID, EOS_ID, PAD_ID

ICL_DATASET = "icl_tasks"
DOMAINS = {"colour": shapes.COLOURS, "shape": shapes.SHAPES}
# Demonstrations per task, their inputs drawn with replacement: an input shown twice is a next-token target
# that only reading the earlier pair predicts, which gives a language model many in-context lessons per text.
NUM_DEMOS = 10
FAMILIES = tuple((a, b) for a in DOMAINS for b in DOMAINS)  # (input domain, output domain)
SEPARATOR = "and"  # a word: one piece (a punctuation mark costs two)
# One piece of a tokenizer trained on the tasks ("\u2581" marks a word's start): SentencePiece's unigram trainer
# keeps this small corpus's domain words whole but splits "and" in two.
SYMBOLS = ("\u2581" + SEPARATOR,)


def pair(source: str, target: str) -> str:
    # Each output right after its input: a language model answers by copying the word after the query's earlier
    # occurrence (an induction head; Olsson et al. 2022), which a tiny model learns in a few thousand steps; with a
    # word between them ("red to star") it stalled at 38% after 3,000 steps.
    return f"{source} {target}"


def record(seed: int, split: str, index: int) -> dict:
    """{"text": D and x y, "demos": D, "query": x, "answer": y, "choices": the output domain's words (the
    candidates an evaluator ranks)} of task `index` of `split`."""
    rng = sentences.item_rng(seed, f"icl/{split}", index)
    inputs, outputs = (DOMAINS[d] for d in FAMILIES[int(rng.integers(len(FAMILIES)))])
    mapping = {word: outputs[int(rng.integers(len(outputs)))] for word in inputs}
    shown = [inputs[int(i)] for i in rng.integers(len(inputs), size=NUM_DEMOS)]
    demos = f" {SEPARATOR} ".join(pair(word, mapping[word]) for word in shown)
    asked = shown[int(rng.integers(NUM_DEMOS))]
    query, answer = f"{SEPARATOR} {asked}", mapping[asked]
    return {"text": f"{demos} {query} {answer}", "demos": demos, "query": query, "answer": answer,
            "choices": outputs}  # fmt: skip


def frequent_output_accuracy(record: dict) -> float:
    """The chance (0..1) that the demonstrations' most frequent output, ties drawn uniformly, is the answer: the
    best a reader of the outputs alone does, without binding each to its input."""
    outputs = [pair.split()[1] for pair in record["demos"].split(f" {SEPARATOR} ")]
    counts = {word: outputs.count(word) for word in outputs}
    top = [word for word, count in counts.items() if count == max(counts.values())]
    return (record["answer"] in top) / len(top)


def text_record(seed: int, split: str, index: int) -> dict:
    """{"text"} alone: the language model's training record."""
    return {"text": record(seed, split, index)["text"]}


def pieces(tokenizer, text: str) -> list[int]:
    """The token ids of `text` without BOS, EOS or padding."""
    encoded = tokenizer.encode([text], 4 * len(text) + 8)[0]
    return [int(t) for t in encoded if t not in (PAD_ID, BOS_ID, EOS_ID)]


def _padded(ids: list[int], length: int) -> np.ndarray:
    row = np.zeros(length, np.int32)
    row[: len(ids)] = ids
    return row


@dataclasses.dataclass
class MendTransform(grain.transforms.RandomMap):
    """Record -> MEND's token fields, every one built from the same pieces so that they line up:
    - "text" int32 [lm_len + 1]: BOS, D, x, y, EOS (in-context learning's input: the teacher's);
    - "query" int32 [lm_len + 1 - k]: BOS, x, y, EOS (what the language model reads after S_D);
    - "demos" int32 [distiller_len]: D's pieces, then room for the k summary ids;
    - "demo_length" int32: D's pieces; "answer_start" int32: the index of y's first piece in "query".
    A record whose pieces do not fit is an error naming the lengths (the embedded tasks fit the defaults)."""

    tokenizer: object
    lm_len: int
    distiller_len: int
    virtual_tokens: int

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        del rng  # deterministic: the pipeline's transforms are random maps
        return self.map(record)

    def map(self, record: dict) -> dict:
        demos, query, answer = (pieces(self.tokenizer, record[k]) for k in ("demos", "query", "answer"))
        query_len = self.lm_len + 1 - self.virtual_tokens
        if len(demos) + len(query) + len(answer) + 2 > self.lm_len + 1 or len(query) + len(answer) + 2 > query_len:
            raise ValueError(
                f"A task of {len(demos) + len(query) + len(answer)} pieces does not fit the language model's context "
                f"of {self.lm_len} with {self.virtual_tokens} summary vectors; raise config.model.decoder.max_len."
            )
        if len(demos) + self.virtual_tokens > self.distiller_len:
            raise ValueError(
                f"Demonstrations of {len(demos)} pieces and {self.virtual_tokens} summary ids do not fit the "
                f"distiller's context of {self.distiller_len}; raise config.mend.distiller.max_len."
            )
        return {
            "text": _padded([BOS_ID, *demos, *query, *answer, EOS_ID], self.lm_len + 1),
            "query": _padded([BOS_ID, *query, *answer, EOS_ID], query_len),
            "demos": _padded(demos, self.distiller_len),
            "demo_length": np.int32(len(demos)),
            "answer_start": np.int32(1 + len(query)),
        }
