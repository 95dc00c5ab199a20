"""Geometry of the shared embedding space: modality gap, alignment and uniformity.

Modality gap: Liang et al. 2022, "Mind the Gap"; alignment and uniformity: Wang &
Isola 2020, "Understanding Contrastive Representation Learning through Alignment and
Uniformity on the Hypersphere".
"""

from __future__ import annotations

import numpy as np


def modality_gap(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> float:
    """Euclidean distance between the centroids of [N, D] image and [M, D] text embeddings."""
    return float(np.linalg.norm(image_embeddings.mean(axis=0) - text_embeddings.mean(axis=0)))


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """E ||x_i - y_i||^alpha over the [N, D] positive pairs (x_i, y_i); lower is better aligned."""
    return float(np.mean(np.linalg.norm(x - y, axis=1) ** alpha))


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """log E_{i<j} exp(-t ||x_i - x_j||^2) over distinct rows of [N, D]; lower is more uniform."""
    squared_norms = np.sum(x * x, axis=1)
    squared_distances = squared_norms[:, None] + squared_norms[None, :] - 2.0 * (x @ x.T)
    upper = np.maximum(squared_distances[np.triu_indices(len(x), k=1)], 0.0)
    # log-mean-exp, shifted so that nearly identical points cannot overflow.
    exponent = -t * upper
    peak = exponent.max()
    return float(peak + np.log(np.mean(np.exp(exponent - peak))))


def embedding_geometry(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> dict[str, float]:
    """The metrics above for [N, D] normalised image embeddings and the [N, D] embeddings of their captions."""
    return {
        "modality_gap": modality_gap(image_embeddings, text_embeddings),
        "alignment": alignment(image_embeddings, text_embeddings),
        "uniformity_image": uniformity(image_embeddings),
        "uniformity_text": uniformity(text_embeddings),
        "mean_positive_cosine": float(np.mean(np.sum(image_embeddings * text_embeddings, axis=1))),
    }
