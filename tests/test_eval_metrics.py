"""Evaluation metrics against scikit-learn / SciPy or hand-computed cases (never the code under test)."""

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.stats import spearmanr
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from evaluation import classification, compositionality, few_shot, modality_gap, retrieval, sts


def test_top_k_accuracy_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 12))
    labels = rng.integers(0, 12, size=200)
    for k in (1, 3, 5):
        expected = top_k_accuracy_score(labels, logits, k=k, labels=np.arange(12))
        assert classification.top_k_accuracy(logits, labels, k) == pytest.approx(expected)


def test_top_k_accuracy_ties_in_random_order():
    logits = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    labels = np.array([2, 2, 2])
    # Row 0: all tied, the label in each place with probability 1/3. Row 1: one class above the label. Row 2: two.
    assert classification.top_k_accuracy(logits, labels, 1) == pytest.approx((1 / 3 + 0 + 0) / 3)
    assert classification.top_k_accuracy(logits, labels, 2) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert classification.top_k_accuracy(logits, labels, 3) == 1.0


def test_mean_per_class_recall_skips_empty_classes_like_sklearn():
    labels = np.array([0, 0, 0, 1, 3, 3])  # class 2 never occurs, class 4 is only ever predicted
    predictions = np.array([0, 1, 0, 1, 4, 3])
    hand = np.mean([2 / 3, 1.0, 1 / 2])
    assert classification.mean_per_class_recall(predictions, labels) == pytest.approx(hand)
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-only class 4, and skips it
        assert hand == pytest.approx(balanced_accuracy_score(labels, predictions))


def test_classification_metrics_names_and_acc5_only_beyond_five_classes():
    logits = np.eye(4)[[0, 1, 2, 3]]
    assert classification.classification_metrics(logits, np.array([0, 1, 2, 0])) == {
        "acc1": 0.75,
        "mean_per_class_recall": pytest.approx(np.mean([0.5, 1.0, 1.0])),  # class 0: one of two right
    }
    many = classification.classification_metrics(np.eye(6), np.arange(6))
    assert set(many) == {"acc1", "acc5", "mean_per_class_recall"}


def test_multi_caption_recall_hand_checked_with_ties():
    # 2 images; captions 0, 1 describe image 0, caption 2 describes image 1.
    positives = retrieval.caption_positives(np.array([0, 0, 1]), 2)
    similarity = np.array(
        [
            [0.1, 0.8, 0.9],  # image 0: its best caption (0.8) is beaten by caption 2: second
            [0.5, 0.5, 0.5],  # image 1: all tied, its one caption first with probability 1/3, second 1/3
        ]
    )
    m = retrieval.recall_both_ways(similarity, positives, ks=(1, 2))
    assert m["image_to_text_R@1"] == pytest.approx((0 + 1 / 3) / 2)
    assert m["image_to_text_R@2"] == pytest.approx((1 + 2 / 3) / 2)
    # caption 0: 0.1 vs image 1's 0.5, missed at 1; caption 1: 0.8 > 0.5, found; caption 2: 0.5 < 0.9, missed.
    assert m["text_to_image_R@1"] == pytest.approx(1 / 3) and m["text_to_image_R@2"] == 1.0


def _recall_over_all_tie_orders(scores, positives, k):
    """CLIP_benchmark's recall with every order of the candidates as tie-breaker, averaged: the top k
    of a lexicographic (score, order) sort, over all C! orders of C candidates."""
    candidates = scores.shape[1]
    found = []
    for order in itertools.permutations(range(candidates)):
        for row in range(len(scores)):
            ranked = sorted(range(candidates), key=lambda c, row=row: (-scores[row, c], order[c]))
            found.append(any(positives[row, c] for c in ranked[:k]))
    return np.mean(found)


def test_recall_matches_every_tie_order_averaged():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 3, size=(12, 6)).astype(float)  # coarse scores: ties everywhere
    positives = rng.random((12, 6)) < 0.3
    positives[np.arange(12), rng.integers(0, 6, size=12)] = True  # at least one positive each, some several
    recalls = retrieval.recall_at_k(scores, positives, ks=(1, 2, 3, 6))
    for k, value in recalls.items():
        assert value == pytest.approx(_recall_over_all_tie_orders(scores, positives, k), abs=1e-12)


def test_recall_without_ties_is_the_top_k_by_sorting():
    rng = np.random.default_rng(5)
    positives = retrieval.caption_positives(np.repeat(np.arange(40), [1, 2, 3] * 13 + [3]), 40)  # 81 captions
    scores = rng.normal(size=positives.shape)
    top = np.argsort(-scores, axis=1)
    for k, value in retrieval.recall_at_k(scores, positives, ks=(1, 5, 10)).items():
        assert value == np.mean([positives[q, top[q, :k]].any() for q in range(40)])


def test_duplicate_captions_tie_and_each_copy_wins_one_in_m():
    # 1,000 images of 160 caption strings (as the shapes test set repeats templated captions), each
    # image embedded exactly as its caption: a perfect model. The m copies of a string tie exactly
    # (float32, at BLAS-unfriendly positions) and the image's own copy is among the k first with
    # probability min(k, m) / m; counting the same text as right, every query is found at 1.
    rng = np.random.default_rng(6)
    strings = rng.integers(0, 160, size=1000)
    vectors = rng.normal(size=(160, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = vectors[strings]
    multiplicity = np.bincount(strings)[strings]
    m = retrieval.retrieval_metrics(texts, texts)
    for k in (1, 5, 10):
        expected = np.mean(np.minimum(k, multiplicity) / multiplicity)
        assert m[f"image_to_text_R@{k}"] == pytest.approx(expected, abs=1e-12)
        assert m[f"text_to_image_R@{k}"] == pytest.approx(expected, abs=1e-12)
    same = retrieval.retrieval_metrics(texts, texts, positives=retrieval.same_text_positives([str(s) for s in strings]))
    assert set(same.values()) == {1.0}


def test_caption_selection_accuracy_hand_checked():
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    positives = np.array([[0.8, 0.6], [0.6, 0.8]])  # scores 0.8 and 0.8
    negatives = np.array(
        [
            [[0.6, 0.8], [0.8, 0.6]],  # 0.6 (beaten), 0.8 (a tie: a failure)
            [[1.0, 0.0], [0.0, 1.0]],  # 0.0 (beaten), 1.0 (wins over the caption)
        ]
    )
    m = compositionality.caption_selection_accuracy(images, positives, negatives, ("a", "b"))
    assert m == {"a": 1.0, "b": 0.0, "mean": 0.5}


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_modality_gap_alignment_uniformity_against_scipy():
    rng = np.random.default_rng(2)
    images, texts = _unit(rng.normal(size=(50, 8)) + 1.0), _unit(rng.normal(size=(50, 8)) - 0.5)
    assert modality_gap.modality_gap(images, texts) == pytest.approx(
        np.sqrt(np.sum((images.mean(0) - texts.mean(0)) ** 2))
    )
    assert modality_gap.alignment(images, texts) == pytest.approx(np.mean(np.diag(cdist(images, texts)) ** 2))
    expected = np.log(np.mean(np.exp(-2.0 * pdist(images, "sqeuclidean"))))
    assert modality_gap.uniformity(images) == pytest.approx(expected, rel=1e-6)
    # Identical points: every distance 0, uniformity log(1) = 0, the worst possible.
    assert modality_gap.uniformity(np.ones((5, 3)) / np.sqrt(3)) == pytest.approx(0.0, abs=1e-9)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=40).astype(float)  # many ties
    b = a + rng.integers(0, 3, size=40)
    assert sts.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    first, second = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    gold = rng.uniform(0, 5, size=40).round(1)
    cosine = 1.0 - np.array([cdist(first[i : i + 1], second[i : i + 1], "cosine")[0, 0] for i in range(40)])
    assert sts.sts_spearman(first, second, gold) == pytest.approx(spearmanr(cosine, gold).statistic)


def test_few_shot_support_and_prototypes_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    index = few_shot.sample_support(labels, 2, np.random.default_rng(0))
    counts = np.bincount(labels[index], minlength=3)
    assert list(counts) == [2, 2, 1]  # class 2 has only one example
    support = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    logits = few_shot.prototype_logits(support, np.array([0, 0, 2]), np.array([[1.0, 1.0], [0.0, -2.0]]), 3)
    prototype = np.array([1.0, 0.5]) / np.linalg.norm([1.0, 0.5])
    np.testing.assert_allclose(logits[:, 0], [prototype @ np.array([1, 1]) / np.sqrt(2), -prototype[1]])
    np.testing.assert_allclose(logits[:, 2], [1 / np.sqrt(2), -1.0])
    assert np.all(np.isneginf(logits[:, 1]))  # no support for class 1: never predicted


def test_few_shot_metrics_on_separable_clusters_is_perfect():
    rng = np.random.default_rng(4)
    centres = _unit(rng.normal(size=(5, 16))) * 10
    train_y, test_y = np.repeat(np.arange(5), 20), np.repeat(np.arange(5), 10)
    train_x = centres[train_y] + rng.normal(size=(100, 16)) * 0.1
    test_x = centres[test_y] + rng.normal(size=(50, 16)) * 0.1
    m = few_shot.few_shot_metrics((train_x, train_y), (test_x, test_y), 5, shots=(1, 5))
    assert m == {f"{k}shot_{n}": 1.0 for k in (1, 5) for n in ("acc1", "mean_per_class_recall")}
