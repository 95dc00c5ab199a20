"""Class-incremental learning on the embedded shapes (COCONUT, METHODS.md §21): the classes of one label split
into `tasks` experiences of equal size, learnt one after another, each from its own classes' examples and a small
rehearsal buffer of the classes learnt before.

Only images of one object take part (the shapes records' `num_objects`; half the training images have two or three
objects, whose caption names them all), so that every label is as unambiguous as in the test split.
Experience k holds classes [k C/T, (k + 1) C/T) of the label's C (T = tasks; the names' order, the same for every
seed so that runs pair). The buffer holds the first `buffer_per_class` training examples of each earlier class (the
examples are drawn i.i.d., so the first ones are a random sample). `replay_fraction` > 0 repeats the buffer until it
is that share of an epoch's examples (each batch then holds about that share of rehearsal samples, as experience
replay's separate replay batch would); 0 joins it to the experience's data once.
"""

from __future__ import annotations

import math

import numpy as np

from input_pipeline.shape_drawing import COLOURS, SHAPES

LABELS = {"shape": SHAPES, "colour": COLOURS}  # label field of the shapes records -> class names


def task_classes(task: int, tasks: int, num_classes: int) -> tuple[int, ...]:
    """The class ids experience `task` (0-based) of `tasks` introduces."""
    per_task = num_classes // tasks
    return tuple(range(task * per_task, (task + 1) * per_task))


def seen_classes(task: int, tasks: int, num_classes: int) -> tuple[int, ...]:
    """The class ids of experiences 0..task."""
    return tuple(range((task + 1) * (num_classes // tasks)))


class ClassIncrementalSource:
    """grain random-access source of experience `task`: the records of `source` whose `label` is one of the
    experience's classes, then the rehearsal buffer (repeated to `replay_fraction` of the whole); each record gains
    `class_label` (int32, its class) and `replay` (bool, a buffer sample)."""

    def __init__(self, source, label: str, task: int, tasks: int, buffer_per_class: int, replay_fraction: float):
        records = [source[i] for i in range(len(source))]
        # -1: not eligible (several objects), in no class
        labels = np.array([int(r[label]) if int(r.get("num_objects", 1)) == 1 else -1 for r in records])
        num_classes = len(LABELS[label])
        current = np.flatnonzero(np.isin(labels, task_classes(task, tasks, num_classes)))
        old = [c for c in seen_classes(task, tasks, num_classes) if c not in task_classes(task, tasks, num_classes)]
        buffer = np.concatenate([np.flatnonzero(labels == c)[:buffer_per_class] for c in old] or [np.zeros(0, int)])
        short = [c for c in old if np.sum(labels == c) < buffer_per_class]
        if short:
            raise ValueError(
                f"class {short[0]} has fewer than {buffer_per_class} training examples for the rehearsal buffer; "
                "raise config.data.train_size or lower config.coconut.buffer_per_class."
            )
        repeats = 1
        if replay_fraction > 0 and len(buffer):
            repeats = max(1, math.ceil(replay_fraction * len(current) / ((1 - replay_fraction) * len(buffer))))
        self.source, self.labels = source, labels
        self.indices = np.concatenate([current, np.tile(buffer, repeats)]).astype(np.int64)
        self.is_replay = np.arange(len(self.indices)) >= len(current)
        self.current_size, self.buffer_size, self.repeats = len(current), len(buffer), repeats

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.source[int(self.indices[index])])
        record["class_label"] = np.int32(self.labels[self.indices[index]])
        record["replay"] = np.bool_(self.is_replay[index])
        return record

    def __repr__(self) -> str:
        return (
            f"ClassIncrementalSource({self.current_size} examples of the experience's classes + a buffer of "
            f"{self.buffer_size} x {self.repeats})"
        )
