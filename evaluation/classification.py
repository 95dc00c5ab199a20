"""Classification metrics in CLIP_benchmark's names: top-k accuracy and mean per-class recall."""

from __future__ import annotations

import numpy as np

from evaluation.retrieval import recall_at_k


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of [N, C] `logits` whose label ([N] ints) is among the k highest scores.

    Classes with equal scores are ranked in a uniformly random order, in expectation (as in
    retrieval.recall_at_k): a model that scores every class alike gets k / C, not 1.
    """
    return recall_at_k(logits, np.eye(logits.shape[1], dtype=bool)[labels], (k,))[k]


def mean_per_class_recall(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in `labels` ([N] ints) of the fraction predicted right.

    Classes that never occur in `labels` have no recall and are left out of the mean
    (scikit-learn's balanced_accuracy_score does the same).
    """
    classes = np.unique(labels)
    return float(np.mean([np.mean(predictions[labels == c] == c) for c in classes]))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`acc1`, `acc5` (only with more than 5 classes, where it is not trivially 1) and
    `mean_per_class_recall` for [N, C] scores and [N] labels."""
    metrics = {"acc1": top_k_accuracy(logits, labels, 1)}
    if logits.shape[1] > 5:
        metrics["acc5"] = top_k_accuracy(logits, labels, 5)
    metrics["mean_per_class_recall"] = mean_per_class_recall(np.argmax(logits, axis=1), labels)
    return metrics
