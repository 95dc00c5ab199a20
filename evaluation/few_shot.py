"""Few-shot classification with class prototypes: k labelled images per class, nearest mean embedding.

The prototype classifier (cosine to the renormalised mean of each class's k support
embeddings) needs no training and no hyper-parameter, so k-shot numbers are not
confounded by a regulariser picked on too little data.
"""

from __future__ import annotations

import numpy as np

from evaluation.classification import classification_metrics


def sample_support(labels: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `shots` random examples of each class in [N] `labels` (all of a class's examples if fewer)."""
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def prototype_logits(
    support: np.ndarray, support_labels: np.ndarray, queries: np.ndarray, num_classes: int
) -> np.ndarray:
    """[Q, C] cosine of each [Q, D] query to each class's mean [S, D] support embedding.

    Classes with no support example score -inf, so they are never predicted.
    """
    logits = np.full((len(queries), num_classes), -np.inf)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    present = np.unique(support_labels)
    prototypes = np.stack([support[support_labels == c].mean(axis=0) for c in present])
    logits[:, present] = unit(queries) @ unit(prototypes).T
    return logits


def few_shot_metrics(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    shots: tuple[int, ...] = (1, 5, 10),
    episodes: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """`{k}shot_acc1` and `{k}shot_mean_per_class_recall`, each the mean over `episodes` random support sets.

    train, test: ([N, D] embeddings, [N] labels); supports are drawn from train.
    """
    (train_x, train_y), (test_x, test_y) = train, test
    rng = np.random.default_rng(seed)
    metrics = {}
    for k in shots:
        runs = []
        for _ in range(episodes):
            index = sample_support(train_y, k, rng)
            logits = prototype_logits(train_x[index], train_y[index], test_x, num_classes)
            runs.append(classification_metrics(logits, test_y))
        for name in ("acc1", "mean_per_class_recall"):
            metrics[f"{k}shot_{name}"] = float(np.mean([r[name] for r in runs]))
    return metrics
