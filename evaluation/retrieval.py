"""Image <-> text retrieval Recall@K in CLIP_benchmark's definition, plus a "same text counts" variant.

CLIP_benchmark (clip_benchmark/metrics/zeroshot_retrieval.py) marks each image's own captions as
its positives, takes the K best-scoring candidates with `torch.topk` and counts a query as found
when one positive is among them. Where scores tie across the K-th place, torch does not specify
which of the tied candidates topk returns (torch 2.13 on CPU: not the lowest indices, nor any order
we could name). Here ties are
resolved by a uniformly random order of the tied candidates, in expectation: identical to
CLIP_benchmark wherever the K-th place is not tied, and independent of the dataset's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at_k(scores: np.ndarray, positives: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """{k: mean over queries of P(a positive is among the k best candidates)} for [Q, C] scores.

    `positives` is a [Q, C] bool matrix (each row needs one True). Candidates are ranked by
    score, equal scores in a uniformly random order; the probability is exact, not sampled.
    """
    positives = np.asarray(positives, bool)
    if not positives.any(axis=1).all():
        raise ValueError("every query needs at least one positive candidate")
    best = np.max(np.where(positives, scores, -np.inf), axis=1, keepdims=True)
    above = np.sum(scores > best, axis=1)  # all negatives: no positive scores above the best one
    tied = scores == best
    tied_positive, tied_total = np.sum(tied & positives, axis=1), np.sum(tied, axis=1)
    recalls = {}
    for k in ks:
        # The k - above places left go to the tied group in random order; the query is missed when
        # all of them go to tied negatives: a hypergeometric probability, built up one draw at a time.
        places = np.clip(k - above, 0, tied_total)
        all_negative = np.ones(len(scores))
        for draw in range(int(places.max(initial=0))):
            ratio = np.maximum(tied_total - tied_positive - draw, 0) / np.maximum(tied_total - draw, 1)
            all_negative *= np.where(draw < places, ratio, 1.0)
        found = np.where(places > 0, 1.0 - all_negative, 0.0)
        recalls[k] = float(np.mean(found))
    return recalls


def similarity(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """[I, T] dot products, equal wherever two embeddings are equal.

    Computed once per distinct row: BLAS rounds identical columns differently by their position
    (23 of the 582 duplicated shapes test captions came out an ulp apart in float32), which would
    turn exact ties into arbitrary wins and losses.
    """
    images, image_index = np.unique(image_embeddings, axis=0, return_inverse=True)
    texts, text_index = np.unique(text_embeddings, axis=0, return_inverse=True)
    return (images @ texts.T)[image_index.reshape(-1)][:, text_index.reshape(-1)]


def recall_both_ways(scores: np.ndarray, positives: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """`image_to_text_R@k` and `text_to_image_R@k` for [I, T] image x text scores and positives."""
    metrics = {f"image_to_text_R@{k}": v for k, v in recall_at_k(scores, positives, ks).items()}
    metrics.update({f"text_to_image_R@{k}": v for k, v in recall_at_k(scores.T, positives.T, ks).items()})
    return metrics


def caption_positives(caption_image: np.ndarray, num_images: int) -> np.ndarray:
    """[I, T] bool: caption t describes image `caption_image[t]` (CLIP_benchmark's positive pairs)."""
    return np.arange(num_images)[:, None] == np.asarray(caption_image)[None, :]


def same_text_positives(captions: Sequence[str]) -> np.ndarray:
    """[N, N] bool for one caption per image: image i and caption j match when caption j's string is
    image i's caption (a caption shared by several images is right for each of them)."""
    strings = np.asarray(captions, dtype=object)
    return strings[:, None] == strings[None, :]


def retrieval_metrics(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, prefix: str = "", positives: np.ndarray | None = None
) -> dict[str, float]:
    """R@1/5/10 both ways for [N, D] images and [T, D] texts; by default text i is image i's only positive."""
    if positives is None:
        positives = np.eye(len(image_embeddings), len(text_embeddings), dtype=bool)
    recalls = recall_both_ways(similarity(image_embeddings, text_embeddings), positives)
    return {f"{prefix}{name}": value for name, value in recalls.items()}
