"""Per-language embedding calibration at inference (CCP's post-processing, reconstructed).

CCP reports large retrieval gains from "calibrating" embeddings at inference; the paper's exact recipe
could not be read here (METHODS.md 10), so this is the reconstruction METHODS.md gives: centre each
language's embeddings on their own mean, then L2-normalise. It removes the per-language offset
that would otherwise make every sentence of one language closer to each other than to a translation,
the inference-time counterpart of CCP's asymmetric batch normalisation in training.
"""

from __future__ import annotations

import numpy as np


def calibrate(embeddings: np.ndarray, languages: np.ndarray | None = None) -> np.ndarray:
    """[N, D] embeddings, [N] language ids (None = one language) -> [N, D] centred per language, L2-normalised."""
    embeddings = np.asarray(embeddings, np.float64)
    languages = np.zeros(len(embeddings), np.int64) if languages is None else np.asarray(languages)
    centred = np.empty_like(embeddings)
    for language in np.unique(languages):
        rows = languages == language
        centred[rows] = embeddings[rows] - embeddings[rows].mean(axis=0)
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
