"""Image <-> text retrieval Recall@K, one caption per image (caption i belongs to image i)."""

from __future__ import annotations

import numpy as np


def recall_at_k(similarity: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """[N, N] query x candidate scores, the match of query i being candidate i.

    A query counts as retrieved at K when fewer than K candidates score strictly
    higher than its match: ties are resolved in the match's favour.
    """
    match = np.diag(similarity)[:, None]
    rank = np.sum(similarity > match, axis=1)
    return {k: float(np.mean(rank < k)) for k in ks}


def retrieval_metrics(image_embeddings: np.ndarray, text_embeddings: np.ndarray, prefix: str = "") -> dict[str, float]:
    similarity = image_embeddings @ text_embeddings.T
    metrics = {}
    for direction, sim in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        for k, value in recall_at_k(sim).items():
            metrics[f"{prefix}{direction}_R@{k}"] = value
    return metrics
