"""Image <-> text retrieval Recall@K: one caption per image (caption i belongs to image i) or several."""

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


def multi_caption_recall_at_k(
    similarity: np.ndarray, caption_image: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K both ways for [I, T] image x caption scores, caption t describing image `caption_image[t]`.

    image->text: an image is found at K when one of its captions is in the top K (the
    CLIP papers' definition for COCO's five captions per image); text->image: a caption
    is found at K when its image is. Ties go the match's way, as in `recall_at_k`.
    Every image needs at least one caption.
    """
    positive = caption_image[None, :] == np.arange(similarity.shape[0])[:, None]
    best_caption = np.max(np.where(positive, similarity, -np.inf), axis=1, keepdims=True)
    image_rank = np.sum(similarity > best_caption, axis=1)
    own_image = similarity[caption_image, np.arange(similarity.shape[1])][:, None]
    caption_rank = np.sum(similarity.T > own_image, axis=1)
    metrics = {f"image_to_text_R@{k}": float(np.mean(image_rank < k)) for k in ks}
    metrics.update({f"text_to_image_R@{k}": float(np.mean(caption_rank < k)) for k in ks})
    return metrics
