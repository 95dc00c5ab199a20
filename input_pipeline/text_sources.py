"""Text-only training sources: embedded or file-backed sentences, NLI triples and documents.

Records hold strings (tokenized by TextTransform) and, for documents, a language id:
- `sentences` (a text file, one sentence per line): {"text"};
- `nli` (CSV/TSV with a header, or JSON Lines): {"text", "positive"[, "negative"]}: SimCSE's
  `nli_for_simcse.csv` columns `sent0, sent1, hard_neg`, or premise/entailment/contradiction;
- `documents` (JSON Lines {"sentences": [...], "language": "en"}, or a text file with one sentence per
  line and a blank line between documents, language "und"): one record per sentence,
  {"text": centre, "context": the sentences within `window` of it, "language": id};
- `shape_sentences` / `shape_documents`: the embedded equivalents (input_pipeline/sentences.py);
- `shape_commands`: embedded commands over the shapes world, a labelled one with its frame's item ids and an
  unlabelled one per record (input_pipeline/dialog_frames.py; SPACE-2); `dialogs`, yours: JSON Lines of utterances,
  the labelled ones with their frame (input_pipeline/dialog_files.py);
- `lm_text`: the embedded language-model corpus, prose and facts to memorise (input_pipeline/lm_text.py);
- `preference_text`: PHF's, prose whose sentences are scored for an undesirable word (preference_text.py), and
  `scored_documents`, yours (preference_files.py); their source, corpus and transform are training/text_task.py's
  own, as they follow config.phf;
- `expository_text` / `web_text`: 1.5-Pints' two corpora, the same facts in clean or in noisy text
  (input_pipeline/quality_text.py);
- `child_text`: CLIMB's, child-directed utterances and story sentences with each word's part of speech
  (input_pipeline/child_text.py);
- `acceptability`: PCP's unlabelled task text, sentences of the child-directed grammar, half of them
  ungrammatical (input_pipeline/acceptability_text.py);
- `icl_tasks`: MEND's, random word maps shown by demonstrations, then a query (input_pipeline/icl_tasks.py);
  a language model trains on your text as `sentences` (a .txt file, or JSON Lines {"text": ...}).
Unusable rows (empty fields, malformed JSON, documents of one sentence) are skipped when the file is
read and counted in a warning; a file with no usable row is an error naming the fix.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence

from absl import logging

from input_pipeline import (
    acceptability_text,
    child_text,
    dialog_files,
    dialog_frames,
    icl_tasks,
    lm_text,
    quality_text,
    sentences,
)
from input_pipeline.jsonl import json_objects

TEXT_DATASETS = (
    "shape_sentences", "shape_documents", "shape_commands", "sentences", "nli", "documents", "dialogs", "lm_text",
    "preference_text", "scored_documents", *quality_text.QUALITY_DATASETS, child_text.CHILD_DATASET,
    acceptability_text.ACCEPTABILITY_DATASET, icl_tasks.ICL_DATASET,
)  # fmt: skip
FILE_DATASETS = ("sentences", "nli", "documents", "dialogs", "scored_documents")
# Column names accepted for each field of an NLI triple, first match wins.
TRIPLE_COLUMNS = {
    "text": ("sent0", "premise", "sentence1", "anchor", "text"),
    "positive": ("sent1", "entailment", "hypothesis", "sentence2", "positive"),
    "negative": ("hard_neg", "contradiction", "negative"),
}


class EmbeddedSource:
    """`size` embedded records made on access by `make(seed, split, index)`: NLI-style triples
    (sentences.triple) or the language-model corpus (lm_text.record)."""

    def __init__(self, make, size: int, seed: int = 0, split: str = "train"):
        self.make, self.size, self.seed, self.split = make, size, seed, split

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        return self.make(self.seed, self.split, index)


class RecordSource:
    """Random access over a list of text records."""

    def __init__(self, records: Sequence[dict]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.records[index]


class ContextWindowSource:
    """One record per sentence of `documents` ([(language id, [sentence, ...])]): the sentence, the
    sentences at most `window` positions away in its document, and its language id."""

    def __init__(self, documents: Sequence[tuple[int, list[str]]], window: int):
        if window < 1:
            raise ValueError(f"A context window must be at least 1 sentence, not {window}; raise data.context_window.")
        self.documents, self.window = list(documents), window
        self._index = [(d, k) for d, (_, lines) in enumerate(self.documents) for k in range(len(lines))]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        d, k = self._index[index]
        language, lines = self.documents[d]
        context = lines[max(0, k - self.window) : k] + lines[k + 1 : k + 1 + self.window]
        return {"text": lines[k], "context": tuple(context), "language": language}


def texts(source, limit: int = 20_000) -> Iterator[str]:
    """Every string of the first `limit` records of a text source (a tokenizer's training corpus)."""
    for i in range(min(limit, len(source))):
        record = source[i]
        for key in ("text", "positive", "negative", "unlabelled"):
            if record.get(key):
                yield record[key]


def _warn_skipped(path: str, skipped: dict[str, int]) -> None:
    for reason, count in skipped.items():
        if count:
            logging.warning("Skipped %d unusable rows of %s (%s).", count, path, reason)


def _require(path: str, records: list, what: str) -> list:
    if not records:
        raise ValueError(f"{path} holds no usable {what}; check its format (input_pipeline/text_sources.py).")
    return records


def read_sentences(path: str) -> list[dict]:
    """{"text"} per non-empty line of a UTF-8 text file, or per row of a JSON Lines file with a non-empty
    string "text"; empty lines, lines that are not UTF-8, malformed JSON and rows without text are skipped and
    counted (a binary file thus holds no usable sentence: an error naming the fix)."""
    if path.endswith((".jsonl", ".json")):
        skipped = {"malformed JSON line": 0, "row without a text string": 0}
        rows = _rows(path, skipped)
        texts = [row.get("text") for row in rows]
        skipped["row without a text string"] = sum(not (isinstance(t, str) and t.strip()) for t in texts)
        _warn_skipped(path, skipped)
        return _require(path, [{"text": t.strip()} for t in texts if isinstance(t, str) and t.strip()], "sentences")
    lines, undecodable = [], 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                lines.append(raw.decode("utf-8").strip())
            except UnicodeDecodeError:
                undecodable += 1
    _warn_skipped(path, {"empty line": sum(not line for line in lines), "line not UTF-8": undecodable})
    return _require(path, [{"text": line} for line in lines if line], "sentences")


def _rows(path: str, skipped: dict[str, int]) -> list[dict]:
    """Rows of a JSON Lines or CSV/TSV (with header) file as dicts."""
    if path.endswith((".jsonl", ".json")):
        rows = list(json_objects(path))
        skipped["malformed JSON line"] += rows.count(None)
        return [row for row in rows if row is not None]
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ","))


def read_triples(path: str) -> list[dict]:
    """{"text", "positive"[, "negative"]} per row; "negative" only where the file has such a column."""
    skipped = {"malformed JSON line": 0, "empty field": 0}
    rows = _rows(path, skipped)
    keys = set().union(*(row.keys() for row in rows)) if rows else set()
    columns = {field: next((c for c in names if c in keys), None) for field, names in TRIPLE_COLUMNS.items()}
    if columns["text"] is None or columns["positive"] is None:
        raise ValueError(
            f"{path} has no sentence/entailment columns; name them sent0,sent1[,hard_neg] "
            "(or premise,entailment[,contradiction]) in its header or JSON keys."
        )
    records = []
    for row in rows:
        record = {field: row.get(column) for field, column in columns.items() if column is not None}
        if all(isinstance(v, str) and v.strip() for v in record.values()):
            records.append({k: v.strip() for k, v in record.items()})
        else:
            skipped["empty field"] += 1
    _warn_skipped(path, skipped)
    return _require(path, records, "sentence pairs")


def read_documents(path: str) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
    """([(language, sentences)], skip counts) of a JSON Lines or blank-line-separated text file."""
    skipped = {"malformed JSON line": 0, "document of fewer than 2 sentences": 0}
    documents = []
    if path.endswith((".jsonl", ".json")):
        for row in _rows(path, skipped):
            lines = row.get("sentences")
            lines = [s.strip() for s in lines if isinstance(s, str) and s.strip()] if isinstance(lines, list) else []
            documents.append((str(row.get("language", "und")), lines))
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            blocks = f.read().split("\n\n")
        documents = [("und", [s.strip() for s in block.splitlines() if s.strip()]) for block in blocks]
    kept = [d for d in documents if len(d[1]) >= 2]
    skipped["document of fewer than 2 sentences"] = len(documents) - len(kept)
    _warn_skipped(path, skipped)
    return _require(path, kept, "documents of 2 or more sentences"), skipped


def document_source(documents: Sequence[tuple[str, list[str]]], window: int) -> tuple[ContextWindowSource, list[str]]:
    """(the source, its languages in id order: first appearance)."""
    languages: list[str] = []
    for language, _ in documents:
        if language not in languages:
            languages.append(language)
    indexed = [(languages.index(language), lines) for language, lines in documents]
    return ContextWindowSource(indexed, window), languages


def make_text_source(
    name: str, *, path: str, size: int, window: int, seed: int = 0, views: tuple[str, ...] = (),
    labelled_fraction: float = 0.1,
):  # fmt: skip
    """(source, languages) of text dataset `name` (TEXT_DATASETS); `size` sizes the embedded ones; `views` and
    `labelled_fraction` shape the commands' records (dialog_frames.CommandSource)."""
    if name in FILE_DATASETS and not os.path.isfile(path):
        raise ValueError(f"data.name={name!r} reads config.data.path, but {path!r} is not a file; set data.path.")
    if name == "shape_sentences":
        return EmbeddedSource(sentences.triple, size), ["en"]
    if name == "shape_commands":
        return dialog_frames.CommandSource(size, labelled_fraction, seed, views=views or dialog_frames.VIEWS), ["en"]
    if name == "shape_documents":
        documents, total = [], 0
        while total < size:
            documents.append(sentences.document(0, len(documents)))
            total += len(documents[-1][1])
        return document_source(documents, window)
    if name == "sentences":
        return RecordSource(read_sentences(path)), ["und"]
    if name == "lm_text":
        return EmbeddedSource(lm_text.record, size, seed), ["en"]
    if name == icl_tasks.ICL_DATASET:
        return EmbeddedSource(icl_tasks.text_record, size, seed), ["en"]
    if name in quality_text.DOCUMENTS:
        return quality_text.QualitySource(name, size, seed), ["en"]
    if name == child_text.CHILD_DATASET:
        return child_text.ChildTextSource(size, seed), ["en"]
    if name == acceptability_text.ACCEPTABILITY_DATASET:
        return RecordSource([{"text": acceptability_text.raw_text(r)} for r in acceptability_text.pool(size)]), ["en"]
    if name == "nli":
        return RecordSource(read_triples(path)), ["und"]
    if name == "documents":
        return document_source(read_documents(path)[0], window)
    if name == "dialogs":
        labelled, unlabelled = dialog_files.read_dialogs(path)
        return dialog_files.DialogFileSource(labelled, unlabelled, views or dialog_frames.VIEWS), ["und"]
    raise ValueError(f"Unknown text dataset {name!r}; use one of {list(TEXT_DATASETS)}.")
