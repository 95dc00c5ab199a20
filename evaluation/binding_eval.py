"""Binding accuracy on the held-out binding splits (input_pipeline/binding.py): how often an image prefers
its true caption to the same words bound differently, where a text-only scorer is at chance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from evaluation import compositionality
from input_pipeline import binding

# metric prefix -> (true, false) text fields: the alt-text form and the rewrite-template form
FORMS = {"binding/": ("caption", "false_caption"), "binding_rewrites/": ("rewrite", "false_rewrite")}
SEED = 0


@dataclasses.dataclass(frozen=True)
class BindingSet:
    """`images` [K, N, H, W, 3] for the K = len(binding.KINDS) splits (uint8, or as a model reads them);
    `texts` per FORMS prefix, [K * N * 2] strings (or their token ids): for each image in order, its true
    then its false caption."""

    images: np.ndarray
    texts: dict[str, Sequence]


def trainer_examples_per_kind(num_examples: int) -> int:
    """Binding images per kind beside `num_examples` shapes test images (config.eval.num_examples): half as many."""
    return max(num_examples // 2, 1)


def binding_set(num_per_kind: int, image_size: int, seed: int = SEED) -> BindingSet:
    """Examples [0, num_per_kind) of every binding split."""
    splits = [binding.render_binding_split(kind, num_per_kind, seed, image_size) for kind in binding.KINDS]
    texts = {
        prefix: [t for split in splits for pair in zip(split[true], split[false], strict=True) for t in pair]
        for prefix, (true, false) in FORMS.items()
    }
    return BindingSet(np.stack([split["image"] for split in splits]), texts)


def binding_accuracy(image_embeddings: np.ndarray, text_embeddings: dict[str, np.ndarray]) -> dict[str, float]:
    """Per kind, the fraction of images scoring their true caption strictly above the false one (a tie
    is a failure, as in evaluation/compositionality.py), their `mean`, and `image_blind`: the mean of the
    same with every image replaced by its split's mean embedding, the text-only control (near 0.5).

    image_embeddings: [K, N, D]; text_embeddings: FORMS prefix -> [K, N, 2, D] (true, false).
    Returns {prefix + kind | 'mean' | 'image_blind': accuracy} for each prefix.
    """
    metrics = {}
    blind_images = np.broadcast_to(image_embeddings.mean(axis=1, keepdims=True), image_embeddings.shape)
    for prefix, texts in text_embeddings.items():
        scores = {}
        for name, images in (("", image_embeddings), ("image_blind", blind_images)):
            scores[name] = [
                compositionality.caption_selection_accuracy(i, t[:, 0], t[:, 1:], (kind,))[kind]
                for kind, i, t in zip(binding.KINDS, images, texts, strict=True)
            ]
        metrics.update({f"{prefix}{kind}": a for kind, a in zip(binding.KINDS, scores[""], strict=True)})
        metrics[f"{prefix}mean"] = float(np.mean(scores[""]))
        metrics[f"{prefix}image_blind"] = float(np.mean(scores["image_blind"]))
    return metrics


def evaluate_binding(
    data: BindingSet, embed_images: Callable[[np.ndarray], np.ndarray], embed_texts: Callable[[Sequence], np.ndarray]
) -> dict[str, float]:
    """`binding_accuracy` of the embeddings: embed_images [M, H, W, 3] -> [M, D], embed_texts [M] -> [M, D]."""
    kinds, n = data.images.shape[:2]
    images = embed_images(data.images.reshape(-1, *data.images.shape[2:])).reshape(kinds, n, -1)
    return binding_accuracy(images, {p: embed_texts(t).reshape(kinds, n, 2, -1) for p, t in data.texts.items()})
