"""The `class_incremental` evaluator of a COCONUT run (losses/coconut.py): its classifier (a linear head over the
image features) on the held-out shapes test images (one object each) of the classes seen so far, every image
classified among all of them.

Metrics, in percent: `incremental/accuracy` over the seen classes' images (the paper's accuracy after an
experience), `incremental/task_<k>` over the images of experience k's classes for each k seen (what
benchmarks/coconut_chain.py turns into forgetting), and `incremental/old` over those of the earlier experiences.
"""

from __future__ import annotations

import jax
import numpy as np

from evaluation.shapes_eval import batched
from input_pipeline import class_incremental, shapes, transforms
from losses.coconut import seen_logits, seen_mask


class IncrementalEvaluator:
    """See the module docstring: the first `num_examples` test images, those of seen classes kept."""

    def __init__(self, model, config, *, num_examples: int, batch_size: int, image_size: int):
        c = config.coconut
        cache = config.data.cache_dir
        source = shapes.ShapesSource("test", num_examples, seed=0, image_size=image_size, cache_dir=cache)
        labels = np.array([source[i][c.label] for i in range(num_examples)])
        self.seen = seen_mask(config)
        keep = self.seen[labels]
        self.labels = labels[keep]
        self.images = transforms.normalize_image(np.stack([source[i]["image"] for i in np.flatnonzero(keep)]))
        self.tasks = {k: np.isin(self.labels, class_incremental.task_classes(k, c.tasks, len(self.seen)))
                      for k in range(c.task + 1)}  # fmt: skip
        self.batch_size = batch_size
        self.logits = jax.jit(lambda params, images: model.apply({"params": params}, images)["class_logits"])
        self.description = (
            f"{len(self.labels)} held-out shapes images of the {int(self.seen.sum())} {c.label} classes seen by "
            f"experience {c.task} of {c.tasks}"
        )

    def evaluate(self, params) -> dict[str, float]:
        logits = seen_logits(batched(lambda x: self.logits(params, x), self.images, self.batch_size), self.seen)
        right = np.argmax(np.asarray(logits), -1) == self.labels
        metrics = {"incremental/accuracy": 100.0 * float(right.mean())}
        for k, where in self.tasks.items():
            metrics[f"incremental/task_{k}"] = 100.0 * float(right[where].mean())
        if len(self.tasks) > 1:
            old = ~self.tasks[len(self.tasks) - 1]
            metrics["incremental/old"] = 100.0 * float(right[old].mean())
        return metrics
