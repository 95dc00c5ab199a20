"""Your dialog data for SPACE-2 (`data.name=dialogs`): JSON Lines of utterances, the labelled ones with their frame.

One utterance per line:
    {"text": "book a table for two at eight", "domain": "restaurant", "intent": "book",
     "slots": {"people": "two", "time": "eight"}}
    {"text": "is there parking nearby"}
A line with an "intent" is labelled: "domain" is optional (without it the views through the domain are empty),
"slots" maps each slot to a value or a list of values. A line without one is unlabelled. Unusable lines (malformed
JSON, no text, an intent, domain or slots of the wrong type) are skipped and counted in a warning. Training
records pair labelled and unlabelled utterances as the embedded commands do (input_pipeline/dialog_frames.py).
"""

from __future__ import annotations

import numpy as np
from absl import logging

from input_pipeline.dialog_frames import VIEWS, Frame, frame_item_ids, frame_items
from input_pipeline.jsonl import json_objects


def _frame(row: dict) -> Frame | None:
    """The row's frame, or None when a field has the wrong type."""
    intent, domain, slots = row.get("intent"), row.get("domain", ""), row.get("slots", {})
    if not (isinstance(intent, str) and intent.strip() and isinstance(domain, str) and isinstance(slots, dict)):
        return None
    pairs = []
    for slot, values in slots.items():
        values = values if isinstance(values, list) else [values]
        if not all(isinstance(v, str) and v.strip() for v in values):
            return None
        pairs += [(slot.strip(), v.strip()) for v in values]
    return Frame(domain.strip(), intent.strip(), tuple(sorted(set(pairs))))


def read_dialogs(path: str) -> tuple[list[tuple[str, Frame]], list[str]]:
    """([(labelled utterance, its frame)], [unlabelled utterance]) of a JSON Lines file (module docstring)."""
    labelled, unlabelled = [], []
    skipped = {"malformed JSON line": 0, "line without a text string": 0, "intent, domain or slots of a wrong type": 0}
    for row in json_objects(path):
        if row is None:
            skipped["malformed JSON line"] += 1
        elif not (isinstance(row.get("text"), str) and row["text"].strip()):
            skipped["line without a text string"] += 1
        elif "intent" not in row:
            unlabelled.append(row["text"].strip())
        elif (frame := _frame(row)) is None:
            skipped["intent, domain or slots of a wrong type"] += 1
        else:
            labelled.append((row["text"].strip(), frame))
    for reason, count in skipped.items():
        if count:
            logging.warning("Skipped %d unusable lines of %s (%s).", count, path, reason)
    if not labelled:
        raise ValueError(
            f'{path} holds no labelled utterance; give some lines an "intent" (and "slots"), '
            "as input_pipeline/dialog_files.py describes."
        )
    return labelled, unlabelled


def max_items(frames: list[Frame]) -> int:
    """The most items any view of any of `frames` holds (at least 1): the width of their id arrays."""
    return max([1, *(len(items) for f in frames for items in frame_items(f).values())])


class DialogFileSource:
    """Training records of `read_dialogs` output: record i is {"text": labelled utterance i mod L, "frame": int32
    [len(views), max_items] (dialog_frames.frame_item_ids' rows of `views`), "unlabelled": unlabelled utterance i};
    as many records as the longer list; with no unlabelled line, the labelled utterances' texts serve as the
    unlabelled ones."""

    def __init__(self, labelled: list[tuple[str, Frame]], unlabelled: list[str], views: tuple[str, ...] = VIEWS):
        self.labelled, self.unlabelled = labelled, unlabelled or [text for text, _ in labelled]
        self.rows, self.width = [VIEWS.index(v) for v in views], max_items([f for _, f in labelled])

    def __len__(self) -> int:
        return max(len(self.labelled), len(self.unlabelled))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        text, frame = self.labelled[index % len(self.labelled)]
        ids = frame_item_ids(frame, self.width)[self.rows].astype(np.int32)
        return {"text": text, "frame": ids, "unlabelled": self.unlabelled[index % len(self.unlabelled)]}
