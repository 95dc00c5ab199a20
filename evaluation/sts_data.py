"""STS evaluation sets from files: SentEval's STS12-16 folders, STS-B and SICK-R test files, plain pairs.

`load_sts(path)` -> {name: STSSet}, by what `path` is:
- a folder holding SentEval's `STS.input.<subset>.txt` (two tab-separated sentences per line) and
  `STS.gs.<subset>.txt` (one gold score per line): one set named after the folder, every subset
  concatenated (SentEval's "all" setting for STS12-16, as SimCSE reports); lines whose gold score
  is empty (STS16 has some) are skipped and counted;
- SentEval's STS-B file (`sts-test.csv`: tab-separated, no header, score in column 4, sentences in 5
  and 6) or GLUE's `test.tsv`/`dev.tsv` with a header (`sentence1`, `sentence2`, `score`);
- SICK (`SICK_test_annotated.txt` or SICK.txt: header with `sentence_A`, `sentence_B`,
  `relatedness_score`; SICK.txt's `SemEval_set` column, when present, keeps only TEST rows);
- JSON Lines {"sentence1", "sentence2", "score"}.
The set is named after the file (without extension) or folder.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from typing import NamedTuple

import numpy as np
from absl import logging

HEADER_COLUMNS = (("sentence1", "sentence2", "score"), ("sentence_A", "sentence_B", "relatedness_score"))


class STSSet(NamedTuple):
    first: list[str]
    second: list[str]
    scores: np.ndarray  # float32 [N] gold similarity


def _from_rows(rows: list[tuple], path: str) -> STSSet:
    """(first, second, score text) rows -> STSSet, skipping rows whose score is not a number or a sentence is empty."""
    kept = []
    for first, second, score in rows:
        try:
            value = float(score)
        except (TypeError, ValueError):
            continue
        if first.strip() and second.strip():
            kept.append((first.strip(), second.strip(), value))
    if len(kept) < len(rows):
        logging.warning("Skipped %d STS pairs of %s without a gold score or a sentence.", len(rows) - len(kept), path)
    if len(kept) < 2:
        raise ValueError(f"{path} holds fewer than 2 scored sentence pairs; check its format (evaluation/sts_data.py).")
    return STSSet([k[0] for k in kept], [k[1] for k in kept], np.array([k[2] for k in kept], np.float32))


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def _senteval_folder(folder: str) -> STSSet:
    inputs = sorted(glob.glob(os.path.join(folder, "STS.input.*.txt")))
    rows = []
    for input_path in inputs:
        gold_path = input_path.replace("STS.input.", "STS.gs.")
        if not os.path.isfile(gold_path):
            raise ValueError(f"{input_path} has no gold file {os.path.basename(gold_path)} beside it; add it.")
        pairs, gold = _read_lines(input_path), _read_lines(gold_path)
        if len(pairs) != len(gold):
            raise ValueError(f"{input_path} has {len(pairs)} lines but its gold file {len(gold)}; use matching files.")
        for line, score in zip(pairs, gold, strict=True):
            parts = line.split("\t")
            rows.append((parts[0], parts[1], score) if len(parts) >= 2 else ("", "", score))
    return _from_rows(rows, folder)


def _table(path: str) -> STSSet:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        text = f.read()
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","  # SentEval's sts-*.csv are tab-separated
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # STS-B sentences hold stray quotes
    table = list(csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting))
    header = table[0] if table else []
    for names in HEADER_COLUMNS:
        if all(n in header for n in names):
            index = [header.index(n) for n in names]
            body = table[1:]
            if "SemEval_set" in header:
                column = header.index("SemEval_set")
                body = [r for r in body if len(r) > column and r[column] == "TEST"]
            return _from_rows([tuple(r[i] if i < len(r) else "" for i in index) for r in body], path)
    # SentEval's STS-B: genre, file, year, id, score, sentence1, sentence2[, source columns].
    return _from_rows([(r[5], r[6], r[4]) if len(r) >= 7 else ("", "", "") for r in table], path)


def _jsonl(path: str) -> STSSet:
    rows = []
    for line in filter(str.strip, _read_lines(path)):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            rows.append(("", "", None))
            continue
        rows.append((str(row.get("sentence1", "")), str(row.get("sentence2", "")), row.get("score")))
    return _from_rows(rows, path)


def load_sts(path: str) -> dict[str, STSSet]:
    """{name: STSSet} of one STS folder or file (see the module docstring)."""
    if os.path.isdir(path):
        if not glob.glob(os.path.join(path, "STS.input.*.txt")):
            raise ValueError(f"STS folder {path!r} holds no STS.input.*.txt files; pass a SentEval STS12-16 folder.")
        return {os.path.basename(os.path.normpath(path)): _senteval_folder(path)}
    if not os.path.isfile(path):
        raise ValueError(f"STS file {path!r} does not exist; fix config.eval.sts_files.")
    name = os.path.splitext(os.path.basename(path))[0]
    return {name: _jsonl(path) if path.endswith((".jsonl", ".json")) else _table(path)}
