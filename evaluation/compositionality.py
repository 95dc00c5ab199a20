"""SugarCrepe-style compositionality: does an image prefer its caption to a minimally changed, false one?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def caption_selection_accuracy(
    image_embeddings: np.ndarray,
    positive_embeddings: np.ndarray,
    negative_embeddings: np.ndarray,
    negative_types: Sequence[str],
) -> dict[str, float]:
    """Per hard-negative type, the fraction of images scoring their caption strictly above the negative.

    image_embeddings, positive_embeddings: [N, D]; negative_embeddings: [N, T, D], the
    negative of type `negative_types[t]` for image n at [n, t]. A tie counts as a failure:
    a model that cannot tell the two captions apart has not chosen the right one.
    Returns {type: accuracy} plus `mean`, the mean over types.
    """
    positive = np.sum(image_embeddings * positive_embeddings, axis=-1)
    negative = np.einsum("nd,ntd->nt", image_embeddings, negative_embeddings)
    wins = np.mean(positive[:, None] > negative, axis=0)
    metrics = {name: float(w) for name, w in zip(negative_types, wins, strict=True)}
    metrics["mean"] = float(np.mean(wins))
    return metrics
