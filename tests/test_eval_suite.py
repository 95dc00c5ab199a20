"""The suite's wiring, with an oracle model whose embeddings are the one-hot class of each image or text."""

import numpy as np
import pytest

from evaluation.eval_data import EvalDataset, LabelSet
from evaluation.suite import run_suite

CLASSES = 4


def _images(labels):
    images = np.zeros((len(labels), 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = labels  # the oracle reads the class from this pixel
    return images


def encode_images(images):
    one_hot = np.eye(CLASSES)[images[:, 0, 0, 0]]
    return 3.0 * one_hot, one_hot  # features (any scale) and normalised embeddings


def encode_texts(texts):
    return np.eye(CLASSES)[[int(t.split()[-1]) % CLASSES for t in texts]]


def _dataset():
    labels = {"train": np.arange(40) % CLASSES, "validation": np.arange(12) % CLASSES, "test": np.arange(8) % CLASSES}
    return EvalDataset(
        name="oracle",
        images={split: _images(y) for split, y in labels.items()},
        label_sets={"label": LabelSet(tuple("abcd"), [[f"class {c}", f"kind {c}"] for c in range(CLASSES)], labels)},
        captions=[[f"class {y}", f"kind {y}"] for y in labels["test"]],
        hard_negatives=[(f"class {y + 1}", f"class {y}") for y in labels["test"]],
        hard_negative_types=("changed", "same"),
    )


def test_oracle_model_scores_perfectly_where_it_should():
    out = run_suite([_dataset()], encode_images, encode_texts)
    metrics = {(r.dataset, r.task): r.metrics for r in out.results}
    assert list(metrics) == [
        ("oracle", "zeroshot_classification"),
        ("oracle", "linear_probe"),
        ("oracle", "few_shot"),
        ("oracle", "zeroshot_retrieval"),
        ("oracle", "embedding_geometry"),
        ("oracle", "compositionality"),
    ]
    assert metrics["oracle", "zeroshot_classification"] == {"acc1": 1.0, "mean_per_class_recall": 1.0}
    assert metrics["oracle", "linear_probe"]["acc1"] == 1.0
    assert all(v == 1.0 for v in metrics["oracle", "few_shot"].values())
    # Two images per class, embedded alike, and their captions too: each image's 2 captions tie with the
    # other image's 2 (first of 4 in random order: 1 - 2/4 = 1/2); each caption's image ties with the
    # other one (1/2). By 5 everything is found.
    assert metrics["oracle", "zeroshot_retrieval"] == {
        f"{kind}_retrieval_recall@{k}": 0.5 if k == 1 else 1.0 for kind in ("text", "image") for k in (1, 5, 10)
    }
    geometry = metrics["oracle", "embedding_geometry"]
    assert geometry["modality_gap"] == 0.0 and geometry["alignment"] == 0.0
    # 8 images in 4 classes: of the 28 pairs, 4 share a class (distance 0), 24 are at squared distance 2.
    assert geometry["uniformity_image"] == pytest.approx(np.log((4 + 24 * np.exp(-4.0)) / 28))
    # A negative naming another class loses; one identical to the caption ties, which is a failure.
    assert metrics["oracle", "compositionality"] == {"changed": 1.0, "same": 0.0, "mean": 0.5}
    view = out.views["oracle"]
    assert view["captions"] == [f"class {y}" for y in np.arange(8) % CLASSES]
    np.testing.assert_array_equal(view["zero_shot"]["label"]["labels"], np.arange(8) % CLASSES)
