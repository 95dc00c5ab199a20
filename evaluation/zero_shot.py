"""Zero-shot classification with prompt-template ensembles."""

from __future__ import annotations

import numpy as np


def class_embeddings(prompt_embeddings: np.ndarray) -> np.ndarray:
    """[classes, templates, D] normalised prompt embeddings -> [classes, D]: mean over templates, renormalised."""
    mean = prompt_embeddings.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def zero_shot_accuracy(image_embeddings: np.ndarray, class_embedding: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of argmax_c <image, class_c> for [N, D] images, [C, D] classes, [N] labels."""
    predictions = np.argmax(image_embeddings @ class_embedding.T, axis=1)
    return float(np.mean(predictions == labels))
