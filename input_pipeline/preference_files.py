"""Your scored text for PHF (`data.name=scored_documents`): JSON Lines of documents, each sentence with its score.

One document per line, its sentences in order and each sentence's score from your scorer (toxicity, PII per
character, style violations: higher is worse, as in PHF):
    {"sentences": ["the model is fine .", "you are an idiot ."], "scores": [0.0004, 0.93]}
A sentence is misaligned when its score exceeds config.phf.threshold (the paper's t). Unusable lines (malformed
JSON, no list of non-empty sentences, scores missing, not numbers or not one per sentence) are skipped and
counted in a warning; a file with no usable line is an error naming the fix.
"""

from __future__ import annotations

import math

from absl import logging

from input_pipeline.jsonl import json_objects

Scored = tuple[tuple[str, ...], tuple[int, ...]]  # (sentences, 1 where misaligned)


def _document(row, threshold: float) -> Scored | None:
    """The row's (sentences, misaligned flags), or None when it is unusable."""
    if not isinstance(row, dict):
        return None
    sentences, scores = row.get("sentences"), row.get("scores")
    if not (isinstance(sentences, list) and sentences and all(isinstance(s, str) and s.strip() for s in sentences)):
        return None
    if not (isinstance(scores, list) and len(scores) == len(sentences)):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scores):
        return None
    return tuple(s.strip() for s in sentences), tuple(int(v > threshold) for v in scores)


def read_scored_documents(path: str, threshold: float) -> list[Scored]:
    """The usable documents of a JSON Lines file (module docstring), each sentence flagged against `threshold`."""
    documents, skipped = [], 0
    for row in json_objects(path):
        document = _document(row, threshold)
        if document is None:
            skipped += 1
        else:
            documents.append(document)
    if skipped:
        logging.warning("Skipped %d unusable lines of %s (malformed JSON, no sentences, or scores not one "
                        "number per sentence).", skipped, path)  # fmt: skip
    if not documents:
        raise ValueError(
            f'{path} holds no usable scored document; write one JSON object per line, {{"sentences": [...], '
            '"scores": [...]}, one score per sentence (input_pipeline/preference_files.py).'
        )
    return documents
